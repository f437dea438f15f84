"""The training loop against a bare PyTorch loop over the same tensors and model.

Both train the same freshly seeded model on the same in-memory data with the same
optimizer, evaluating on the validation set after every epoch. The bare loop is what a
person would write by hand: shuffle indices, slice, forward, loss, backward, step. The
two alternate within each repeat; the figure is the median ratio of their times.

    python benchmarks/loop.py [--task digits] [--batch-sizes 2,16,64] [--epochs 3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from pipeline.config import TaskConfig
from pipeline.objective import hyperparameters
from pipeline.tasks import resolve_task
from pipeline.train import evaluate, fit, make_optimizer, warm_up


def bare_loop(model, splits, hp, epochs, seed):  # type: ignore[no-untyped-def]
    opt = make_optimizer(hp["optimizer"], model.parameters(), hp)
    g = torch.Generator().manual_seed(seed)
    x, y, bs = splits.train_x, splits.train_y, hp["batch_size"]
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        evaluate(model, splits.val_x, splits.val_y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="digits")
    parser.add_argument("--batch-sizes", default="2,16,64")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = resolve_task(TaskConfig(args.task))
    splits = task.load(task.resolve_options({}))
    warm_up()
    print(
        f"Training loop vs bare PyTorch loop on {args.task} ({len(splits.train_y)} train examples, "
        f"{args.epochs} epochs, {args.threads} thread(s)), median of {args.repeats} alternating repeats"
    )
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        hp = hyperparameters(task, {"batch_size": bs, "optimizer": "sgd", "lr": 0.01})
        ours, bare = [], []
        for rep in range(args.repeats):
            for which, out in (
                (("ours", ours), ("bare", bare))
                if rep % 2 == 0
                else (("bare", bare), ("ours", ours))
            ):
                torch.manual_seed(rep)
                model = task.build_model(hp, splits)
                started = time.perf_counter()
                if which == "ours":
                    fit(
                        model,
                        splits.train_x,
                        splits.train_y,
                        splits.val_x,
                        splits.val_y,
                        hp,
                        args.epochs,
                        torch.Generator().manual_seed(rep),
                    )
                else:
                    bare_loop(model, splits, hp, args.epochs, rep)
                out.append(time.perf_counter() - started)
        ratios = [o / b for o, b in zip(ours, bare, strict=True)]
        print(
            f"  batch {bs:4d}: ours {statistics.median(ours):.3f} s, bare {statistics.median(bare):.3f} s, "
            f"ratio {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})"
        )


if __name__ == "__main__":
    main()
