"""No trial stays RUNNING forever: trials whose worker process is gone are released.

Optuna's heartbeat finds dead trials only on RDB storages, only when a heartbeat is set,
and only for trials that wrote a first heartbeat. Every trial here also records which
process runs it: a random id of its own, the kernel's boot id, the PID namespace, the pid
and the pid's start time (so a reused pid is not mistaken for the worker). A RUNNING
trial whose process no longer exists is failed and re-queued with its parameters, on any
storage; a worker checks whenever it waits for room in the budget, and ``tune`` when it
starts.

A pid means something only inside its PID namespace on its kernel. Workers that share a
hostname (Docker ``--network host``, Kubernetes ``hostNetwork``, SLURM tasks in
containers) may each have their own namespace, so the hostname proves nothing: only a
trial whose worker has this process's boot id and PID namespace is judged here. Any
other is left to Optuna's heartbeat, which stays the arbiter between machines.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from pipeline.trial._ended import fail_dead, running_epoch
from pipeline.trial._trials import Attr


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (Linux); [] elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name (field 2) may hold spaces; the fields after it do not.
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot; None where unknown."""
    fields = _stat(pid)
    return int(fields[19]) if len(fields) > 19 else None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    """This process's PID namespace, e.g. ``pid:[4026531836]``; None where unknown."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


_ID = uuid.uuid4().hex  # this process's own, never shared with another (a fork gets a new one)


def _new_id() -> None:
    global _ID
    _ID = uuid.uuid4().hex


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_id)


def process_identity() -> dict[str, Any]:
    """This process, as stored on the trials it runs (the host is for people to read;
    liveness never trusts it)."""
    pid = os.getpid()
    return {
        "id": _ID,
        "host": socket.gethostname(),
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
        "pid_namespace": _pid_namespace(),
        "pid": pid,
        "started": _start_time(pid),
    }


def is_local(identity: dict[str, Any]) -> bool:
    """Whether ``identity``'s pid can be looked up from this process: the same kernel and
    the same PID namespace, both known."""
    me = process_identity()
    keys = ("boot_id", "pid_namespace")
    return all(me[k] is not None and identity.get(k) == me[k] for k in keys)


def is_gone(identity: Any) -> bool:
    """Whether the process ``identity`` names has ended. Only a process of this kernel
    and PID namespace can be checked; any other counts as alive."""
    if not isinstance(identity, dict) or not is_local(identity):
        return False
    pid = identity.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    fields = _stat(pid)
    if fields and fields[0] in ("Z", "X"):  # dead, not yet reaped by its parent
        return True
    started = identity.get("started")
    return started is not None and _start_time(pid) != started  # the pid was reused


def release_orphans(
    study: optuna.Study,
    max_retries: int,
    say: Callable[[str], None] = lambda _: None,
    storage: BaseStorage | None = None,
) -> list[int]:
    """Fail every RUNNING trial whose worker on this host is gone and re-queue it (up
    to ``max_retries`` re-runs, at least one); return the numbers released. With
    ``storage``, each gets its ``outcome`` and ``fail_reason``."""
    released = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_gone(trial.user_attrs.get(Attr.WORKER_PROCESS)):
            continue
        reason = f"its worker process ended during epoch {running_epoch(trial)}"
        retry = fail_dead(study, storage, trial, reason, max(1, max_retries))
        if retry is None:
            continue  # another worker released it first
        released.append(trial.number)
        say(
            f"trial {trial.number} was left running by a worker that is gone"
            + ("; re-queued" if retry else "; retries used up")
        )
    return released


__all__ = ["is_gone", "is_local", "process_identity", "release_orphans"]
