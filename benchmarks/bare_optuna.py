"""The benchmark task as a bare, hand-written Optuna script: the floor the project's
speed is measured against.

Two processes (forked after the data is loaded) share a journal file, Optuna's lightest
multi-process storage, and take trials from a shared count until 20 have run. No
checkpoints, no live table, no provenance, no retries. Writes its figures as JSON.

    python benchmarks/bare_optuna.py --seed 0 --out result.json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import tempfile
from pathlib import Path
from typing import Any

import optuna
import optuna.storages.journal
import torch
from tutorial_task import (
    BATCH_SIZES,
    CONCURRENT,
    GRACE_PERIOD,
    MAX_EPOCHS,
    N_TRIALS,
    REDUCTION_FACTOR,
    build_model,
    draw_configs,
    load_data,
    make_optimizer,
    timed_epoch,
    trial_seed,
)

from pipeline.tasks import Splits

POWERS = [2**e for e in range(2, 9)]


def objective(trial: optuna.Trial, splits: Splits, study_seed: int) -> float:
    config = {
        "l1": trial.suggest_categorical("l1", POWERS),
        "l2": trial.suggest_categorical("l2", POWERS),
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
    }
    seed = trial_seed(study_seed, trial.number)
    torch.manual_seed(seed)
    model = build_model(config, splits)
    optimizer = make_optimizer(config, model)
    generator = torch.Generator().manual_seed(seed)
    compute = 0.0
    for epoch in range(1, MAX_EPOCHS + 1):
        loss, acc, seconds = timed_epoch(model, optimizer, splits, config["batch_size"], generator)
        compute += seconds
        if math.isfinite(loss):
            trial.report(loss, epoch)
        if not math.isfinite(loss) or trial.should_prune():
            trial.set_user_attr("compute_seconds", compute)
            trial.set_user_attr("epochs", epoch)
            raise optuna.TrialPruned()
    trial.set_user_attr("compute_seconds", compute)
    trial.set_user_attr("epochs", MAX_EPOCHS)
    trial.set_user_attr("val_accuracy", acc)
    return loss


def worker(journal: str, tickets: Any, splits: Splits, study_seed: int) -> None:
    torch.set_num_threads(1)  # one core per process, two processes
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    study = optuna.load_study(
        study_name="bare",
        storage=storage,
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=GRACE_PERIOD, reduction_factor=REDUCTION_FACTOR
        ),
    )
    while True:
        with tickets.get_lock():
            if tickets.value == 0:
                return
            tickets.value -= 1
        study.optimize(lambda trial: objective(trial, splits, study_seed), n_trials=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    splits = load_data()
    with tempfile.TemporaryDirectory() as tmp:
        journal = str(Path(tmp) / "journal.log")
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(journal)
        )
        study = optuna.create_study(
            study_name="bare",
            storage=storage,
            direction="minimize",
            sampler=optuna.samplers.RandomSampler(seed=args.seed),
        )
        for config in draw_configs(args.seed):
            study.enqueue_trial(config)
        tickets = mp.Value("i", N_TRIALS)
        procs = [
            mp.Process(target=worker, args=(journal, tickets, splits, args.seed))
            for _ in range(CONCURRENT)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        trials = study.get_trials(deepcopy=False)
        best = study.best_trial
        result = {
            "trials": len(trials),
            "epochs": sum(t.user_attrs.get("epochs", 0) for t in trials),
            "stopped_early": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
            "compute_seconds": sum(t.user_attrs.get("compute_seconds", 0.0) for t in trials),
            "best_config": best.params,
            "best_val_loss": best.value,
            "best_val_accuracy": best.user_attrs["val_accuracy"],
            # When trials ran, for the fixed cost around them (benchmarks/overhead.py).
            "first_trial_start": min(
                t.datetime_start.timestamp() for t in trials if t.datetime_start
            ),
            "last_trial_end": max(
                t.datetime_complete.timestamp() for t in trials if t.datetime_complete
            ),
            "trial_seconds": sum(
                (t.datetime_complete - t.datetime_start).total_seconds()
                for t in trials
                if t.datetime_start and t.datetime_complete
            ),
        }
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
