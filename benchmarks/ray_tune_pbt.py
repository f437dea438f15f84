"""Ray Tune's ``PopulationBasedTraining`` on the PBT benchmark's task (benchmarks/pbt.py).

Runs from Ray's own venv (``make bench-ray-env``), never from the project's. The
tutorial's 1-D CNN on MNIST-1D, SGD, a population of ``--population`` trials with the
same interval, quantile, resample probability, perturbation factors and mutated values
as the project's ``scheduler: pbt`` run; each trial checkpoints after every epoch (what
PBT's exploit copies) and sets the new lr and momentum after restoring the optimizer.
Two trials train at a time, one CPU each. The best trial's last checkpoint is scored on
the test split.

    .venv-ray/bin/python benchmarks/ray_tune_pbt.py --seed 0 --out r.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.search.basic_variant import BasicVariantGenerator
from tutorial_task import CONCURRENT, build_model, load_data, timed_epoch, trial_seed, validate

from pipeline.tasks import Splits

# The PBT benchmark's settings, as benchmarks/pbt.py gives them to the project.
EPOCHS = 20
INTERVAL = 2
BATCH_SIZE = 32
LR = (1e-3, 1e-1)
MOMENTUM = (0.5, 0.99)


def train(config: dict[str, Any], splits: Splits, study_seed: int) -> None:
    """Train one member: restore (its own or a copied checkpoint), set the config's lr
    and momentum, train to EPOCHS with a checkpoint after every epoch."""
    index = int(tune.get_context().get_trial_id().rsplit("_", 1)[1])
    seed = trial_seed(study_seed, index)
    torch.manual_seed(seed)
    model = build_model(config, splits)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / "checkpoint.pt")
        model.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    for group in optimizer.param_groups:  # an exploit's new values
        group["lr"], group["momentum"] = config["lr"], config["momentum"]
    generator = torch.Generator().manual_seed(seed + start)
    for epoch in range(start, EPOCHS):
        loss, acc, _ = timed_epoch(model, optimizer, splits, BATCH_SIZE, generator)
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
                {"loss": loss, "accuracy": acc},
                checkpoint=tune.Checkpoint.from_directory(directory),
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network at run time
    ray.init(num_cpus=CONCURRENT)
    splits = load_data()
    mutations = {"lr": tune.loguniform(*LR), "momentum": tune.uniform(*MOMENTUM)}
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=INTERVAL,
        hyperparam_mutations=mutations,
        quantile_fraction=0.25,
        resample_probability=0.25,
        perturbation_factors=(1.2, 0.8),
        synch=False,
    )
    param_space = {
        "l1": tune.choice([16, 32, 64, 128]),
        "l2": tune.choice([16, 32, 64]),
        **mutations,
    }
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(train, splits=splits, study_seed=args.seed), {"cpu": 1}
            ),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric="accuracy",
                mode="max",
                scheduler=scheduler,
                num_samples=args.population,
                search_alg=BasicVariantGenerator(random_state=args.seed),
            ),
            run_config=tune.RunConfig(
                storage_path=storage, name="pbt", stop={"training_iteration": EPOCHS}
            ),
        )
        results = tuner.fit()
        best = results.get_best_result("accuracy", "max", "last")
        assert best.checkpoint is not None
        with best.checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / "checkpoint.pt")
        model = build_model(best.config, splits)
        model.load_state_dict(state["net"])
        _, test_accuracy = validate(model, splits.test_x, splits.test_y)
        metrics = [r.metrics for r in results]
        result = {
            "trials": len(results),
            "errors": results.num_errors,
            "epochs": sum(m.get("training_iteration", 0) for m in metrics),
            "best_val_accuracy": best.metrics["accuracy"],
            "test_accuracy": test_accuracy,
        }
    Path(args.out).write_text(json.dumps(result))
    ray.shutdown()


if __name__ == "__main__":
    main()
