"""Optimizers and the learning-rate schedule: SGD (momentum 0.9) or AdamW, no weight decay on
biases and normalization weights, a linear warmup then a cosine decay to ``min_lr_ratio`` of the
peak."""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import EngineError

__all__ = ["DEFAULT_LR", "OPTIMIZERS", "make_optimizer", "warmup_cosine"]

OPTIMIZERS = ("sgd", "adamw")
DEFAULT_LR = {"sgd": 0.02, "adamw": 1e-3}


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``name`` ("sgd" or "adamw") over the trainable parameters; one-dimensional ones (biases,
    norms) without weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise EngineError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.05
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 1/warmup of the peak over ``warmup_steps``, then cosine to
    ``min_lr_ratio`` x peak at ``total_steps``."""
    warmup_steps = max(0, min(warmup_steps, total_steps - 1))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
