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
import math
import os
import random
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
from .logs import EpochStats, RunLogs, format_record, read_jsonl
from .models import ModelSpec, model_spec
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
    repeat_thresh: float = 0.001  # RepeatFactorSampler's threshold (LVIS's value)
    augment: tuple[str, ...] = ()  # training augmentations (datasets.AUGMENTATIONS), in order
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


def train(cfg: TrainConfig) -> TrainResult:
    """Trains ``cfg.model`` on ``cfg.data`` (module docstring). Raises EngineError for bad input."""
    spec = model_spec(cfg.model)
    data_spec = parse_data(cfg.data)
    if cfg.batch_size < 1:
        raise EngineError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    ctx = distributed.setup(cfg.device)
    try:
        run = _Run(cfg, spec, data_spec, ctx)
        run.resume() if cfg.resume else run.start()
        return run.run()
    finally:
        distributed.shutdown()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Run:
    """One training run: its objects (built from the config) and its position (step, epoch, steps
    done in the epoch), which the checkpoint saves and ``resume`` restores."""

    def __init__(self, cfg: TrainConfig, spec: ModelSpec, data_spec, ctx: distributed.Context):
        self.cfg, self.spec, self.ctx = cfg, spec, ctx
        self.train_set, self.val_set = load_datasets(
            data_spec,
            image_size=cfg.image_size or spec.image_size,
            num_images=cfg.num_images,
            val_images=cfg.val_images,
            num_classes=cfg.num_classes,
            imbalance=cfg.imbalance,
            seed=cfg.seed,
            train_split=cfg.train_split,
            val_split=cfg.val_split,
            augment=cfg.augment,
        )
        self.num_classes = self.train_set.num_classes
        if spec.needs_masks and not self.train_set.has_masks:
            raise EngineError(f"{cfg.model} needs instance masks, and {cfg.data} has none")
        if spec.task in ("segmentation", "panoptic") and not self.train_set.has_semantic:
            raise EngineError(f"{cfg.model} needs segmentation maps, and {cfg.data} has none")
        self.task = make_task(spec.task, self.num_classes, spec.needs_masks)

        _seed_everything(cfg.seed)  # the same initial weights on every process
        self.model = spec.build(self.num_classes).to(ctx.device)
        self.step_module: nn.Module = LossModule(self.model, self.task)
        if ctx.world_size > 1:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.step_module = nn.parallel.DistributedDataParallel(self.step_module, device_ids=device_ids)
        lr = cfg.lr if cfg.lr is not None else DEFAULT_LR.get(cfg.optimizer, 1e-3)
        self.optimizer = make_optimizer(self.model, cfg.optimizer, lr, cfg.weight_decay)
        self.sampler = make_sampler(cfg.sampler, self.train_set, num_replicas=ctx.world_size, rank=ctx.rank,
                                    seed=cfg.seed, repeat_thresh=cfg.repeat_thresh)  # fmt: skip
        steps_per_epoch = max(1, math.ceil(len(self.sampler) / cfg.batch_size))
        self.total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
        if self.total_steps < 1:
            raise EngineError(f"nothing to train: {self.total_steps} steps (--steps / --epochs)")
        self.stop = self.total_steps if cfg.stop_at_step is None else min(self.total_steps, cfg.stop_at_step)
        self.scheduler = warmup_cosine(self.optimizer, cfg.warmup_steps, self.total_steps)
        self.amp = cfg.amp and ctx.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.val_loader = eval_loader(self.val_set, cfg.batch_size, num_replicas=ctx.world_size, rank=ctx.rank,
                                      limit=cfg.val_images)  # fmt: skip
        os.makedirs(cfg.out, exist_ok=True)
        self.checkpoint_path = os.path.join(cfg.out, CHECKPOINT)
        self.logs = RunLogs(cfg.out)
        self.step = self.epoch = self.epoch_step = 0
        self.metrics: dict = {}

    def start(self) -> None:
        _seed_everything(self.cfg.seed * 1009 + self.ctx.rank)  # each process its own random draws
        if self.ctx.is_main:
            self.logs.start()

    def resume(self) -> None:
        state = load_checkpoint(self.checkpoint_path, model_name=self.cfg.model, num_classes=self.num_classes)
        if len(state["rng"]) != self.ctx.world_size:
            written = len(state["rng"])
            raise EngineError(f"{self.checkpoint_path} was written by {written} processes, this run has "
                              f"{self.ctx.world_size}")  # fmt: skip
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        load_sampler_state(self.sampler, state["sampler"])
        self.step, self.epoch, self.epoch_step = state["step"], state["epoch"], state["epoch_step"]
        restore_rng(state["rng"][self.ctx.rank])
        load_autotune_choices(state["conv_paths"][self.ctx.rank])  # the same convolution kernels, the same bits
        if self.ctx.is_main:
            self.logs.resume(self.step)

    def checkpoint(self) -> None:
        rngs = distributed.all_gather_objects(rng_state())
        conv_paths = distributed.all_gather_objects(autotune_choices())
        if self.ctx.is_main:
            state = {
                "model_name": self.cfg.model,
                "num_classes": self.num_classes,
                "class_names": list(self.train_set.class_names),
                "task": self.spec.task,
                "config": dataclasses.asdict(self.cfg),
                "model": model_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "sampler": sampler_state(self.sampler),
                "step": self.step,
                "epoch": self.epoch,
                "epoch_step": self.epoch_step,
                "rng": rngs,
                "conv_paths": conv_paths,
            }
            save_checkpoint(self.checkpoint_path, state)
        distributed.barrier()

    def train_step(self, batch) -> dict[str, float]:
        """One optimizer step; the losses averaged over the processes."""
        inputs, targets = self.task.inputs(batch, self.ctx.device)
        with torch.autocast(self.ctx.device.type, dtype=torch.float16, enabled=self.amp):
            losses = self.step_module(inputs, targets)
        values = distributed.all_reduce_mean(losses)
        if not math.isfinite(values["loss"]):
            raise EngineError(f"the loss is {values['loss']} at step {self.step + 1}: lower --lr or use --clip-grad")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        if self.cfg.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        self.epoch_step += 1
        return values

    def evaluate(self) -> dict:
        rng = rng_state()  # evaluation leaves the training's random draws as they were
        metrics, _ = evaluate(self.model, self.task, self.val_loader, self.ctx.device)
        restore_rng(rng)
        return metrics

    def run(self) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        progress = Progress(self.stop, self.step, enabled=ctx.is_main and cfg.progress, log_every=cfg.log_every)
        self.model.train()
        try:
            while self.step < self.stop:
                self.sampler.set_epoch(self.epoch)
                if hasattr(self.train_set, "set_epoch"):
                    self.train_set.set_epoch(self.epoch)
                indices = list(self.sampler)[self.epoch_step * cfg.batch_size :]
                stats = EpochStats()
                for batch in batches(self.train_set, indices, cfg.batch_size, cfg.num_workers,
                                     seed=cfg.seed * 1009 + self.epoch):  # fmt: skip
                    lr = self.optimizer.param_groups[0]["lr"]
                    values = self.train_step(batch)
                    images = len(batch[0]) * ctx.world_size
                    stats.add(values, images)
                    progress.update(images, values["loss"])
                    if ctx.is_main:
                        self.logs.step({"step": self.step, "epoch": self.epoch, "loss": values["loss"], "lr": lr})
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < self.stop:
                        self.checkpoint()
                    if self.step >= self.stop:
                        break
                epoch = self.epoch
                epoch_done = self.epoch_step * cfg.batch_size >= len(self.sampler)
                if epoch_done:
                    self.epoch, self.epoch_step = self.epoch + 1, 0
                self.checkpoint()
                if self.step == self.stop < self.total_steps:
                    break  # stopped as an interruption would: no evaluation
                if epoch_done or self.step >= self.total_steps:
                    record = {"epoch": epoch, "step": self.step, **stats.summary()}
                    if cfg.val_images > 0:
                        self.metrics = self.evaluate()
                        record.update(self.metrics)
                    if ctx.is_main:
                        self.logs.epoch(record)
                        progress.write(format_record(record))
        finally:
            progress.close()
        if ctx.is_main:
            self.logs.draw()
        return TrainResult(self.model, self.metrics, self.step, self.epoch)
