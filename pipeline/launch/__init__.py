"""Cluster launchers: a study's workers as a SLURM job array or a Kubernetes Indexed Job.

``pipeline launch slurm`` writes an sbatch script under ``runs/launch/<study>/`` and
submits it; ``pipeline launch k8s`` writes manifests and a Dockerfile and applies nothing.
Each worker runs ``pipeline worker`` against a storage every node reaches.
"""

from pipeline.launch._k8s import check_artifacts, k8s_manifests, write_k8s
from pipeline.launch._slurm import SlurmLaunch, check_shared, launch_slurm, sbatch_script

__all__ = [
    "SlurmLaunch",
    "check_artifacts",
    "check_shared",
    "k8s_manifests",
    "launch_slurm",
    "sbatch_script",
    "write_k8s",
]
