"""The ``pipeline`` command: argparse, and errors turned into one line and an exit code."""

from __future__ import annotations

from pipeline.cli._main import main, run

__all__ = [
    "main",
    "run",
]
