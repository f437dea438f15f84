"""A study file that changed between runs of one study: what its trials mean.

What a trial means is fixed when the study is created: the task and its options, the
search space, the metric and its direction, the epochs and the precision. A resume
whose file changes any of these is refused with a diff (``tune --branch NEW_NAME``
starts a new study instead: :mod:`pipeline.study._branch`). Changes that leave the
meaning alone (the budget, workers, retries, sampler, pruner) are allowed, logged, and
kept in the study's run history; new grid values queue their points
(:mod:`pipeline.study._grid`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from pipeline.config import StudyConfig
from pipeline.exceptions import ConfigError

DEFINITION_ATTR = "definition"  # study user attribute: what its trials mean
MEANING = ("task", "search_space", "metric", "direction", "max_epochs", "precision")


def definition(config: StudyConfig) -> dict[str, Any]:
    """The part of a study file that gives its trials their meaning. ``grid:`` values
    are left out: more of them only add points to a grid."""
    data = config.to_dict()
    out = {key: data[key] for key in MEANING}
    if config.trainable is not None:  # absent otherwise, as in studies made before it
        out["trainable"] = config.trainable
    # Absent for one unconstrained objective, or for code of another form.
    for key in ("objectives", "constraints", "lightning", "transformers"):
        if key in data:
            out[key] = data[key]
    out["search_space"] = {
        # A fixed false or null is left out, as studies made before it was kept have it.
        name: {k: v for k, v in spec.items() if k != "grid" and v not in (None, False)}
        for name, spec in data["search_space"].items()
    }
    return out


def changes(old: Any, new: Any, key: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs, dotted keys, sorted."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for name in sorted(set(old) | set(new), key=str):
            child = f"{key}.{name}" if key else str(name)
            if name not in old:
                out.append(f"{child}: added {new[name]!r}")
            elif name not in new:
                out.append(f"{child}: removed (was {old[name]!r})")
            else:
                out += changes(old[name], new[name], child)
        return out
    return [] if old == new else [f"{key}: {old!r} -> {new!r}"]


def check_resume(study: optuna.Study, meaning: Mapping[str, Any]) -> None:
    """Refuse to resume ``study`` with a file whose :func:`definition` (``meaning``)
    changes what its trials mean.

    Raises:
        ConfigError: naming what changed.
    """
    stored = study.user_attrs.get(DEFINITION_ATTR)
    if stored is None:  # made before definitions were stored: adopt this one
        study.set_user_attr(DEFINITION_ATTR, dict(meaning))
        return
    diff = changes(stored, meaning)
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise ConfigError(
            "",
            f"this file changes what the trials of study {study.study_name!r} mean ({shown}); "
            "restore it, or run `pipeline tune FILE --branch NEW_NAME` to start a new study "
            "from the trials that still fit",
        )


__all__ = ["DEFINITION_ATTR", "changes", "check_resume", "definition"]
