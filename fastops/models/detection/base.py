"""The surface every detector shares, and its input checks.

- ``model(images, targets)`` in training mode returns a dict of losses; ``model(images)`` in eval
  mode returns one dict per image: ``boxes`` Tensor[K, 4] (xyxy, the original image's pixels),
  ``scores`` Tensor[K], ``labels`` int64 Tensor[K] (and ``masks`` Tensor[K, 1, H, W] for Mask
  R-CNN), as torchvision's detectors.
- ``model.loss(images, targets)`` and ``model.predict(images)`` do the same in either mode: the
  detection logic (sampling, proposal counts, image sizes) follows the call, while the modules
  keep their mode, so a validation loss in eval mode updates no batch-norm statistics.
- ``images``: a list of Tensor[3, H_i, W_i] of any sizes, or one Tensor[N, 3, H, W]; floating
  point, values in [0, 1]. ``targets``: one dict per image with ``boxes`` Tensor[K, 4] (xyxy,
  inside the image, positive width and height), ``labels`` integer Tensor[K] (and ``masks``
  Tensor[K, H, W] for Mask R-CNN). Bad input raises ValueError or TypeError naming the image and
  the field. An image may have no objects (K = 0).

A detector subclass provides ``transform`` (a ``GeneralizedRCNNTransform``), ``num_classes``,
``label_range`` (the valid labels, [low, high)), ``needs_masks``, and the two steps
``compute_losses(batch, targets)`` and ``compute_detections(batch)`` on the transformed batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..components import ImageBatch

__all__ = ["Detector", "check_images", "check_targets"]


def check_images(images: Sequence[Tensor] | Tensor, channels: int = 3) -> list[Tensor]:
    """The images as a list of Tensor[C, H, W], checked (rank, channels, dtype, size)."""
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ValueError(f"images: a batched tensor must be [N, {channels}, H, W], got shape {tuple(images.shape)}")
        images = list(images.unbind(0))
    if not isinstance(images, (list, tuple)):
        raise TypeError(f"images: expected a list of tensors or one [N, C, H, W] tensor, got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError("images: expected at least one image")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise TypeError(f"images[{i}]: expected a tensor, got {type(image).__name__}")
        if image.dim() != 3:
            raise ValueError(f"images[{i}]: expected a 3-D tensor [C, H, W], got shape {tuple(image.shape)}")
        if image.shape[0] != channels:
            raise ValueError(f"images[{i}]: expected {channels} channels, got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise TypeError(f"images[{i}]: expected a floating-point image (values in [0, 1]), got dtype {image.dtype}")
        if image.shape[1] == 0 or image.shape[2] == 0:
            raise ValueError(f"images[{i}]: empty image of shape {tuple(image.shape)}")
    return list(images)


def _check_boxes(boxes, i: int, height: int, width: int) -> Tensor:
    where = f"targets[{i}]['boxes']"
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{where}: expected a tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: expected shape [K, 4], got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise TypeError(f"{where}: expected floating-point boxes, got dtype {boxes.dtype}")
    if boxes.shape[0] == 0:
        return boxes
    bad = ~torch.isfinite(boxes).all(dim=1)
    if bad.any():
        k = int(torch.where(bad)[0][0])
        raise ValueError(f"{where}[{k}]: non-finite coordinates {boxes[k].tolist()}")
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        k = int(torch.where(bad)[0][0])
        raise ValueError(f"{where}[{k}]: boxes must have x2 > x1 and y2 > y1 (xyxy), got {boxes[k].tolist()}")
    bad = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
    if bad.any():
        k = int(torch.where(bad)[0][0])
        raise ValueError(f"{where}[{k}]: box {boxes[k].tolist()} is outside the image (width {width}, height {height})")
    return boxes


def _check_labels(labels, i: int, count: int, label_range: tuple[int, int]) -> Tensor:
    where = f"targets[{i}]['labels']"
    if not isinstance(labels, Tensor):
        raise TypeError(f"{where}: expected a tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{where}: expected integer labels, got dtype {labels.dtype}")
    if labels.shape != (count,):
        raise ValueError(f"{where}: expected shape [{count}] (one per box), got {tuple(labels.shape)}")
    low, high = label_range
    bad = (labels < low) | (labels >= high)
    if bad.any():
        k = int(torch.where(bad)[0][0])
        raise ValueError(f"{where}[{k}]: label {int(labels[k])} is out of range [{low}, {high})")
    return labels.to(torch.int64)


def _check_masks(masks, i: int, count: int, height: int, width: int) -> Tensor:
    where = f"targets[{i}]['masks']"
    if not isinstance(masks, Tensor):
        raise TypeError(f"{where}: expected a tensor, got {type(masks).__name__}")
    if masks.shape != (count, height, width):
        expected = f"[{count}, {height}, {width}]"
        raise ValueError(f"{where}: expected shape {expected} (one per box), got {tuple(masks.shape)}")
    return masks


def check_targets(
    targets, images: Sequence[Tensor], label_range: tuple[int, int], needs_masks: bool = False
) -> list[dict[str, Tensor]]:
    """Checked copies of the targets: one dict per image, "boxes" inside the image with positive
    size, "labels" in [label_range[0], label_range[1]) as int64, "masks" when needed."""
    if targets is None:
        raise ValueError("targets: required to compute the losses (one dict per image)")
    if not isinstance(targets, (list, tuple)):
        raise TypeError(f"targets: expected a list of dicts, got {type(targets).__name__}")
    if len(targets) != len(images):
        raise ValueError(f"targets: expected one dict per image ({len(images)}), got {len(targets)}")
    checked = []
    for i, (target, image) in enumerate(zip(targets, images)):
        if not isinstance(target, Mapping):
            raise TypeError(f"targets[{i}]: expected a dict, got {type(target).__name__}")
        for key in ("boxes", "labels", *(("masks",) if needs_masks else ())):
            if key not in target:
                raise ValueError(f"targets[{i}]: missing '{key}'")
        height, width = image.shape[-2:]
        boxes = _check_boxes(target["boxes"], i, height, width)
        out = dict(target)
        out["boxes"] = boxes.to(image.device)
        out["labels"] = _check_labels(target["labels"], i, boxes.shape[0], label_range).to(image.device)
        if needs_masks:
            out["masks"] = _check_masks(target["masks"], i, boxes.shape[0], height, width).to(image.device)
        checked.append(out)
    return checked


class Detector(nn.Module):
    """Base of the detectors: ``forward``, ``loss`` and ``predict`` (module docstring)."""

    label_range: tuple[int, int]
    needs_masks: bool = False

    def forward(self, images, targets=None):
        if self.training:
            return self.loss(images, targets)
        return self.predict(images)

    def loss(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The training losses (a dict name -> scalar Tensor), in either mode."""
        images = check_images(images)
        targets = check_targets(targets, images, self.label_range, self.needs_masks)
        batch, targets = self.transform(images, targets, training=True)
        return self.compute_losses(batch, targets)

    def predict(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """Detections per image in the original images' pixels, in either mode."""
        images = check_images(images)
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, _ = self.transform(images, None, training=False)
        detections = self.compute_detections(batch)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    def compute_losses(self, batch: ImageBatch, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        raise NotImplementedError

    def compute_detections(self, batch: ImageBatch) -> list[dict[str, Tensor]]:
        raise NotImplementedError
