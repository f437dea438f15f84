"""Trial packing (issue 16): K tutorial-CNN trials as one model against the same trials
unpacked, on one GPU.

Throughput, on random CIFAR-shaped data held on the device:

- "packed K": K members (l1/l2 drawn from 4..256 and padded, lr drawn per member, SGD with
  momentum) trained by ``pipeline.packing.Pack`` (the engine a packing worker uses);
- "unpacked": one trial alone in one process, the project's loop (``pipeline.training.fit``);
- "fractional": four such processes sharing the GPU at once (``gpus_per_trial: 0.25``).

Printed per batch size and K: images per second (all members together), trials per hour
(a trial being ``--trial-images`` training images: the CIFAR tutorial's 40000 x 10
epochs by default) and peak GPU memory per member; then the issue's two targets at batch
16 (packed >= 10x unpacked, >= 3x fractional). Last, the CIFAR tutorial study end to end
(``studies/cifar10_tutorial.yaml`` on CIFAR-format files written here), unpacked with
``gpus_per_trial: 0.25`` and packed, the same number of trials: wall time, trials per
hour and the best validation loss.

    python benchmarks/packing.py [--members 1,4,16,64,256] [--markdown benchmarks/RESULTS.md]
    python benchmarks/packing.py --smoke      # CPU, tiny sizes: proves the script runs
"""

from __future__ import annotations

import argparse
import datetime
import math
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from pipeline.packing import Pack
from pipeline.tasks import Split, Splits
from pipeline.tasks._vision import cifar10
from pipeline.training import fit, hyperparameters

REPO = Path(__file__).resolve().parents[1]
TASK = cifar10()
WARMUP_STEPS = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _data(batch: int, steps: int, device: torch.device, seed: int = 0) -> Splits:
    """Normalized random CIFAR-shaped images: ``steps`` batches to train on, one to score."""
    g = torch.Generator().manual_seed(seed)
    n = batch * steps
    x = torch.randn(n + batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (n + batch,), generator=g).to(device)
    return Splits(x[:n], y[:n], x[n:], y[n:], x[n:], y[n:], num_classes=10)


