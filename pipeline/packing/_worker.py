"""A worker with ``packing``: ask for many trials, train those of one family as one model.

Each round the worker asks Optuna for up to ``packing.max_members`` trials with
``study.ask`` (so the sampler sees the earlier ones as running, and TPE's constant liar,
when set, stays in force), suggests their parameters and groups them by
:func:`pipeline.packing.family`. Every group trains as one :class:`pipeline.packing.Pack`;
a trial that fits no group trains alone, as without packing. Each member stays its own
Optuna trial, with its own :class:`pipeline.training.Session`: per-epoch reports, its own
pruning decision (a pruned or diverged member leaves the pack and the others go on),
Ctrl-C handling, its test scores and its checkpoint through the same code as an unpacked
trial, and the worker's :class:`pipeline.runner._worker.FailurePolicy` after it ends. While the
round runs, a thread records every running member's heartbeat, as Optuna's ``optimize``
does for its one trial.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from pipeline.config import CPU_PACKING, PackingConfig
from pipeline.exceptions import ConfigError
from pipeline.packing._pack import Pack, family
from pipeline.search import suggest
from pipeline.study import Budget
from pipeline.training import (
    Objective,
    Session,
    TaskTrainable,
    TrialSkipped,
    hyperparameters,
    record_end,
    too_large,
)
from pipeline.trial import frozen

Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


@dataclass(eq=False)  # hashed by identity: a member that fits no pack is its own group
class Member:
    """One asked trial of a round: its session and its resolved hyperparameters."""

    trial: optuna.Trial
    session: Session
    hp: dict[str, Any]


class Heartbeat:
    """Records the heartbeat of every running trial of a round, every interval, on
    storages that keep heartbeats (where ``optimize`` would run one thread per trial)."""

    def __init__(self, storage: BaseStorage, study: optuna.Study) -> None:
        self.storage = storage
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.interval: int | None = interval
        self.study_id = storage.get_study_id_from_name(study.study_name) if interval else 0
        self.trial_ids: dict[int, int] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def add(self, number: int) -> None:
        """Beat for trial ``number`` from now on, starting with one beat at once."""
        if self.interval is None:
            return
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        with self.lock:
            self.trial_ids[number] = trial_id
        self._beat([trial_id])

    def done(self, number: int) -> None:
        """Stop beating for trial ``number`` (it ended)."""
        with self.lock:
            self.trial_ids.pop(number, None)

    def _beat(self, trial_ids: Sequence[int]) -> None:
        for trial_id in trial_ids:
            with contextlib.suppress(Exception):  # an outage: the next beat may get through
                self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def running(self) -> Iterator[Heartbeat]:
        """A thread that beats for the added trials until the block ends."""
        if self.interval is None:
            yield self
            return
        interval = self.interval

        def loop() -> None:
            while not self.stopped.wait(interval):
                with self.lock:
                    ids = list(self.trial_ids.values())
                self._beat(ids)

        thread = threading.Thread(target=loop, name="pack-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopped.set()
            thread.join()


class Packer:
    """Runs one round of packed trials per call (see the module's description).

    Args:
        packing: The study file's ``packing``.
        trainable: The built-in loop over the task, with its data on ``device``.
        objective: Opens each trial's session and completes it, as for unpacked trials.
        policy: Called after every trial ends, as ``optimize`` calls its callbacks.
        storage: The study's storage, for heartbeats.
    """

    def __init__(
        self,
        packing: PackingConfig,
        trainable: TaskTrainable,
        objective: Objective,
        policy: Callback,
        storage: BaseStorage,
    ) -> None:
        self.max_members = packing.max_members
        self.trainable = trainable
        self.objective = objective
        self.policy = policy
        self.storage = storage
        self.beat: Heartbeat | None = None

    def run(self, study: optuna.Study, budget: Budget) -> None:
        """Ask for up to ``max_members`` trials (as many as the budget has room for),
        train them, and tell each one's end."""
        if getattr(self.storage, "get_heartbeat_interval", lambda: None)() is not None:
            with warnings.catch_warnings():  # experimental API, used on purpose
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        self.beat = Heartbeat(self.storage, study)
        with self.beat.running():
            members = self._ask(study, max(1, min(self.max_members, budget.room(study))))
            groups: dict[Any, list[Member]] = {}
            for member in members:
                key = family(self.trainable.task, member.hp)
                groups.setdefault(key if key is not None else member, []).append(member)
            for key, group in groups.items():
                if isinstance(key, Member):
                    self._alone(study, key)
                    continue
                for part in self.packs(group):
                    if len(part) == 1:  # nothing to share: as without packing
                        self._alone(study, part[0])
                    else:
                        self._packed(study, part)

    def packs(self, group: list[Member]) -> list[list[Member]]:
        """``group`` cut into packs whose weights, gradients and optimizer state fit in the
        device's memory, halving the pack until they do (a member left alone trains as
        without packing, and fails with the reason if even it does not fit)."""
        task, splits = self.trainable.task, self.trainable.splits
        widths = task.pack_widths(group[0].hp) if task.pack_widths is not None else None
        widest = {**group[0].hp, **{w: max(m.hp[w] for m in group) for w in widths or ()}}

        def stacked(members: int) -> torch.nn.Module:
            return torch.nn.ModuleList(task.build_model(widest, splits) for _ in range(members))

        size = len(group)
        while size > 1 and too_large(partial(stacked, size), self.objective.device) is not None:
            size = (size + 1) // 2
        return [group[i : i + size] for i in range(0, len(group), size)]

    def _ask(self, study: optuna.Study, count: int) -> list[Member]:
        members = []
        plan = self.objective.plan
        for _ in range(count):
            with warnings.catch_warnings():
                # Optuna warns that heartbeats go with optimize(); Heartbeat beats for us.
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                trial = study.ask()
            try:
                session = self.objective.begin(trial)
            except TrialSkipped:
                self._tell(study, trial, TrialState.FAIL)
                break
            assert self.beat is not None
            self.beat.add(trial.number)
            try:
                config = suggest(trial, plan.search_space)
                hp = hyperparameters(self.trainable.task, config)
            except Exception as exc:  # ends this trial as an unpacked one's would
                record_end(trial, exc)
                self._end(study, Member(trial, session, {}), TrialState.FAIL)
                continue
            members.append(Member(trial, session, hp))
        return members

    def _alone(self, study: optuna.Study, member: Member) -> None:
        """A trial that fits no pack trains as it would without packing."""
        try:
            value = self.objective.run(member.trial, member.session)
        except optuna.TrialPruned:
            self._tell(study, member.trial, TrialState.PRUNED)
        except Exception:  # recorded by the objective; the policy decides on a retry
            self._tell(study, member.trial, TrialState.FAIL)
        else:
            self._tell(study, member.trial, TrialState.COMPLETE, value)

    def _packed(self, study: optuna.Study, group: list[Member]) -> None:
        """Train ``group`` as one pack, ending each member as its own reports decide."""
        trainable = self.trainable
        for member in group:
            member.session.compute_seconds = 0.0
        live = dict(enumerate(group))
        try:
            pack = Pack(
                trainable.task,
                trainable.splits,
                [m.hp for m in group],
                [m.session.seed for m in group],
                self.objective.plan.max_epochs,
                self.objective.device,
                trainable.autocast,
            )
            # Size and latency of each member's solo model, as an unpacked trial records
            # them (not peak_memory_mb: the members share one pack's memory).
            for index, member in live.items():
                trainable.measure(pack.model(index), member.session)
            for _ in range(self.objective.plan.max_epochs):
                ended = []
                for index, result in zip(pack.members, pack.train_epoch(), strict=True):
                    if not self._report(study, live[index], result.epoch, result):
                        ended.append(index)
                pack.drop(ended)
                for index in ended:
                    del live[index]
                if not live:
                    return
        except Exception as exc:  # the pack itself failed: every member still in it fails
            for member in live.values():
                record_end(member.trial, exc)
                self._end(study, member, TrialState.FAIL)
            return
        for index, member in live.items():
            try:  # test scores and the checkpoint, as an unpacked trial ends
                trainable.finish(pack.model(index), member.hp, member.session)
                value = self.objective.complete(member.trial, member.session)
            except Exception as exc:
                record_end(member.trial, exc)
                self._end(study, member, TrialState.FAIL)
            else:
                self._end(study, member, TrialState.COMPLETE, value)

    def _report(self, study: optuna.Study, member: Member, epoch: int, result: Any) -> bool:
        """Report one member's epoch; False when the member ended there (pruned,
        diverged, interrupted)."""
        session = member.session
        session.compute_seconds = (session.compute_seconds or 0.0) + result.compute_seconds
        try:
            session.report(epoch, **result.metrics)
        except optuna.TrialPruned:
            self._end(study, member, TrialState.PRUNED)
            return False
        except Exception as exc:
            record_end(member.trial, exc)
            self._end(study, member, TrialState.FAIL)
            return False
        return True

    def _end(
        self,
        study: optuna.Study,
        member: Member,
        state: TrialState,
        value: float | list[float] | None = None,
    ) -> None:
        member.session.store_bookkeeping()
        self._tell(study, member.trial, state, value)

    def _tell(
        self,
        study: optuna.Study,
        trial: optuna.Trial,
        state: TrialState,
        value: float | list[float] | None = None,  # one objective: packing refuses more
    ) -> None:
        if self.beat is not None:
            self.beat.done(trial.number)
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        self.policy(study, frozen(trial))


def check_device(packing: PackingConfig | None, device: torch.device) -> None:
    """Refuse packing on the CPU (``device: auto`` on a machine without a GPU, say)
    unless ``packing.on_cpu`` allows it.

    Raises:
        ConfigError: naming ``packing``, in one line.
    """
    if packing is not None and device.type == "cpu" and not packing.on_cpu:
        raise ConfigError("packing", CPU_PACKING)


def packer_for(
    packing: PackingConfig | None,
    trainable: object,
    objective: Objective,
    policy: Callback,
    storage: BaseStorage,
) -> Packer | None:
    """The worker's :class:`Packer` when the study packs trials, else None.

    Raises:
        ConfigError: packing on a CPU without ``packing.on_cpu``.
    """
    if packing is None:
        return None
    check_device(packing, objective.device)
    assert isinstance(trainable, TaskTrainable)  # the schema refuses packing a trainable
    return Packer(packing, trainable, objective, policy, storage)


__all__ = ["Heartbeat", "Member", "Packer", "check_device", "packer_for"]
