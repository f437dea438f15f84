"""A single-node SLURM cluster on 127.0.0.1 for the tests: munged, slurmctld and slurmd
as root, configuration and state in a temporary directory. Starts in seconds."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NEEDED = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue")


def available() -> str | None:
    """Why a cluster cannot start here, or None."""
    missing = [cmd for cmd in NEEDED if shutil.which(cmd) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (.ci/run installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "slurmd runs as root here"
    return None


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(folder: Path, munge_socket: Path) -> str:
    cpus = os.cpu_count() or 1
    return f"""\
ClusterName=pipelinetest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={_port()}
SlurmdPort={_port()}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerParameters=defer
MinJobAge=300
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


@contextmanager
def slurm_cluster(folder: Path) -> Iterator[dict[str, str]]:
    """Start the cluster; yield the environment its commands need (SLURM_CONF)."""
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True)
    munge_socket = folder / "munge.socket"
    munged = [
        "munged", "--force", f"--socket={munge_socket}", f"--pid-file={folder}/munged.pid",
        f"--log-file={folder}/munged.log", f"--seed-file={folder}/munged.seed",
    ]  # fmt: skip
    subprocess.run(munged, check=True, capture_output=True)
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder, munge_socket))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [
        subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)], **quiet),  # type: ignore[call-overload]
        subprocess.Popen(["slurmd", "-D", "-N", "localhost", "-f", str(conf)], **quiet),  # type: ignore[call-overload]
    ]
    try:
        _wait_idle(env, folder)
        yield env
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        pid = (folder / "munged.pid").read_text().strip()
        subprocess.run(["kill", pid], check=False)


def _wait_idle(env: dict[str, str], folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, check=False
        )
        state = out.stdout.strip()
        if state in ("idle", "mixed", "allocated"):
            return
        time.sleep(0.3)
    logs = [
        (folder / f).read_text()[-2000:]
        for f in ("slurmctld.log", "slurmd.log")
        if (folder / f).exists()
    ]
    raise RuntimeError(f"the SLURM node did not come up ({state!r}): {logs}")
