"""Evaluation and prediction with a trained checkpoint (``fastops eval`` / ``fastops predict``):
the model rebuilt from the checkpoint's name and classes, the data as given, or as trained on."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from torch import nn

from . import distributed
from .checkpoint import load_checkpoint
from .datasets import eval_loader, load_datasets, parse_data
from .errors import EngineError
from .evaluate import evaluate
from .models import model_spec
from .plots import draw_detections, draw_multilabel, draw_segmentation, plot_pr
from .tasks import make_task

__all__ = ["InferenceConfig", "load_trained", "run_eval", "run_predict"]


@dataclass
class InferenceConfig:
    """What ``run_eval`` / ``run_predict`` do. ``None`` fields take the checkpoint's training values."""

    checkpoint: str
    model: str | None = None
    data: str | None = None
    out: str = "runs/eval"
    batch_size: int = 8
    device: str = "cpu"
    images: int | None = None  # images to evaluate (default: the whole validation set) / to draw (8)
    image_size: int | None = None
    val_images: int | None = None
    num_classes: int | None = None
    imbalance: float | None = None
    seed: int | None = None
    val_split: str | None = None
    score_thresh: float = 0.5


def load_trained(path: str, model_name: str | None, device: torch.device) -> tuple[nn.Module, dict]:
    """The model of a training checkpoint (in eval mode) and the checkpoint; EngineError when it holds
    another model than ``model_name``."""
    if model_name is not None:
        model_spec(model_name)  # an unknown name fails before the file is read
    state = load_checkpoint(path, model_name=model_name)
    model = model_spec(state["model_name"]).build(state["num_classes"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def _validation_set(cfg: InferenceConfig, state: dict):
    trained = state["config"]
    pick = lambda value, key: value if value is not None else trained[key]
    spec = model_spec(state["model_name"])
    data_spec = parse_data(pick(cfg.data, "data"))
    _, val = load_datasets(
        data_spec,
        image_size=pick(cfg.image_size, "image_size") or spec.image_size,
        num_images=1,
        val_images=pick(cfg.val_images, "val_images") or 64,
        num_classes=pick(cfg.num_classes, "num_classes"),
        imbalance=pick(cfg.imbalance, "imbalance"),
        seed=pick(cfg.seed, "seed"),
        val_split=pick(cfg.val_split, "val_split"),
        parts=("val",),
    )
    if val.num_classes != state["num_classes"]:
        raise EngineError(f"the checkpoint's model has {state['num_classes']} classes, the data {val.num_classes}")
    return val


def run_eval(cfg: InferenceConfig) -> dict:
    """The checkpoint's metrics on the validation data; writes ``eval.json`` (and for detectors
    ``pr_curve.png``) into ``cfg.out``. Runs under torchrun too (metrics over all processes)."""
    ctx = distributed.setup(cfg.device)
    try:
        model, state = load_trained(cfg.checkpoint, cfg.model, ctx.device)
        val = _validation_set(cfg, state)
        spec = model_spec(state["model_name"])
        task = make_task(spec.task, state["num_classes"], spec.needs_masks)
        loader = eval_loader(val, cfg.batch_size, num_replicas=ctx.world_size, rank=ctx.rank, limit=cfg.images)
        metrics, evaluator = evaluate(model, task, loader, ctx.device)
        if ctx.is_main:
            os.makedirs(cfg.out, exist_ok=True)
            with open(os.path.join(cfg.out, "eval.json"), "w") as f:
                record = {"checkpoint": cfg.checkpoint, "model": state["model_name"], "step": state["step"]}
                json.dump({**record, **metrics}, f)
            if spec.task == "detection":
                plot_pr(evaluator.curves, os.path.join(cfg.out, "pr_curve.png"), class_names=state["class_names"])
        return metrics
    finally:
        distributed.shutdown()


@torch.no_grad()
def run_predict(cfg: InferenceConfig) -> str:
    """Predictions on the first ``cfg.images`` (default 8) validation images drawn into
    ``cfg.out/predictions.png``; returns that path."""
    device = torch.device(cfg.device)
    model, state = load_trained(cfg.checkpoint, cfg.model, device)
    val = _validation_set(cfg, state)
    spec = model_spec(state["model_name"])
    task = make_task(spec.task, state["num_classes"], spec.needs_masks)
    count = min(cfg.images or 8, len(val))
    batch = next(iter(eval_loader(val, count, num_replicas=1, rank=0, limit=count)))
    inputs, _ = task.inputs(batch, device)
    preds = task.predict(model, inputs)
    os.makedirs(cfg.out, exist_ok=True)
    path = os.path.join(cfg.out, "predictions.png")
    images = batch[0]
    if spec.task in ("detection", "panoptic"):
        draw_detections(images, preds, path, class_names=state["class_names"], score_thresh=cfg.score_thresh)
    elif spec.task == "segmentation":
        draw_segmentation(images, preds, path, num_classes=state["num_classes"])
    else:
        draw_multilabel(images, preds["scores"], path, class_names=state["class_names"])
    return path
