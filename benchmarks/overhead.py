"""Pipeline overhead on a study: the share of worker time outside forward, backward and
evaluation (sampling, model building, storage writes, reporting, the trial loop).

Each repeat runs the study as a whole `pipeline tune` process on a fresh SQLite file.
Two shares are printed: per trial (trial start to end) and per worker (first trial
start to last trial end, so the time between trials counts too). Process start and data
loading, paid once per worker, are printed separately.

    python benchmarks/overhead.py [--study studies/default.yaml] [--repeats 3]
"""

from __future__ import annotations

import argparse

from common import describe, run_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", default="studies/default.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    per_trial, per_worker, startup, seconds_per_trial = [], [], [], []
    for _ in range(args.repeats):
        run = run_study(args.study, *args.overrides)
        compute = run.compute_seconds()
        per_trial.append(100 * (1 - compute / run.trial_seconds()))
        span = run.worker_span_seconds()
        per_worker.append(100 * (1 - compute / span))
        workers = len({t.user_attrs.get("worker") for t in run.trials})
        startup.append(run.wall_seconds - span / workers)
        seconds_per_trial.append((span - compute) / len(run.trials))
    print(
        f"Pipeline overhead on {args.study} ({len(run.trials)} trials, {workers} workers), median of {args.repeats} runs"
    )
    print(f"  outside forward/backward/eval, per trial:  {describe(per_trial, '{:.2f}')} %")
    print(f"  outside forward/backward/eval, per worker: {describe(per_worker, '{:.2f}')} %")
    print(f"  overhead seconds per trial:                {describe(seconds_per_trial, '{:.4f}')} s")
    print(f"  process start + data load + end (once):    {describe(startup, '{:.2f}')} s")


if __name__ == "__main__":
    main()
