"""``fastops bench``: a named model's training step (forward, backward, optimizer step) and its
inference on synthetic images, as images/s (the median of ``repeats`` timed runs after warmup)."""

from __future__ import annotations

import statistics
import time

import torch

from .. import data
from .models import model_spec
from .optim import make_optimizer
from .tasks import make_task

__all__ = ["bench_model"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(
    name: str,
    *,
    device: str = "cpu",
    batch_size: int = 4,
    image_size: int | None = None,
    num_classes: int = 5,
    repeats: int = 5,
    warmup: int = 2,
) -> dict:
    """{"model", "device", "batch_size", "image_size", "train_images_per_s", "infer_images_per_s"}."""
    spec = model_spec(name)
    dev = torch.device(device)
    size = image_size or spec.image_size
    torch.manual_seed(0)
    dataset = data.SyntheticShapes(batch_size, image_size=size, num_classes=num_classes, seed=0)
    task = make_task(spec.task, num_classes, spec.needs_masks)
    inputs, targets = task.inputs(data.collate([dataset[i] for i in range(batch_size)]), dev)
    model = spec.build(num_classes).to(dev)
    optimizer = make_optimizer(model, "sgd", 1e-3, 0.0)

    def train_step():
        loss = task.loss(model, inputs, targets)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    train_s = _median_seconds(train_step, repeats, warmup, dev)
    model.eval()
    with torch.no_grad():
        infer_s = _median_seconds(lambda: task.predict(model, inputs), repeats, warmup, dev)
    return {
        "model": name,
        "device": str(dev),
        "batch_size": batch_size,
        "image_size": size,
        "train_images_per_s": batch_size / train_s,
        "infer_images_per_s": batch_size / infer_s,
    }