def _member_hps(k: int, batch: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(k)
    return [
        hyperparameters(
            TASK,
            {
                "l1": int(2 ** rng.integers(2, 9)),
                "l2": int(2 ** rng.integers(2, 9)),
                "lr": float(10 ** rng.uniform(-4, -1)),
                "momentum": 0.9,
                "batch_size": batch,
            },
        )
        for _ in range(k)
    ]


def packed_rate(k: int, batch: int, steps: int, device: torch.device) -> tuple[float, float]:
    """Images per second of ``k`` packed members (all together) and peak MiB per member."""
    hps = _member_hps(k, batch)
    warm = _data(batch, WARMUP_STEPS, device)
    Pack(TASK, warm, hps, list(range(k)), 1, device).train_epoch()
    splits = _data(batch, steps, device, seed=1)
    pack = Pack(TASK, splits, hps, list(range(k)), 1, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    started = time.perf_counter()
    pack.train_epoch()
    _sync(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return k * batch * steps / seconds, peak / k


def _solo(batch: int, steps: int, device: torch.device) -> float:
    """Images per second of one trial trained alone with the project's loop."""
    hp = _member_hps(1, batch)[0]
    warm, splits = _data(batch, WARMUP_STEPS, device), _data(batch, steps, device, seed=1)
    g = torch.Generator(device=device).manual_seed(0)
    model = TASK.build_model(hp, splits).to(device)
    fit(model, TASK, warm.train, Split(warm.val_x, warm.val_y), hp, 1, g)
    _sync(device)
    started = time.perf_counter()
    fit(model, TASK, splits.train, Split(splits.val_x, splits.val_y), hp, 1, g)
    _sync(device)
    return batch * steps / (time.perf_counter() - started)


def _process(batch: int, steps: int, device: str, start_at: float, out: Any) -> None:
    torch.set_num_threads(1)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.zeros(1, device=dev)  # the CUDA context, before the common start
    while time.time() < start_at:
        time.sleep(0.01)
    out.put(_solo(batch, steps, dev))


def unpacked_rate(processes: int, batch: int, steps: int, device: str) -> float:
    """Images per second of ``processes`` unpacked trials at once, one process each."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 10.0 + processes  # after every process has imported torch
    procs = [
        ctx.Process(target=_process, args=(batch, steps, device, start_at, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    rates = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return float(sum(rates))


def throughput(args: argparse.Namespace, device: torch.device) -> list[str]:
    """The throughput table, as Markdown rows, printed as they come."""
    rows = [
        "| batch | path | trials at once | img/s | trials/hour | GPU MiB per member |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(rows), flush=True)
    targets = []
    for batch in args.batches:
        steps = max(args.images // batch, 2)
        solo = unpacked_rate(1, batch, steps, str(device))
        fraction = unpacked_rate(args.fractional, batch, steps, str(device))
        lines = [("unpacked, 1 process", 1, solo, 0.0)]
        lines.append((f"fractional ({args.fractional} processes)", args.fractional, fraction, 0.0))
        best = 0.0
        for k in args.members:
            try:
                rate, peak = packed_rate(k, batch, max(steps // max(k // 16, 1), 20), device)
            except torch.cuda.OutOfMemoryError:
                rate, peak = float("nan"), float("nan")
                torch.cuda.empty_cache()
            lines.append((f"packed K={k}", k, rate, peak))
            if not math.isnan(rate):
                best = max(best, rate)
        for path, k, rate, peak in lines:
            row = (
                f"| {batch} | {path} | {k} | {rate:,.0f} | {rate * 3600 / args.trial_images:,.1f} "
                f"| {peak:,.1f} |"
            )
            rows.append(row)
            print(row, flush=True)
        targets.append(
            f"batch {batch}: best packed {best:,.0f} img/s = {best / solo:.1f}x unpacked "
            f"(target 10x), {best / fraction:.1f}x fractional (target 3x)"
        )
        print(targets[-1], flush=True)
    return [*rows, "", *targets]


def _study(args: argparse.Namespace, data: Path, storage: str, name: str, *extra: str) -> str:
    """Run the CIFAR tutorial study once and describe it in one Markdown row."""
    command = [
        sys.executable, "-m", "pipeline", "tune", str(REPO / "studies/cifar10_tutorial.yaml"),
        "--storage", storage, "--n-trials", str(args.study_trials),
        "--set", f"study_name={name}", "--set", f"max_epochs={args.study_epochs}",
        "--set", f"task.options.data_dir={data}", "--set", "task.options.verify_checksums=false",
        "--set", f"device={args.device}", "--set", "cpus_per_trial=null", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"| {name} | failed (exit {done.returncode}: {last}) | {seconds:.0f} | | |"
    study = optuna.load_study(study_name=name, storage=storage)
    ended = [t for t in study.trials if t.state.is_finished() and t.value is not None]
    values = [float(t.value) for t in ended if t.state.name == "COMPLETE" and t.value is not None]
    best = min(values, default=math.nan)
    return (
        f"| {name} | {len(ended)} | {seconds:.0f} | {len(ended) * 3600 / seconds:,.0f} "
        f"| {best:.4f} |"
    )


def end_to_end(args: argparse.Namespace) -> list[str]:
    """The CIFAR tutorial study, unpacked (fractional GPU) and packed."""
    sys.path.insert(0, str(REPO / "tests"))
    from vision_data import write_cifar10

    rows = ["| study | trials | seconds | trials/hour | best val_loss |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_cifar10(Path(tmp) / "cifar", per_batch=args.study_images // 5, test=1000)
        storage = f"sqlite:///{tmp}/packing.db"
        workers = ["--set", f"gpus_per_trial={1 / args.fractional:g}"]
        if args.device == "cpu":
            workers = ["--workers", str(args.fractional)]
        rows.append(_study(args, data, storage, "unpacked", *workers))
        on_cpu = ["--set", "packing.on_cpu=true"] if args.device == "cpu" else []
        packed = ["--set", f"packing.max_members={max(args.members)}", "--workers", "1", *on_cpu]
        rows.append(_study(args, data, storage, "packed", *packed))
    for row in rows:
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", default="1,4,16,64,256")
    parser.add_argument("--batches", default="16,256")
    parser.add_argument("--images", type=int, default=32768, help="timed images per trial")
    parser.add_argument("--fractional", type=int, default=4, help="processes sharing the GPU")
    parser.add_argument("--trial-images", type=int, default=400_000)
    parser.add_argument("--study-trials", type=int, default=32)
    parser.add_argument("--study-epochs", type=int, default=3)
    parser.add_argument("--study-images", type=int, default=10_000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes")
    parser.add_argument("--markdown", type=Path, help="append the results to this file")
    args = parser.parse_args()
    if args.smoke:
        args.device, args.members, args.batches, args.images = "cpu", "1,2", "16", 64
        args.fractional, args.study_trials, args.study_epochs, args.study_images = 2, 4, 1, 200
    args.members = [int(k) for k in str(args.members).split(",")]
    args.batches = [int(b) for b in str(args.batches).split(",")]
    device = torch.device(args.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    title = f"## Trial packing, {card}, {datetime.date.today()} (benchmarks/packing.py)"
    print(title, f"torch {torch.__version__}", sep="\n", flush=True)
    save = args.markdown if not args.smoke else None
    _append(save, [title, f"torch {torch.__version__}", "", *throughput(args, device)])
    _append(save, ["", *end_to_end(args)])


def _append(path: Path | None, lines: list[str]) -> None:
    """Add ``lines`` to the Markdown file as soon as they are measured."""
    if path is not None:
        with open(path, "a") as f:
            f.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
