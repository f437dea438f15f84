"""The report's summary in Markdown: the trials by state, the best configuration with its
validation and test scores (or the Pareto front), and where the study came from."""

from __future__ import annotations

import json
from typing import Any

import optuna

from pipeline.results import best_record
from pipeline.trial import Outcome, outcome_of, state_counts
from pipeline.visualization._pareto import epochs_trained, front_evaluation_lines, front_markdown


def summary_markdown(study: optuna.Study, evaluation: dict[str, Any] | None) -> str:
    """Best configuration, its validation and test metrics, and what pruning saved."""
    trials = study.trials
    counts = state_counts(trials)
    pruned = [t for t in trials if outcome_of(t) == Outcome.PRUNED]
    rejected = sum(outcome_of(t) == Outcome.REJECTED for t in trials)
    max_epochs = study.user_attrs.get("config", {}).get("max_epochs")
    lines = [f"# Study `{study.study_name}`", ""]
    lines.append(
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed trials."
    )
    if max_epochs and pruned:
        trained = sum(epochs_trained(t) for t in pruned)
        saved = len(pruned) * int(max_epochs) - trained
        total = sum(epochs_trained(t) for t in trials)
        lines.append(
            f"Pruning stopped {len(pruned)} trials early, saving {saved} of "
            f"{total + saved} epochs ({100 * saved / (total + saved):.0f}%)."
        )
    if rejected:
        lines.append(
            f"{rejected} trials broke a constraint known before training and never trained."
        )
    record = best_record(study) if len(study.directions) == 1 else None
    if len(study.directions) > 1:
        lines += front_markdown(study)
    if record is not None:
        lines += [
            "",
            f"## Best trial: #{record['trial']}",
            "",
            "| parameter | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {_cell(v)} |" for k, v in record["params"].items()]
        lines += ["", "| metric | value |", "|---|---|"]
        for key, value in {**record["metrics"], **record["test"]}.items():
            lines.append(f"| {key} | {value:.4f} |")
        lines.append(f"| epochs | {record['epochs']} |")
    lines += _evaluation_lines(evaluation) + _provenance_lines(study)
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    """A parameter as a table cell: floats to 4 significant digits, pipes escaped."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|")


def _evaluation_lines(evaluation: dict[str, Any] | None) -> list[str]:
    if not evaluation:
        return []
    if "front" in evaluation:  # several objectives: every front member's checkpoint
        return front_evaluation_lines(evaluation)
    scores = ", ".join(
        f"{k.removeprefix('test_')} {v:.4f}" for k, v in evaluation.items() if k.startswith("test_")
    )
    lines = [
        "",
        "## Final evaluation",
        "",
        f"Checkpoint of trial #{evaluation['trial']} on the test split: {scores or 'not scored'}.",
    ]
    retrained = evaluation.get("retrained")
    if retrained:
        score = "accuracy" if "test_accuracy_mean" in retrained else "r2"
        lines.append(
            f"Retrained on train + validation with {retrained['seeds']} seeds: test {score} "
            f"{retrained[f'test_{score}_mean']:.4f} ± {retrained[f'test_{score}_std']:.4f}."
        )
    return lines


def _provenance_lines(study: optuna.Study) -> list[str]:
    prov = {
        k: study.user_attrs.get(k)
        for k in ("study_file", "git_revision", "host", "seed", "versions")
    }
    if not any(prov.values()):
        return []
    return ["", "## Provenance", ""] + [
        f"- {k}: `{json.dumps(v) if isinstance(v, dict) else v}`" for k, v in prov.items() if v
    ]


__all__ = ["summary_markdown"]
