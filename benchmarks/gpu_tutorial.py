"""The tutorial's CIFAR-10 network on a GPU: this project's loop against the tutorial's
DataLoader-and-PIL path, with 1, 2 and 4 concurrent trials sharing the GPU.

Data are random CIFAR-shaped images (uint8, 32x32x3), so nothing is downloaded.

- "pipeline": the images live on the GPU as one normalized tensor; the project's
  training loop (`pipeline.training.fit`) shuffles indices and slices batches there.
- "tutorial": the Ray Tune tutorial's path: a Dataset of PIL images with ToTensor and
  Normalize transforms, a shuffling DataLoader with 2 worker processes, `.to(device)` per
  batch, the same SGD step.

Each concurrent trial is its own process (as workers are), started together; each trains
a fixed number of steps after a warm-up. Printed: images per second per trial and for
all trials together, and each trial's peak GPU memory. Must finish in under 5 minutes.

    python benchmarks/gpu_tutorial.py [--steps-16 600] [--steps-256 150] [--trials 1,2,4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.tasks import Split
from pipeline.tasks._vision import CIFAR10_MEAN, CIFAR10_STD, TutorialNet, cifar10
from pipeline.training import fit

WARMUP_STEPS = 20
TASK = cifar10()  # classification: the loop's loss and metrics


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def _pipeline(batch: int, steps: int, device: torch.device) -> tuple[float, int]:
    x_np, y_np = _images(batch * (steps + WARMUP_STEPS), 0)
    mean = torch.tensor(CIFAR10_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, device=device).view(1, 3, 1, 1)
    x = (torch.from_numpy(x_np).to(device).permute(0, 3, 1, 2).float() / 255 - mean) / std
    y = torch.from_numpy(y_np).to(device)
    val_x, val_y = x[:batch], y[:batch]
    hp = {
        "optimizer": "sgd",
        "lr": 0.001,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "batch_size": batch,
    }
    g = torch.Generator(device=device).manual_seed(0)
    model = TutorialNet(3, 32, 64, 32, 10).to(device)
    # Warm-up epoch of WARMUP_STEPS batches, then the timed epoch.
    warm = Split(x[: batch * WARMUP_STEPS], y[: batch * WARMUP_STEPS])
    fit(model, TASK, warm, Split(val_x, val_y), hp, 1, g)
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    started = time.perf_counter()
    timed = Split(x[batch * WARMUP_STEPS :], y[batch * WARMUP_STEPS :])
    fit(model, TASK, timed, Split(val_x, val_y), hp, 1, g)
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    return time.perf_counter() - started, batch * steps


class _PilDataset(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        import torchvision.transforms as T

        self.x, self.y = _images(n, 0)
        self.transform = T.Compose([T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def _tutorial(batch: int, steps: int, device: torch.device) -> tuple[float, int]:
    loader = torch.utils.data.DataLoader(
        _PilDataset(batch * (steps + WARMUP_STEPS)), batch_size=batch, shuffle=True, num_workers=2
    )
    model = TutorialNet(3, 32, 64, 32, 10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    started = 0.0
    for i, (inputs, labels) in enumerate(loader):
        if i == WARMUP_STEPS:
            torch.cuda.synchronize(device) if device.type == "cuda" else None
            started = time.perf_counter()
        inputs, labels = inputs.to(device), labels.to(device)
        opt.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        opt.step()
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    return time.perf_counter() - started, batch * steps


def _trial(path: str, batch: int, steps: int, device: str, start_at: float, out: mp.Queue) -> None:
    torch.set_num_threads(2)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.zeros(1, device=dev)  # create the context before the common start
        torch.cuda.reset_peak_memory_stats(dev)
    while time.time() < start_at:
        time.sleep(0.01)
    seconds, images = (_pipeline if path == "pipeline" else _tutorial)(batch, steps, dev)
    peak = torch.cuda.max_memory_reserved(dev) / 2**20 if dev.type == "cuda" else 0.0
    out.put((images / seconds, peak))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps-16", type=int, default=600)
    parser.add_argument("--steps-256", type=int, default=150)
    parser.add_argument("--trials", default="1,2,4")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    print(f"Tutorial network on CIFAR-shaped random data, {name}, torch {torch.__version__}")
    print(
        f"{'path':>9} {'batch':>5} {'trials':>6} {'img/s per trial':>16} {'img/s total':>12} {'GPU MiB per trial':>18}"
    )
    ctx = mp.get_context("spawn")
    for batch, steps in ((16, args.steps_16), (256, args.steps_256)):
        for k in [int(t) for t in args.trials.split(",")]:
            for path in ("pipeline", "tutorial"):
                out: mp.Queue = ctx.Queue()
                start_at = time.time() + 8.0
                procs = [
                    ctx.Process(
                        target=_trial, args=(path, batch, steps, args.device, start_at, out)
                    )
                    for _ in range(k)
                ]
                for p in procs:
                    p.start()
                results = [out.get(timeout=240) for _ in procs]
                for p in procs:
                    p.join()
                rates = [r for r, _ in results]
                peak = max(m for _, m in results)
                print(
                    f"{path:>9} {batch:5d} {k:6d} {np.median(rates):16.0f} {sum(rates):12.0f} {peak:18.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
