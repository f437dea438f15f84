"""The study report: HTML, PNG and Markdown pages of Optuna's plots and the summary."""

from __future__ import annotations

from pipeline.visualization._front_plot import DASHBOARD_PLOT, publish_front
from pipeline.visualization._page import markdown_html, page
from pipeline.visualization._report import write_report

__all__ = [
    "DASHBOARD_PLOT",
    "markdown_html",
    "page",
    "publish_front",
    "write_report",
]
