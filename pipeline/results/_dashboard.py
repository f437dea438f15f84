"""``pipeline dashboard``: optuna-dashboard over a storage, with the study's checkpoints.

The artifact store is the one the workers wrote checkpoints to, so the dashboard lists
each trial's checkpoint and serves it for download. optuna-dashboard's API also writes:
it deletes and renames studies, edits notes and tells trials. On this machine alone
(127.0.0.1, the default) that is the user's own business; bound to any other address,
the dashboard serves read-only unless ``--allow-writes`` is given, since anyone who can
reach the port could otherwise delete a study with one request.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna

from pipeline.artifacts import artifact_dir_for, open_location
from pipeline.exceptions import UsageError
from pipeline.storages import mask_url, open_storage
from pipeline.study import create_hint

READ_METHODS = ("GET", "HEAD", "OPTIONS")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def read_only(app: WSGIApp) -> WSGIApp:
    """``app`` that refuses every request that would change the storage (403)."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in READ_METHODS:
            return app(environ, start_response)
        body = json.dumps(
            {
                "reason": "this dashboard is read-only; start it with --allow-writes to change studies"
            }
        ).encode()
        start_response(
            "403 Forbidden",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise
        return


def serve(
    storage_url: str,
    artifacts: str | None,
    host: str,
    port: int,
    allow_writes: bool = False,
    study_file: str | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C.

    Args:
        artifacts: The checkpoints' directory or ``s3://`` URL; None for the default
            beside the storage.
        allow_writes: Let visitors on other machines change studies too.
        study_file: The study file the storage came from, for the hints.

    Raises:
        UsageError: the port is taken, or there is no storage to show (it never makes one).
    """
    try:
        storage = open_storage(storage_url, readers_only=True, must_exist=True)
    except UsageError as exc:
        raise UsageError(f"{exc}; {create_hint(study_file)}") from None
    if not optuna.get_all_study_summaries(storage, include_best_trial=False):  # reachable?
        print(
            f"note: {mask_url(storage_url)} holds no study yet; {create_hint(study_file)} "
            "and it shows up here (or pass the --storage your study uses)",
            file=sys.stderr,
            flush=True,
        )
    store = open_location(storage_url, artifacts, create=False)
    checkpoints = getattr(store, "url", None) or artifact_dir_for(storage_url, artifacts)
    # Imported here: it imports scikit-learn (about 2 s), which `tune` never needs.
    import optuna_dashboard

    app: WSGIApp = optuna_dashboard.wsgi(storage, artifact_store=store)
    exposed = not is_loopback(host)
    if exposed and not allow_writes:
        app = read_only(app)
    try:
        server = make_server(host, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):  # the port is taken or privileged
            raise UsageError(
                f"--port: cannot listen on {host}:{port} ({exc.strerror}); pass another --port"
            ) from None
        raise UsageError(  # an address that is not this machine's, or of another family
            f"--host: cannot listen on {host} ({exc.strerror or exc}); pass an address of "
            "this machine (127.0.0.1, 0.0.0.0)"
        ) from None
    if exposed:
        print(
            f"warning: the dashboard listens on {host}, reachable from other machines; "
            + ("anyone who reaches it can delete studies" if allow_writes else "it is read-only"),
            file=sys.stderr,
            flush=True,
        )
    print(
        f"optuna-dashboard for {mask_url(storage_url)} (checkpoints in {checkpoints}) "
        f"on http://{host}:{port} (Ctrl-C stops it)",
        flush=True,
    )
    # A server has nothing to record before it stops: SIGTERM and SIGHUP end it at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            return


__all__ = ["is_loopback", "read_only", "serve"]
