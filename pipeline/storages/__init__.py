"""Optuna storages from a URL (RDB, journal file, Redis, gRPC proxy): opening them with
heartbeats, waiting out an outage, naming a storage that cannot be used, and masking
passwords wherever a URL is shown.
"""

from __future__ import annotations

from pipeline.storages._errors import (
    STORAGE_ERRORS,
    Outage,
    first_line,
    report_thread_errors,
    storage_error_in,
)
from pipeline.storages._masking import mask_url
from pipeline.storages._storage import (
    check_url,
    open_storage,
    release_connections,
    scheme_of,
    serve_proxy,
)

__all__ = [
    "STORAGE_ERRORS",
    "Outage",
    "check_url",
    "first_line",
    "mask_url",
    "open_storage",
    "release_connections",
    "report_thread_errors",
    "scheme_of",
    "serve_proxy",
    "storage_error_in",
]
