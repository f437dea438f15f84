"""Trials per minute with 1 and 2 worker processes on this machine.

The same study (default: the default study with random sampling and no pruning, so
every trial does the same amount of work) runs with 1 worker (all cores' threads) and
with 2 workers (cores split between them), alternating, each as a whole `pipeline tune`
process. Trials per minute are counted over the trials' span (first start to last end)
and over the whole process (start-up included).

    python benchmarks/scaling.py [--study studies/default.yaml] [--trials 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics

from common import describe, run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", default="studies/default.yaml")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    overrides = [
        "sampler.name=random",
        "sampler.options={}",
        "pruner.name=none",
        "pruner.options={}",
        f"n_trials={args.trials}",
    ]
    span_rate: dict[int, list[float]] = {1: [], 2: []}
    wall_rate: dict[int, list[float]] = {1: [], 2: []}
    for rep in range(args.repeats):
        for workers in (1, 2) if rep % 2 == 0 else (2, 1):
            run = run_study(args.study, *overrides, f"workers={workers}")
            starts = [t.datetime_start for t in run.trials if t.datetime_start]
            ends = [t.datetime_complete for t in run.trials if t.datetime_complete]
            span = (max(ends) - min(starts)).total_seconds()
            span_rate[workers].append(60 * len(run.finished) / span)
            wall_rate[workers].append(60 * len(run.finished) / run.wall_seconds)
    print(
        f"Scaling on {args.study} ({args.trials} trials, random sampler, no pruning), {args.repeats} repeats"
    )
    for workers in (1, 2):
        print(
            f"  {workers} worker(s): {describe(span_rate[workers], '{:.1f}')} trials/min over the trials' span; "
            f"{describe(wall_rate[workers], '{:.1f}')} trials/min whole process"
        )
    ratio = [b / a for a, b in zip(span_rate[1], span_rate[2], strict=True)]
    ratio_wall = [b / a for a, b in zip(wall_rate[1], wall_rate[2], strict=True)]
    print(
        f"  2 vs 1 workers: {statistics.median(ratio):.2f}x over the span "
        f"(min {min(ratio):.2f}, max {max(ratio):.2f}); {statistics.median(ratio_wall):.2f}x whole process"
    )


if __name__ == "__main__":
    main()
