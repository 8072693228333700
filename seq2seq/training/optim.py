"""Optimizers ("adam", "adamw", "sgd") and learning-rate schedules ("constant", "inverse_sqrt",
"plateau")."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from seq2seq.registry import register


@register("optimizer", "adam")
def adam(
    params: Iterable[nn.Parameter],
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba, 2015)."""
    params = list(params)
    return torch.optim.Adam(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, **_fused(params)
    )


@register("optimizer", "adamw")
def adamw(
    params: Iterable[nn.Parameter],
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay."""
    params = list(params)
    return torch.optim.AdamW(
        params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, **_fused(params)
    )


def _fused(params: list[nn.Parameter]) -> dict[str, bool]:
    """Adam's fused kernel (one pass over each parameter; 1.05× a CPU training step) where
    torch has it: CUDA, and the CPU from torch 2.4 on; float parameters only."""
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    devices = {p.device.type for p in params}
    floats = all(p.is_floating_point() for p in params)
    cpu_ok = (major, minor) >= (2, 4)
    if floats and params and devices <= ({"cuda", "cpu"} if cpu_ok else {"cuda"}):
        return {"fused": True}
    return {}


@register("optimizer", "sgd")
def sgd(
    params: Iterable[nn.Parameter], lr: float, momentum: float = 0.0, nesterov: bool = False
) -> torch.optim.Optimizer:
    """Stochastic gradient descent, optionally with (Nesterov) momentum."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov)


class Schedule:
    """A learning-rate schedule the trainer calls after each update and each validation."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def after_update(self) -> None:
        """Called once per optimizer step."""
        self.scheduler.step()

    def after_validation(self, value: float, higher_is_better: bool) -> None:
        """Called with the early-stopping metric after each validation."""

    def state_dict(self) -> dict[str, Any]:
        """For checkpoints."""
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From checkpoints."""
        self.scheduler.load_state_dict(state)


@register("scheduler", "constant")
def constant(optimizer: torch.optim.Optimizer, warmup: int = 0) -> Schedule:
    """The learning rate of train.lr throughout, after an optional linear warm-up."""
    return Schedule(
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
    )


@register("scheduler", "inverse_sqrt")
def inverse_sqrt(optimizer: torch.optim.Optimizer, warmup: int = 4000) -> Schedule:
    """Linear warm-up to train.lr over `warmup` steps, then decay ∝ 1/√step."""
    if warmup <= 0:
        raise ValueError("warmup must be positive")

    def factor(step: int) -> float:
        step += 1
        return min(step / warmup, math.sqrt(warmup / step))

    return Schedule(torch.optim.lr_scheduler.LambdaLR(optimizer, factor))


class PlateauSchedule(Schedule):
    """Multiplies the learning rate by `factor` when validation stops improving."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, factor: float, patience: int, min_lr: float
    ) -> None:
        super().__init__(None)
        self.optimizer = optimizer
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        self.best: float | None = None
        self.bad = 0

    def after_update(self) -> None:
        """The rate changes only at validations."""

    def after_validation(self, value: float, higher_is_better: bool) -> None:
        """Count validations without improvement; decay after `patience` of them."""
        better = self.best is None or (value > self.best if higher_is_better else value < self.best)
        if better:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad > self.patience:
            for group in self.optimizer.param_groups:
                group["lr"] = max(self.min_lr, group["lr"] * self.factor)
            self.bad = 0

    def state_dict(self) -> dict[str, Any]:
        """For checkpoints."""
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From checkpoints."""
        self.best, self.bad = state["best"], state["bad"]


@register("scheduler", "plateau")
def plateau(
    optimizer: torch.optim.Optimizer, factor: float = 0.5, patience: int = 2, min_lr: float = 1e-6
) -> Schedule:
    """Reduce-on-plateau, following the early-stopping metric (or validation loss)."""
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must be between 0 and 1, got {factor}")
    return PlateauSchedule(optimizer, factor, patience, min_lr)
