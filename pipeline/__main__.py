"""``python -m pipeline``: the same as the ``pipeline`` command."""

from __future__ import annotations

from pipeline.cli import run

run()
