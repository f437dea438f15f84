"""The project's training loop against a bare PyTorch loop on the same model and data.

The model is the benchmark task's (the Ray Tune tutorial's network on MNIST-1D; see
tutorial_task.py), trained with SGD and momentum 0.9 on the same in-memory tensors. The
bare loop is what a person writes by hand (tutorial_task.train_epoch: shuffle indices,
slice, forward, loss, backward, step), followed by validation. Both run in this process
with one thread, alternating within each repeat; the figure is the median of the
per-repeat ratios of their times, for each batch size.

    python benchmarks/loop.py [--batch-sizes 2,4,...,256] [--epochs 2] [--repeats 5]
        [--markdown PATH (appends a table)]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from common import write_results
from tutorial_task import build_model, load_data, make_optimizer, train_epoch, validate

from pipeline.tasks._mnist1d import mnist1d
from pipeline.training import fit, warm_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-sizes", default="2,4,8,16,32,64,128,256")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", default=None, help="append the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_data()
    task = mnist1d()
    warm_up()
    title = (
        f"Training loop vs bare PyTorch loop, tutorial network on MNIST-1D "
        f"({len(splits.train_y)} train signals, {args.epochs} epochs, {args.threads} thread(s)), "
        f"median of {args.repeats} alternating repeats"
    )
    print(title)
    rows = [
        "| batch size | this project s | bare loop s | ratio (min-max) |",
        "|---|---|---|---|",
    ]
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        config = {"l1": 64, "l2": 32, "lr": 0.01, "batch_size": bs}
        hp = {**config, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0}
        ours, bare = [], []
        for rep in range(args.repeats):
            for which in ("ours", "bare") if rep % 2 == 0 else ("bare", "ours"):
                torch.manual_seed(rep)
                model = build_model(config, splits)
                generator = torch.Generator().manual_seed(rep)
                started = time.perf_counter()
                if which == "ours":
                    fit(model, task, splits.train, splits.val, hp, args.epochs, generator)
                    ours.append(time.perf_counter() - started)
                else:
                    optimizer = make_optimizer(config, model)
                    for _ in range(args.epochs):
                        train_epoch(model, optimizer, splits.train_x, splits.train_y, bs, generator)
                        validate(model, splits.val_x, splits.val_y)
                    bare.append(time.perf_counter() - started)
        ratios = [o / b for o, b in zip(ours, bare, strict=True)]
        line = (
            f"| {bs} | {statistics.median(ours):.3f} | {statistics.median(bare):.3f} "
            f"| {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) |"
        )
        rows.append(line)
        print(f"  batch {bs:4d}: {line}", flush=True)
    if args.markdown:
        table = "\n## Training-step cost\n\n" + title + ".\n\n" + "\n".join(rows) + "\n"
        write_results(Path(args.markdown), table, append=True)


if __name__ == "__main__":
    main()
