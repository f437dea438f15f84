"""Trainables that live outside the package, as a user's would: a real (tiny) PyTorch
loop that checkpoints every epoch, and the mistakes a user makes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pipeline.training import Session


def fit_line(config: Mapping[str, Any], session: Session) -> None:
    """Fit y = 3x - 1 with SGD; resume from the latest checkpoint; optionally sleep per
    epoch (so a test can kill the worker mid-trial) and fail after some epoch."""
    g = torch.Generator().manual_seed(session.seed)
    x = torch.randn(256, 1, generator=g)
    y = 3 * x - 1 + 0.1 * torch.randn(256, 1, generator=g)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    start = 0
    state = session.restore()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    for epoch in range(start + 1, session.max_epochs + 1):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            mse = nn.functional.mse_loss(model(x), y).item()
        session.report(epoch, mse=mse, train_loss=loss.item(), pid=os.getpid())
        session.checkpoint(
            {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
        )
        if config.get("fail_after") == epoch and state is None:
            raise RuntimeError(f"lost the GPU after epoch {epoch}")
        time.sleep(config.get("sleep", 0.0))


def never_reports(config: Mapping[str, Any], session: Session) -> float:
    return 0.5  # as a plain Optuna objective would: the pipeline needs session.report


def wrong_metric(config: Mapping[str, Any], session: Session) -> None:
    session.report(1, loss=0.5, accuracy=0.9)


def raises(config: Mapping[str, Any], session: Session) -> None:
    data: dict[str, int] = {}
    session.report(1, mse=1.0)
    print(data["missing"])


def one_argument(config: Mapping[str, Any]) -> None:
    pass


def line_model(config: Mapping[str, Any]) -> nn.Module:
    """fit_line's network, for ``model:`` (2 parameters: a weight and a bias)."""
    return nn.Linear(1, 1)


def fit_line_timed(config: Mapping[str, Any], session: Session) -> None:
    """fit_line, reporting its own latency once per trial, as a trainable may."""
    fit_line(config, session)
    session.record(latency_ms=0.25)


def misbehaves(config: Mapping[str, Any], session: Session) -> None:
    """Trial 0 reports epoch 1, then does ``config["how"]`` in epoch 2; later trials are
    fine (a user's bad trial: the study must go on)."""
    session.report(1, mse=1.0 + session.trial_number)
    session.checkpoint({"epoch": 1})
    if session.trial_number == 0:
        _misbehave(config["how"])
    session.report(2, mse=0.5 + session.trial_number)


def three_ways(config: Mapping[str, Any], session: Session) -> None:
    """Trial 0 hangs (deaf to SIGALRM and SIGTERM), trial 1 calls ``os._exit(3)``,
    trial 2 raises; later trials are fine."""
    how = {0: "hang", 1: "os_exit", 2: "raise"}.get(session.trial_number)
    session.report(1, mse=1.0 + session.trial_number)
    if how is not None:
        _misbehave(how)
    session.report(2, mse=0.5 + session.trial_number)


def _misbehave(how: str) -> None:
    if how == "exit3":
        sys.exit(3)
    if how == "exit0":
        sys.exit(0)
    if how == "systemexit":
        raise SystemExit
    if how == "keyboard":
        raise KeyboardInterrupt
    if how == "raise":
        raise ValueError("bad batch")
    if how == "os_exit":
        os._exit(3)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "sleep":  # a slow epoch that Python can interrupt
        while True:
            time.sleep(0.05)
    if how == "hang":  # deaf to SIGTERM and to the pipeline's timeout: only SIGKILL ends it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            with contextlib.suppress(BaseException):  # swallowing everything is the point
                time.sleep(0.05)


def deaf_to_sigterm(ready: Any) -> None:
    """A process body that ignores SIGTERM and never ends (a worker stuck in user code);
    sets the event ``ready`` once it ignores it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    while True:
        time.sleep(0.05)


def instant(config: Mapping[str, Any], session: Session) -> None:
    """A trial that costs nothing: one epoch whose metric is the sampled ``x``, so that
    tests of what workers do around trials spend no time training."""
    session.report(1, mse=float(config["x"]))


def chatty(config: Mapping[str, Any], session: Session) -> None:
    """Prints the way user code and its libraries do (print, a warning, logging, a C
    library writing to fd 2), then reports; with ``fail: true`` it raises after."""
    print(f"chatter from trial {session.trial_number}")
    warnings.warn(f"a library's complaint in trial {session.trial_number}", stacklevel=1)
    logging.getLogger("some.library").warning("a logged line from trial %d", session.trial_number)
    os.write(2, f"raw fd 2 from trial {session.trial_number}\n".encode())
    session.report(1, mse=float(config["x"]))
    if config.get("fail"):
        raise ValueError(f"trial {session.trial_number} gives up")


def ray_style(config: Mapping[str, Any], session: Session, data_dir: str = "") -> None:
    """fit_line's model in the Ray tutorial's loop: ``range(start_epoch, 10)`` whatever
    the study's max_epochs, a 0-based epoch in the checkpoint, a restart *at* the saved
    epoch (reported again), ``data_dir`` as a keyword argument. It records what it got:
    the keyword and the keys of its config."""
    session.trial.set_user_attr("data_dir_keyword", data_dir)
    session.trial.set_user_attr("config_keys", sorted(config))
    g = torch.Generator().manual_seed(session.seed)
    x = torch.randn(256, 1, generator=g)
    y = 3 * x - 1 + 0.1 * torch.randn(256, 1, generator=g)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    checkpoint_state = session.restore()
    if checkpoint_state:
        start_epoch = checkpoint_state["epoch"]
        model.load_state_dict(checkpoint_state["model"])
        optimizer.load_state_dict(checkpoint_state["optimizer"])
    else:
        start_epoch = 0
    for epoch in range(start_epoch, 10):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            mse = nn.functional.mse_loss(model(x), y).item()
        checkpoint_data = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
        }
        session.report(epoch + 1, mse=mse, pid=os.getpid())
        session.checkpoint(checkpoint_data)
        if config.get("fail_after") == epoch + 1 and checkpoint_state is None:
            raise RuntimeError(f"lost the GPU after epoch {epoch + 1}")
        time.sleep(config.get("sleep", 0.0))


def needs_data_dir(config: Mapping[str, Any], session: Session, data_dir: str) -> None:
    """A trainable whose third argument has no default: ``trainable_args`` must give it."""
    session.report(1, mse=float(len(data_dir)))
