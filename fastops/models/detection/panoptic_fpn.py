"""Panoptic FPN (Kirillov et al. 2019): Mask R-CNN plus a semantic segmentation head on the same
FPN levels, the two predictions fused into one panoptic map per image.

Categories: things are 1..num_things (Mask R-CNN's labels, 0 its background), stuff are
num_things + 1 .. num_things + num_stuff. The semantic head predicts num_stuff + 1 classes: class
0 is "some thing" (every thing category's pixels), class s is stuff category num_things + s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..components import ImageBatch, combine_semantic_and_instances
from .base import check_images
from .mask_rcnn import MaskRCNN
from .semantic_fpn_head import SemanticFPNHead

__all__ = ["IGNORE_INDEX", "PanopticFPN"]

IGNORE_INDEX = 255


def _check_semantic(targets, images: Sequence[Tensor], num_categories: int) -> None:
    """Each target's ``semantic``: an integer [H, W] map of its image's size, values category ids
    in [1, num_categories] or IGNORE_INDEX."""
    if not isinstance(targets, (list, tuple)):
        return  # the detector's checks name the mistake
    for i, (target, image) in enumerate(zip(targets, images)):
        if not isinstance(target, Mapping):
            return
        where = f"targets[{i}]['semantic']"
        if "semantic" not in target:
            raise ValueError(f"targets[{i}]: missing 'semantic'")
        semantic = target["semantic"]
        if not isinstance(semantic, Tensor):
            raise TypeError(f"{where}: expected a tensor, got {type(semantic).__name__}")
        if semantic.is_floating_point() or semantic.is_complex() or semantic.dtype == torch.bool:
            raise TypeError(f"{where}: expected integer category ids, got dtype {semantic.dtype}")
        if semantic.shape != image.shape[-2:]:
            raise ValueError(
                f"{where}: expected shape {list(image.shape[-2:])} (the image's height and width), "
                f"got {list(semantic.shape)}"
            )
        bad = ((semantic < 1) | (semantic > num_categories)) & (semantic != IGNORE_INDEX)
        if bad.any():
            value = int(semantic[bad][0])
            raise ValueError(
                f"{where}: value {value} is out of range [1, {num_categories}] (categories; {IGNORE_INDEX} = ignore)"
            )


class PanopticFPN(MaskRCNN):
    """Mask R-CNN (its arguments and defaults, through ``kwargs``) with a semantic head.

    Args:
        backbone: an FPN backbone with ``out_channels`` and ``strides`` per level.
        num_things: thing categories (Mask R-CNN gets num_things + 1 classes); None when a box
            predictor is given.
        num_stuff: stuff categories.
        semantic_head: logits of num_stuff + 1 classes at the batch's size from the FPN levels
            (default: ``SemanticFPNHead`` on levels "0".."3").
        semantic_loss_weight, instance_loss_weight: the loss weights (detectron2's 0.5 and 1.0).
        overlap_threshold, stuff_area_threshold, instance_score_threshold: the fusion's
            (``combine_semantic_and_instances``; detectron2's 0.5, 4096 pixels, 0.5).

    Training targets add ``semantic`` (integer [H, W]: category ids, 255 ignored). Eval outputs
    add ``sem_seg`` (logits [num_stuff + 1, H, W] at the original size), ``panoptic`` (int64
    [H, W] segment ids, 0 void) and ``segments_info`` (see ``combine_semantic_and_instances``;
    category ids as above); ``masks`` are Mask R-CNN's probabilities, > 0.5 in the fusion.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_things: int | None,
        num_stuff: int,
        *,
        semantic_head: nn.Module | None = None,
        semantic_loss_weight: float = 0.5,
        instance_loss_weight: float = 1.0,
        overlap_threshold: float = 0.5,
        stuff_area_threshold: int = 4096,
        instance_score_threshold: float = 0.5,
        **kwargs,
    ):
        if num_stuff < 1:
            raise ValueError(f"num_stuff: expected at least one stuff category, got {num_stuff}")
        super().__init__(backbone, None if num_things is None else num_things + 1, **kwargs)
        self.num_things = self.num_classes - 1
        self.num_stuff = num_stuff
        if semantic_head is None:
            strides = {name: backbone.strides[name] for name in ("0", "1", "2", "3")}
            semantic_head = SemanticFPNHead(backbone.out_channels, num_stuff + 1, strides)
        self.semantic_head = semantic_head
        self.semantic_loss_weight = semantic_loss_weight
        self.instance_loss_weight = instance_loss_weight
        self.overlap_threshold = overlap_threshold
        self.stuff_area_threshold = stuff_area_threshold
        self.instance_score_threshold = instance_score_threshold

    def loss(self, images, targets) -> dict[str, Tensor]:
        """Mask R-CNN's losses (times ``instance_loss_weight``) and ``loss_sem_seg``, in either mode."""
        checked = check_images(images)
        _check_semantic(targets, checked, self.num_things + self.num_stuff)
        return super().loss(checked, targets)

    def semantic_targets(self, semantic: Tensor) -> Tensor:
        """Category ids -> the semantic head's classes (things -> 0, stuff category c ->
        c - num_things; IGNORE_INDEX kept)."""
        head = torch.where(semantic <= self.num_things, 0, semantic - self.num_things)
        return torch.where(semantic == IGNORE_INDEX, IGNORE_INDEX, head)

    def compute_losses(self, batch: ImageBatch, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        features = self.backbone(batch.tensors)
        _, losses = self.run_heads(features, batch, targets, training=True)
        losses = {k: v * self.instance_loss_weight for k, v in losses.items()}
        logits = self.semantic_head(features)
        labels = torch.full(
            (logits.shape[0], *logits.shape[-2:]), IGNORE_INDEX, dtype=torch.int64, device=logits.device
        )
        for i, t in enumerate(targets):
            h, w = t["semantic"].shape
            labels[i, :h, :w] = self.semantic_targets(t["semantic"].to(labels.device, torch.int64))
        total = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
        # a mean over the labelled pixels; 0 (with gradients) when every pixel is ignored
        counted = (labels != IGNORE_INDEX).sum().clamp(min=1)
        losses["loss_sem_seg"] = self.semantic_loss_weight * total / counted
        return losses

    def compute_detections(self, batch: ImageBatch) -> list[dict[str, Tensor]]:
        features = self.backbone(batch.tensors)
        detections, _ = self.run_heads(features, batch, None, training=False)
        logits = self.semantic_head(features)
        for det, logit, (h, w) in zip(detections, logits, batch.image_sizes):
            det["sem_seg"] = logit[:, :h, :w]
        return detections

    def predict(self, images) -> list[dict[str, Tensor]]:
        """Mask R-CNN's detections plus ``sem_seg``, ``panoptic`` and ``segments_info`` per image,
        in the original images' pixels, in either mode."""
        images = check_images(images)
        detections = super().predict(images)
        for det, image in zip(detections, images):
            size = image.shape[-2:]
            det["sem_seg"] = F.interpolate(det["sem_seg"][None], size=size, mode="bilinear", align_corners=False)[0]
            stuff = det["sem_seg"].argmax(0)
            stuff = torch.where(stuff == 0, 0, stuff + self.num_things)
            det["panoptic"], det["segments_info"] = combine_semantic_and_instances(
                det["masks"][:, 0] > 0.5,
                det["scores"],
                det["labels"],
                stuff,
                overlap_threshold=self.overlap_threshold,
                stuff_area_threshold=self.stuff_area_threshold,
                score_threshold=self.instance_score_threshold,
            )
        return detections
