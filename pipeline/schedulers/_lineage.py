"""The lineage of a population-based training trial: the segments it descends from, and
the hyperparameter schedule they make together (``pipeline best``, ``report``, ``replay``).

Following ``parent`` from a trial back to generation 0 gives one model's whole training:
each segment trained some epochs with its own values, and a segment whose parent belongs
to another member is an exploit (it copied that member's checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial

from pipeline.schedulers._pbt import member_of, parent_of
from pipeline.trial import Attr


@dataclass(frozen=True)
class Stretch:
    """Epochs ``first`` to ``last`` of a lineage, trained by ``trials`` of ``member``
    with ``params``; ``exploit``: it began from another member's checkpoint."""

    first: int
    last: int
    member: int
    trials: tuple[int, ...]
    params: dict[str, Any]
    exploit: bool = False


def lineage(trials: Sequence[FrozenTrial], trial: FrozenTrial) -> list[FrozenTrial]:
    """``trial`` and the segments it descends from, first segment first."""
    by_number = {t.number: t for t in trials}
    chain = [trial]
    while (number := parent_of(chain[0])) is not None and number in by_number:
        if any(t.number == number for t in chain):  # a loop cannot be stored; never follow one
            break
        chain.insert(0, by_number[number])
    return chain


def _last_epoch(trial: FrozenTrial) -> int:
    epochs = trial.user_attrs.get(Attr.EPOCHS)
    if isinstance(epochs, int):
        return epochs
    return max(trial.intermediate_values, default=0)


def schedule(chain: Sequence[FrozenTrial]) -> list[Stretch]:
    """The lineage as epoch ranges; neighbouring segments of one member with the same
    values are one stretch."""
    stretches: list[Stretch] = []
    first = 1
    for index, trial in enumerate(chain):
        last = _last_epoch(trial)
        member = member_of(trial)
        exploit = index > 0 and member_of(chain[index - 1]) != member
        previous = stretches[-1] if stretches else None
        if (
            previous is not None
            and not exploit
            and previous.member == member
            and previous.params == trial.params
        ):
            stretches[-1] = Stretch(
                previous.first,
                last,
                previous.member,
                (*previous.trials, trial.number),
                previous.params,
                previous.exploit,
            )
        else:
            params = dict(trial.params)
            stretches.append(Stretch(first, last, member or 0, (trial.number,), params, exploit))
        first = last + 1
    return stretches


def changing(stretches: Sequence[Stretch]) -> list[str]:
    """The hyperparameters whose value changes along the schedule (all of them when
    none does)."""
    names = list(dict.fromkeys(n for s in stretches for n in s.params))
    moved = [n for n in names if len({repr(s.params.get(n)) for s in stretches}) > 1]
    return moved or names


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def schedule_lines(stretches: Sequence[Stretch]) -> list[str]:
    """The schedule as text: one line per stretch, with the member and trials it came from."""
    names = changing(stretches)
    lines = []
    for s in stretches:
        values = " ".join(f"{n}={_value(s.params[n])}" for n in names if n in s.params)
        trials = ", ".join(map(str, s.trials))
        how = " (exploited)" if s.exploit else ""
        lines.append(
            f"epochs {s.first}-{s.last}: {values}  member {s.member}{how}, trials {trials}"
        )
    return lines


def schedule_record(stretches: Sequence[Stretch]) -> list[Mapping[str, Any]]:
    """The schedule as plain data (``best --json``)."""
    return [
        {
            "epochs": [s.first, s.last],
            "member": s.member,
            "trials": list(s.trials),
            "exploit": s.exploit,
            "params": s.params,
        }
        for s in stretches
    ]


__all__ = ["Stretch", "changing", "lineage", "schedule", "schedule_lines", "schedule_record"]
