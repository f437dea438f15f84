"""The study report: HTML, PNG and Markdown pages of Optuna's plots and the summary."""

from __future__ import annotations

from pipeline.visualization._page import markdown_html, page
from pipeline.visualization._report import write_report

__all__ = [
    "markdown_html",
    "page",
    "write_report",
]
