"""Evaluation: a model's predictions over this process's share of a dataset, scored by the task's
evaluator (synchronized across processes)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(model: nn.Module, task, loader, device: torch.device):
    """(metrics dict, evaluator) of ``model`` on ``loader``'s images; the model's mode is restored."""
    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    evaluator = task.evaluator()
    try:
        for batch in loader:
            inputs, targets = task.inputs(batch, device)
            evaluator.update(task.predict(model, inputs), targets)
        return evaluator.compute(), evaluator
    finally:
        model.train(was_training)
