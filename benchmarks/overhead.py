"""Pipeline overhead: what a study costs beyond its trials.

Two measurements:

``--section trials`` (the default study, as before): the share of worker time outside
forward, backward and evaluation (sampling, model building, storage writes, reporting,
the trial loop). Each repeat runs the study as a whole ``pipeline tune`` process on a
fresh SQLite file. Two shares are printed: per trial (trial start to end) and per worker
(first trial start to last trial end, so the time between trials counts too).

``--section fixed`` (issue 29): the fixed cost of a run as a whole process, side by side
with the bare Optuna script (benchmarks/bare_optuna.py) on the tutorial benchmark's task
and the same 20 configurations per seed, the two alternating run after run. For each:
the seconds from process start to the first trial's start, from the last trial's end to
process exit, the CPU-idle seconds of the two worker slots (2 x wall minus the CPU time
of the process tree), and the wall time; medians over the repeats, and the ratio of the
project's median wall time to the script's.

    python benchmarks/overhead.py [--section trials|fixed|both] [--repeats 5]
        [--markdown benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml
from common import REPO, describe, run_study, write_results
from tutorial_task import CONCURRENT, study_config

HERE = Path(__file__).resolve().parent


def trials_section(study: str, repeats: int, overrides: list[str]) -> list[str]:
    """The per-trial and per-worker overhead of ``study`` (the default study)."""
    per_trial, per_worker, startup, seconds_per_trial = [], [], [], []
    for _ in range(repeats):
        run = run_study(study, *overrides)
        compute = run.compute_seconds()
        per_trial.append(100 * (1 - compute / run.trial_seconds()))
        span = run.worker_span_seconds()
        per_worker.append(100 * (1 - compute / span))
        workers = len({t.user_attrs.get("worker") for t in run.trials})
        startup.append(run.wall_seconds - span / workers)
        seconds_per_trial.append((span - compute) / len(run.trials))
    return [
        f"Pipeline overhead on {study} ({len(run.trials)} trials, {workers} workers), "
        f"median of {repeats} runs",
        f"  outside forward/backward/eval, per trial:  {describe(per_trial, '{:.2f}')} %",
        f"  outside forward/backward/eval, per worker: {describe(per_worker, '{:.2f}')} %",
        f"  overhead seconds per trial:                {describe(seconds_per_trial, '{:.4f}')} s",
        f"  process start + data load + end (once):    {describe(startup, '{:.2f}')} s",
    ]


@dataclass
class Whole:
    """One run of one tool as a whole process."""

    wall: float
    to_first_trial: float  # process start -> first trial's start
    tail: float  # last trial's end -> process exit
    cpu: float  # CPU seconds of the process and its children
    epochs: int  # trained, over all trials (which ones ASHA stops depends on timing)
    compute: float  # seconds inside forward, backward and evaluation, over all trials
    in_trials: float  # seconds from each trial's start to its end, summed

    @property
    def idle(self) -> float:
        return CONCURRENT * self.wall - self.cpu

    @property
    def in_trial_overhead(self) -> float:
        """Seconds inside trials but outside the model, summed over trials."""
        return self.in_trials - self.compute

    @property
    def outside_trials(self) -> float:
        """Slot-seconds between the first trial's start and the last one's end that no
        trial held: the gaps between a slot's trials and the wait for the last one."""
        span = self.wall - self.to_first_trial - self.tail
        return CONCURRENT * span - self.in_trials


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float, float, float]:
    """Run ``cmd``; its start and end (epoch seconds), wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start, clock = time.time(), time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - clock
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return start, start + wall, wall, cpu


def run_project(seed: int, tmp: Path) -> Whole:
    url = f"sqlite:///{tmp}/project-{seed}.db"
    study_file = tmp / f"project-{seed}.yaml"
    study_file.write_text(yaml.safe_dump({**study_config(seed), "storage": url}))
    cmd = [sys.executable, "-m", "pipeline", "tune", str(study_file), "--quiet"]
    start, end, wall, cpu = _timed(cmd, tmp)
    name = optuna.get_all_study_summaries(url)[0].study_name
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    spans = [(t.datetime_start, t.datetime_complete) for t in trials]
    ended = [(begin, end) for begin, end in spans if begin is not None and end is not None]
    first = min(begin.timestamp() for begin, _ in ended)
    last = max(end.timestamp() for _, end in ended)
    return Whole(
        wall,
        first - start,
        end - last,
        cpu,
        epochs=sum(t.user_attrs.get("epochs", 0) for t in trials),
        compute=sum(t.user_attrs.get("compute_seconds", 0.0) for t in trials),
        in_trials=sum((end - begin).total_seconds() for begin, end in ended),
    )


def run_bare(seed: int, tmp: Path) -> Whole:
    out = tmp / f"bare-{seed}.json"
    cmd = [sys.executable, str(HERE / "bare_optuna.py"), "--seed", str(seed), "--out", str(out)]
    start, end, wall, cpu = _timed(cmd, tmp)
    data = json.loads(out.read_text())
    return Whole(
        wall,
        data["first_trial_start"] - start,
        end - data["last_trial_end"],
        cpu,
        epochs=data["epochs"],
        compute=data["compute_seconds"],
        in_trials=data["trial_seconds"],
    )


KEYS = (
    "to_first_trial",
    "tail",
    "idle",
    "epochs",
    "compute",
    "in_trial_overhead",
    "outside_trials",
    "wall",
)


def fixed_section(repeats: int) -> list[str]:
    """The whole-process fixed cost, the project against the bare script."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs: dict[str, list[Whole]] = {"project": [], "bare": []}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for seed in range(repeats):
            order = ("project", "bare") if seed % 2 == 0 else ("bare", "project")
            for tool in order:
                whole = (run_project if tool == "project" else run_bare)(seed, tmp)
                runs[tool].append(whole)
                print(
                    f"    {tool:<8} seed {seed}: wall {whole.wall:5.1f} s, first trial at "
                    f"{whole.to_first_trial:4.2f} s, exit {whole.tail:4.2f} s after the last, "
                    f"idle {whole.idle:4.1f} CPU-s; {whole.epochs} epochs, "
                    f"{whole.compute:5.1f} s in the model, "
                    f"{whole.in_trial_overhead:4.1f} s in trials outside it, "
                    f"{whole.outside_trials:4.1f} slot-s outside trials",
                    flush=True,
                )
    median = {
        tool: {key: statistics.median(getattr(w, key) for w in ws) for key in KEYS}
        for tool, ws in runs.items()
    }
    project, bare = median["project"], median["bare"]
    fixed = (project["to_first_trial"] + project["tail"]) - (bare["to_first_trial"] + bare["tail"])
    lines = [
        "| medians of "
        f"{repeats} | process start to first trial (s) | last trial to exit (s) | "
        "CPU-idle (CPU-s) | epochs | in the model (s) | in trials, outside the model (s) "
        "| slot-s outside trials | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool, label in (("project", "this project"), ("bare", "bare Optuna script")):
        m = median[tool]
        lines.append(
            f"| {label} | {m['to_first_trial']:.2f} | {m['tail']:.2f} | {m['idle']:.1f} | "
            f"{m['epochs']:.0f} | {m['compute']:.1f} | {m['in_trial_overhead']:.1f} | "
            f"{m['outside_trials']:.1f} | {m['wall']:.1f} |"
        )
    lines += [
        "",
        f"Fixed cost above the bare script (start + exit): {fixed:+.2f} s; "
        f"wall ratio project / bare: {project['wall'] / bare['wall']:.2f}.",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--section", choices=["trials", "fixed", "both"], default="trials")
    parser.add_argument("--study", default="studies/default.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--markdown", type=Path, help="append the figures to this file")
    args = parser.parse_args()
    out: list[str] = []
    if args.section in ("trials", "both"):
        lines = trials_section(args.study, args.repeats, args.overrides)
        print("\n".join(lines), flush=True)
        out += ["## Per-trial overhead", "", "```", *lines, "```", ""]
    if args.section in ("fixed", "both"):
        print("Fixed cost of a whole run, this project against a bare Optuna script", flush=True)
        lines = fixed_section(args.repeats)
        print("\n".join(lines), flush=True)
        out += ["## Fixed cost of a run", "", *lines, ""]
    if args.markdown:
        command = " ".join(["python benchmarks/overhead.py", *sys.argv[1:]])
        out += [f"Measured with `{command}` on {time.strftime('%Y-%m-%d')}.", ""]
        write_results(args.markdown, "\n".join(out), append=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
