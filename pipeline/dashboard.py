"""``pipeline dashboard``: optuna-dashboard over a storage, with the study's checkpoints.

The artifact store is the one the workers wrote checkpoints to, so the dashboard lists
each trial's checkpoint and serves it for download.
"""

from __future__ import annotations

import optuna_dashboard

from pipeline.checkpoints import artifact_dir_for, open_store
from pipeline.storage import mask_url, open_storage


def serve(storage_url: str, artifacts: str | None, host: str, port: int) -> None:
    """Serve the dashboard until Ctrl-C.

    Args:
        artifacts: The checkpoints' directory; None for the default beside the storage.
    """
    storage = open_storage(storage_url, readers_only=True)
    artifact_dir = artifact_dir_for(storage_url, artifacts)
    print(
        f"optuna-dashboard for {mask_url(storage_url)} (checkpoints in {artifact_dir}) "
        f"on http://{host}:{port} (Ctrl-C stops it)",
        flush=True,
    )
    optuna_dashboard.run_server(
        storage, host=host, port=port, artifact_store=open_store(artifact_dir)
    )


__all__ = ["serve"]
