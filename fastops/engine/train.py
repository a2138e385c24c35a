"""The training loop: model and data by name, SGD or AdamW with warmup and cosine decay, optional
gradient clipping and AMP (CUDA only), evaluation and a metrics line (JSON) per epoch, atomic
checkpoints with ``resume``, and DistributedDataParallel under torchrun.

Files written into ``out``: ``steps.jsonl`` (per step: step, epoch, loss averaged over the
processes, learning rate), ``metrics.jsonl`` (per epoch: mean losses, images/s, the evaluation),
``last.pt`` (the checkpoint), ``training_curves.png`` (when matplotlib is installed).

A resumed run (``resume=True``) continues from ``out/last.pt``: same images in the same order,
same random draws, the same convolution kernels (``fastops.nn``'s autotuned choices), so its
losses equal an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..nn import autotune_choices, load_autotune_choices
from . import distributed
from .checkpoint import load_checkpoint, model_state, restore_rng, rng_state, save_checkpoint
from .datasets import batches, eval_loader, load_datasets, load_sampler_state, make_sampler, parse_data, sampler_state
from .errors import EngineError
from .evaluate import evaluate
from .models import model_spec
from .optim import DEFAULT_LR, make_optimizer, warmup_cosine
from .progress import Progress
from .tasks import make_task

__all__ = ["LossModule", "TrainConfig", "TrainResult", "read_jsonl", "train"]

CHECKPOINT = "last.pt"


@dataclass
class TrainConfig:
    """What ``train`` does; the CLI's ``train`` options (``fastops train --help``)."""

    model: str
    data: str = "synthetic"
    out: str = "runs/train"
    epochs: int = 1
    steps: int | None = None  # total optimizer steps (overrides epochs)
    batch_size: int = 4
    lr: float | None = None  # default: DEFAULT_LR[optimizer]
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    clip_grad: float | None = None  # max gradient norm
    amp: bool = False  # float16 autocast; CUDA only
    device: str = "cpu"
    sampler: str = "none"
    resume: bool = False
    seed: int = 0
    image_size: int | None = None  # synthetic images (default: the model's)
    num_images: int = 512  # synthetic training images
    val_images: int = 64  # images evaluated after each epoch (0: no evaluation)
    num_classes: int = 5  # synthetic classes
    imbalance: float = 1.0  # synthetic: most / least frequent class
    train_split: str | None = None
    val_split: str | None = None
    checkpoint_every: int = 0  # steps between checkpoints (0: at each epoch's end only)
    stop_at_step: int | None = None  # stop there as an interruption would (checkpoint, no evaluation)
    num_workers: int = 0
    log_every: int = 10
    progress: bool = True


@dataclass
class TrainResult:
    """The trained model (this process's copy), the last evaluation's metrics, where training stopped."""

    model: nn.Module
    metrics: dict
    step: int
    epoch: int


class LossModule(nn.Module):
    """The model and its task's loss as one module, so DistributedDataParallel sees the loss
    computation (segmenters' and the classifier's ``loss`` call the model inside)."""

    def __init__(self, model: nn.Module, task):
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, inputs, targets) -> dict[str, Tensor]:
        return self.task.loss(self.model, inputs, targets)


