"""Cluster launchers: a study's workers as a SLURM job array.

``pipeline launch slurm`` writes an sbatch script under ``runs/launch/<study>/`` and
submits it; each array task runs ``pipeline worker`` against a storage every node
reaches.
"""

from pipeline.launch._slurm import SlurmLaunch, check_shared, launch_slurm, sbatch_script

__all__ = ["SlurmLaunch", "check_shared", "launch_slurm", "sbatch_script"]
