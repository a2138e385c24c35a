"""``fastops demo``: a small detector trained on the synthetic shapes within about ten minutes on a
2-core CPU, evaluated (COCO mAP and mAP@0.5 printed), its detections, precision-recall curves and
training curves drawn into the output folder. ``quick`` runs a tiny version (well under a minute)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .inference import InferenceConfig, run_eval, run_predict
from .train import TrainConfig, train

__all__ = ["DEMO", "QUICK_DEMO", "DemoRecipe", "run_demo"]


@dataclass(frozen=True)
class DemoRecipe:
    model: str
    steps: int
    batch_size: int
    lr: float
    image_size: int
    num_images: int
    val_images: int
    num_classes: int
    warmup_steps: int


DEMO = DemoRecipe(
    "fasterrcnn_small",
    steps=1200,
    batch_size=4,
    lr=2e-3,
    image_size=128,
    num_images=1200,
    val_images=100,
    num_classes=5,
    warmup_steps=50,
)
QUICK_DEMO = DemoRecipe(
    "fasterrcnn_small",
    steps=60,
    batch_size=4,
    lr=2e-3,
    image_size=128,
    num_images=240,
    val_images=20,
    num_classes=5,
    warmup_steps=10,
)


def run_demo(
    out: str, *, quick: bool = False, device: str = "cpu", progress: bool = True, threads: int | None = 1
) -> dict:
    """Trains, evaluates and draws (module docstring); returns the evaluation's metrics.

    ``threads``: CPU threads (None: torch's default). One by default: the small model's operations
    are too short to share between threads, and on a 2-core machine doing anything else the threads
    of each operation wait for one another."""
    recipe = QUICK_DEMO if quick else DEMO
    if threads is not None:
        torch.set_num_threads(threads)
    print(
        f"demo: training {recipe.model} on {recipe.num_images} synthetic {recipe.image_size}x{recipe.image_size} "
        f"images with {recipe.num_classes} classes for {recipe.steps} steps (batch {recipe.batch_size}, {device})",
        flush=True,
    )
    cfg = TrainConfig(
        model=recipe.model,
        data="synthetic",
        out=out,
        steps=recipe.steps,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        optimizer="adamw",
        warmup_steps=recipe.warmup_steps,
        clip_grad=10.0,
        device=device,
        image_size=recipe.image_size,
        num_images=recipe.num_images,
        val_images=recipe.val_images,
        num_classes=recipe.num_classes,
        progress=progress,
        log_every=max(1, recipe.steps // 20),
    )
    train(cfg)
    checkpoint = os.path.join(out, "last.pt")
    inference = InferenceConfig(checkpoint=checkpoint, out=out, device=device)
    metrics = run_eval(inference)
    run_predict(inference)
    print(
        f"demo: COCO mAP {metrics['map']:.3f}  mAP@0.5 {metrics['map_50']:.3f}  "
        f"({recipe.val_images} validation images)",
        flush=True,
    )
    print(f"demo: pictures in {out}: predictions.png, pr_curve.png, training_curves.png", flush=True)
    return metrics