def read_jsonl(path: str) -> list[dict]:
    """The records of a JSON-lines file ([] when it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _append_jsonl(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_jsonl(path: str, last_step: int) -> None:
    """Drops the records after ``last_step`` (written after the checkpoint a run resumes from)."""
    kept = [r for r in read_jsonl(path) if r["step"] <= last_step]
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _EpochStats:
    def __init__(self):
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.images = 0
        self.start = time.perf_counter()

    def add(self, losses: dict[str, float], images: int) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1
        self.images += images

    def summary(self) -> dict:
        seconds = time.perf_counter() - self.start
        means = {k: v / max(1, self.steps) for k, v in self.sums.items()}
        return {**means, "images_per_s": self.images / max(seconds, 1e-9), "seconds": seconds}


def train(cfg: TrainConfig) -> TrainResult:
    """Trains ``cfg.model`` on ``cfg.data`` (module docstring). Raises EngineError for bad input."""
    spec = model_spec(cfg.model)
    data_spec = parse_data(cfg.data)
    if cfg.batch_size < 1:
        raise EngineError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    ctx = distributed.setup(cfg.device)
    try:
        return _train(cfg, spec, data_spec, ctx)
    finally:
        distributed.shutdown()


def _train(cfg: TrainConfig, spec, data_spec, ctx: distributed.Context) -> TrainResult:
    image_size = cfg.image_size or spec.image_size
    train_set, val_set = load_datasets(
        data_spec,
        image_size=image_size,
        num_images=cfg.num_images,
        val_images=cfg.val_images,
        num_classes=cfg.num_classes,
        imbalance=cfg.imbalance,
        seed=cfg.seed,
        train_split=cfg.train_split,
        val_split=cfg.val_split,
    )
    num_classes = train_set.num_classes
    if spec.needs_masks and not train_set.has_masks:
        raise EngineError(f"{cfg.model} needs instance masks, and {cfg.data} has none")
    if spec.task == "segmentation" and not train_set.has_semantic:
        raise EngineError(f"{cfg.model} needs segmentation maps, and {cfg.data} has none")
    task = make_task(spec.task, num_classes, spec.needs_masks)

    _seed_everything(cfg.seed)  # the same initial weights on every process
    model = spec.build(num_classes).to(ctx.device)
    step_module: nn.Module = LossModule(model, task)
    if ctx.world_size > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=False,
        )
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR.get(cfg.optimizer, 1e-3)
    optimizer = make_optimizer(model, cfg.optimizer, lr, cfg.weight_decay)
    sampler = make_sampler(cfg.sampler, train_set, num_replicas=ctx.world_size, rank=ctx.rank, seed=cfg.seed)
    steps_per_epoch = max(1, math.ceil(len(sampler) / cfg.batch_size))
    total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    if total_steps < 1:
        raise EngineError(f"nothing to train: {total_steps} steps (--steps / --epochs)")
    scheduler = warmup_cosine(optimizer, cfg.warmup_steps, total_steps)
    amp = cfg.amp and ctx.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    os.makedirs(cfg.out, exist_ok=True)
    ckpt_path = os.path.join(cfg.out, CHECKPOINT)
    steps_log, metrics_log = os.path.join(cfg.out, "steps.jsonl"), os.path.join(cfg.out, "metrics.jsonl")
    step, epoch, epoch_step = 0, 0, 0
    if cfg.resume:
        state = load_checkpoint(ckpt_path, model_name=cfg.model, num_classes=num_classes)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        load_sampler_state(sampler, state["sampler"])
        step, epoch, epoch_step = state["step"], state["epoch"], state["epoch_step"]
        if len(state["rng"]) != ctx.world_size:
            written = len(state["rng"])
            raise EngineError(f"{ckpt_path} was written by {written} processes, this run has {ctx.world_size}")
        restore_rng(state["rng"][ctx.rank])
        load_autotune_choices(state["conv_paths"][ctx.rank])  # the same convolution kernels, the same bits
        if ctx.is_main:
            _truncate_jsonl(steps_log, step)
            _truncate_jsonl(metrics_log, step)
    else:
        _seed_everything(cfg.seed * 1009 + ctx.rank)  # each process its own random draws
        if ctx.is_main:
            for path in (steps_log, metrics_log):
                if os.path.exists(path):
                    os.remove(path)

    def checkpoint() -> None:
        rngs = distributed.all_gather_objects(rng_state())
        conv_paths = distributed.all_gather_objects(autotune_choices())
        if ctx.is_main:
            save_checkpoint(
                ckpt_path,
                {
                    "model_name": cfg.model,
                    "num_classes": num_classes,
                    "class_names": list(train_set.class_names),
                    "task": spec.task,
                    "config": dataclasses.asdict(cfg),
                    "model": model_state(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "sampler": sampler_state(sampler),
                    "step": step,
                    "epoch": epoch,
                    "epoch_step": epoch_step,
                    "rng": rngs,
                    "conv_paths": conv_paths,
                },
            )
        distributed.barrier()

    stop = min(total_steps, cfg.stop_at_step) if cfg.stop_at_step is not None else total_steps
    progress = Progress(stop, step, enabled=ctx.is_main and cfg.progress, log_every=cfg.log_every)
    val = eval_loader(val_set, cfg.batch_size, num_replicas=ctx.world_size, rank=ctx.rank, limit=cfg.val_images)
    metrics: dict = {}
    model.train()
    try:
        while step < stop:
            sampler.set_epoch(epoch)
            indices = list(sampler)[epoch_step * cfg.batch_size :]
            stats = _EpochStats()
            for batch in batches(train_set, indices, cfg.batch_size, cfg.num_workers, seed=cfg.seed * 1009 + epoch):
                inputs, targets = task.inputs(batch, ctx.device)
                with torch.autocast(ctx.device.type, dtype=torch.float16, enabled=amp):
                    losses = step_module(inputs, targets)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise EngineError(f"the loss is {float(loss)} at step {step + 1}: lower --lr or use --clip-grad")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.clip_grad is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                lr_now = optimizer.param_groups[0]["lr"]
                scheduler.step()
                step += 1
                epoch_step += 1
                values = {k: distributed.all_reduce_mean(float(v.detach())) for k, v in losses.items()}
                images = len(batch[0]) * ctx.world_size
                stats.add(values, images)
                progress.update(images, values["loss"])
                if ctx.is_main:
                    _append_jsonl(steps_log, {"step": step, "epoch": epoch, "loss": values["loss"], "lr": lr_now})
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < stop:
                    checkpoint()
                if step >= stop:
                    break
            epoch_done = epoch_step * cfg.batch_size >= len(sampler)
            if epoch_done:
                epoch, epoch_step = epoch + 1, 0
            checkpoint()
            if step == stop and cfg.stop_at_step is not None and stop < total_steps:
                break
            if epoch_done or step >= total_steps:
                record = {"epoch": epoch if not epoch_done else epoch - 1, "step": step, **stats.summary()}
                if cfg.val_images > 0:
                    rng = rng_state()  # evaluation leaves the training's random draws as they were
                    metrics, _ = evaluate(model, task, val, ctx.device)
                    restore_rng(rng)
                    record.update(metrics)
                if ctx.is_main:
                    _append_jsonl(metrics_log, record)
                    progress.write(_format_record(record))
    finally:
        progress.close()
    if ctx.is_main:
        _training_curves(cfg.out)
    return TrainResult(model, metrics, step, epoch)


def _format_record(record: dict) -> str:
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
    return "  ".join(f"{k} {v}" for k, v in shown.items())


def _training_curves(out: str) -> None:
    from .plots import MissingPlotLibrary, plot_training_curves

    try:
        steps, epochs = read_jsonl(os.path.join(out, "steps.jsonl")), read_jsonl(os.path.join(out, "metrics.jsonl"))
        plot_training_curves(steps, epochs, os.path.join(out, "training_curves.png"))
    except MissingPlotLibrary:
        pass
