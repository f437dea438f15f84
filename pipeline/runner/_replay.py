"""``pipeline replay``: retrain a PBT winner's hyperparameter schedule from scratch, as one
run, and score it on the test split (what Ray Tune's ``PopulationBasedTrainingReplay``
does).

The winner's lineage is a chain of segments, each with its own values. The replay runs
the same chain again in a study of its own, in memory, with checkpoints in a temporary
directory: the same trainable, the same objective and the same segment boundaries, so
what differs from the population is only the chance of one run (its seeds), not the
code that trained it.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from typing import Any, TextIO

import optuna
from optuna.trial import TrialState

from pipeline.artifacts import open_location
from pipeline.exceptions import NoResult, UsageError
from pipeline.results import test_scores_of
from pipeline.runner._placement import resolve_device
from pipeline.runner._worker import build_trainable
from pipeline.schedulers import (
    generation_of,
    lineage,
    member_of,
    schedule,
    schedule_lines,
    schedule_record,
)
from pipeline.study import parse_study
from pipeline.training import Objective, TrialPlan, load_user_function
from pipeline.trial import Attr, best_trial


def replay(study: optuna.Study, log: TextIO = sys.stderr) -> dict[str, Any]:
    """Retrain the winner's schedule in one run; its test scores and schedule.

    Raises:
        UsageError: the study is no population-based training.
        NoResult: no segment completed yet, or a replayed segment did not complete.
    """
    best = best_trial(study)
    if best is None:
        raise NoResult(f"study {study.study_name!r} has no complete trial yet")
    if member_of(best) is None:
        raise UsageError(
            f"study {study.study_name!r} ran no population-based training (scheduler: pbt); "
            "replay retrains a PBT winner's schedule"
        )
    chain = lineage(study.get_trials(deepcopy=False), best)
    runs = study.user_attrs.get("runs") or []
    stored = dict(runs[-1]["config"] if runs else study.user_attrs.get("config") or {})
    with tempfile.TemporaryDirectory() as tmp:
        raw = {
            **stored,
            "study_name": f"{study.study_name}-replay",
            "storage": f"sqlite:///{tmp}/replay.db",
        }
        raw.pop("tracking", None)  # the replay is mirrored nowhere
        config = dataclasses.replace(parse_study(raw), artifacts=tmp)
        device = resolve_device(config.device)
        model = load_user_function(config, "model") if config.task is None else None
        objective = Objective(
            TrialPlan.of(config, model),
            build_trainable(config, device),
            device,
            store=open_location(config.storage, tmp),
        )
        run = optuna.create_study(directions=study.directions)
        parent: int | None = None
        for segment in chain:
            run.enqueue_trial(
                segment.params,
                user_attrs={
                    Attr.MEMBER: 0,
                    Attr.GENERATION: generation_of(segment),
                    Attr.PARENT: parent,
                },
            )
            run.optimize(objective, n_trials=1)
            last = run.trials[-1]
            if last.state != TrialState.COMPLETE:
                reason = last.user_attrs.get(Attr.FAIL_REASON) or last.state.name.lower()
                raise NoResult(f"replay: segment {len(run.trials)} did not complete ({reason})")
            print(f"replay: epochs up to {last.user_attrs.get(Attr.EPOCHS)} trained", file=log)
            parent = last.number
    return {
        "study": study.study_name,
        "trial": best.number,
        "epochs": last.user_attrs.get(Attr.EPOCHS),
        "value": last.value,
        "population_value": best.value,
        "test": test_scores_of(run, last),
        "population_test": test_scores_of(study, best),
        "schedule": schedule_record(schedule(chain)),
    }


def format_replay(result: dict[str, Any]) -> str:
    """What ``pipeline replay`` prints: the schedule, then the replay's scores beside the
    population's."""
    from pipeline.schedulers import Stretch

    stretches = [
        Stretch(r["epochs"][0], r["epochs"][1], r["member"], tuple(r["trials"]), r["params"])
        for r in result["schedule"]
    ]
    lines = [f"Replay of trial #{result['trial']} of study {result['study']!r}, from scratch:"]
    lines += [f"  {line}" for line in schedule_lines(stretches)]
    lines.append(
        f"  value: {result['value']:.4f} (the population's: {result['population_value']:.4f})"
    )
    for name, value in result["test"].items():
        before = result["population_test"].get(name)
        was = f" (the population's: {before:.4f})" if before is not None else ""
        lines.append(f"  {name}: {value:.4f}{was}")
    return "\n".join(lines)


__all__ = ["format_replay", "replay"]
