"""The benchmark task in Ray Tune, written as Ray Tune's PyTorch tutorial writes it.

Runs from Ray's own venv (``make bench-ray-env``), never from the project's. One
function trains a trial and reports validation loss and accuracy after every epoch with
a checkpoint of the model and optimizer (as the tutorial does); ``ASHAScheduler`` stops
weak trials; ``tune.with_parameters`` puts the data in Ray's object store once;
``tune.with_resources`` gives each trial one CPU, so two run at a time on two cores.
Trials are the same configurations every tool gets (``points_to_evaluate``).

    .venv-ray/bin/python benchmarks/ray_tune_tutorial.py --seed 0 --out r.json [--reuse-actors]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
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


def train_mnist1d(config: dict[str, Any], splits: Splits, study_seed: int) -> None:
    """The tutorial's ``train_cifar``: build, resume from a checkpoint if any, train,
    and report with a checkpoint after every epoch. Seeded like the other tools' trial i
    (Ray numbers trials in its trial ids: ``<prefix>_<index:05d>``)."""
    index = int(tune.get_context().get_trial_id().rsplit("_", 1)[1])
    seed = trial_seed(study_seed, index)
    torch.manual_seed(seed)
    model = build_model(config, splits)
    optimizer = make_optimizer(config, model)
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / "checkpoint.pt")
        model.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    generator = torch.Generator().manual_seed(seed)
    compute = 0.0
    for epoch in range(start, MAX_EPOCHS):
        loss, acc, seconds = timed_epoch(model, optimizer, splits, config["batch_size"], generator)
        compute += seconds
        with tempfile.TemporaryDirectory() as directory:
            torch.save(
                {
                    "epoch": epoch + 1,
                    "net": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                },
                Path(directory) / "checkpoint.pt",
            )
            tune.report(
                {
                    "loss": loss,
                    "accuracy": acc,
                    "compute_seconds": compute,
                    "threads": torch.get_num_threads(),
                },
                checkpoint=tune.Checkpoint.from_directory(directory),
            )
        if not math.isfinite(loss):  # diverged: stop, as the other tools do
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reuse-actors", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network at run time
    ray.init(num_cpus=CONCURRENT)
    splits = load_data()
    # The tutorial's search space. Its l1/l2 = sample_from(lambda _: 2 ** randint(2, 9))
    # is written as the equal choice over the same powers: Ray 2.60 fails with a
    # TypeError in resolve_placeholders when points_to_evaluate set a sample_from key.
    param_space = {
        "l1": tune.choice([2**e for e in range(2, 9)]),
        "l2": tune.choice([2**e for e in range(2, 9)]),
        "lr": tune.loguniform(1e-4, 1e-1),
        "batch_size": tune.choice(BATCH_SIZES),
    }
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(train_mnist1d, splits=splits, study_seed=args.seed), {"cpu": 1}
            ),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric="loss",
                mode="min",
                scheduler=ASHAScheduler(
                    max_t=MAX_EPOCHS, grace_period=GRACE_PERIOD, reduction_factor=REDUCTION_FACTOR
                ),
                search_alg=BasicVariantGenerator(points_to_evaluate=draw_configs(args.seed)),
                num_samples=N_TRIALS,
                reuse_actors=args.reuse_actors,
            ),
            run_config=tune.RunConfig(storage_path=storage, name="bench"),
        )
        results = tuner.fit()
        best = results.get_best_result("loss", "min", "last")
        metrics = [r.metrics for r in results]
        result = {
            "trials": len(results),
            "errors": results.num_errors,
            "epochs": sum(m.get("training_iteration", 0) for m in metrics),
            "stopped_early": sum(m.get("training_iteration", 0) < MAX_EPOCHS for m in metrics),
            "compute_seconds": sum(m.get("compute_seconds", 0.0) for m in metrics),
            "threads": sorted({m.get("threads") for m in metrics}),
            "best_config": {k: best.config[k] for k in ("l1", "l2", "lr", "batch_size")},
            "best_val_loss": best.metrics["loss"],
            "best_val_accuracy": best.metrics["accuracy"],
        }
    Path(args.out).write_text(json.dumps(result))
    ray.shutdown()


if __name__ == "__main__":
    main()
