"""What the augmentations share about instance masks: 0/1 uint8 form, tight boxes, pixel counts,
painting semantic maps. They work on uint8 because torch's reductions over bool tensors (``any``,
``sum``) are many times slower than ``amax`` over uint8 ones."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["binary_masks", "boxes_from_masks", "paint_semantic", "pixel_counts"]


def binary_masks(masks: Tensor) -> Tensor:
    """``masks`` (any dtype, nonzero = inside) as uint8 0/1, same shape."""
    if masks.dtype == torch.uint8:
        return torch.minimum(masks, torch.ones((), dtype=torch.uint8))
    if masks.dtype == torch.bool:
        return masks.to(torch.uint8)
    return (masks != 0).to(torch.uint8)


def boxes_from_masks(masks: Tensor) -> Tensor:
    """float32 [K, 4] xyxy boxes on pixel edges, the smallest holding each mask of ``masks``
    ([K, H, W], any dtype, nonzero = inside); an empty mask gives (0, 0, 0, 0)."""
    k, h, w = masks.shape
    if k == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    m = masks if masks.dtype == torch.uint8 else binary_masks(masks)
    rows, cols = m.amax(2) > 0, m.amax(1) > 0  # [K, H], [K, W]
    ys = torch.arange(h, dtype=torch.int64)
    xs = torch.arange(w, dtype=torch.int64)
    y0 = torch.where(rows, ys, h).amin(1)
    y1 = torch.where(rows, ys + 1, 0).amax(1)
    x0 = torch.where(cols, xs, w).amin(1)
    x1 = torch.where(cols, xs + 1, 0).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1).to(torch.float32)
    return torch.where(rows.any(1)[:, None], boxes, 0.0)


def pixel_counts(masks: Tensor) -> Tensor:
    """int64 [K]: the pixels of each 0/1 mask of ``masks`` ([K, H, W] uint8 or bool), summed by
    rows in int32 first (several times faster than one int64 sum over each mask)."""
    return masks.sum(2, dtype=torch.int32).sum(1, dtype=torch.int64)


def paint_semantic(semantic: Tensor, masks: Tensor, labels: Tensor, boxes: Tensor) -> Tensor:
    """``semantic`` ([H, W]) with each mask's pixels set to its label, larger masks painted first
    so a smaller object lying on a larger one stays visible (as the COCO reader paints). ``boxes``
    (tight, as ``boxes_from_masks``) bound the pixels each mask touches."""
    out = semantic.clone()
    order = torch.argsort(pixel_counts(masks), descending=True, stable=True)
    for j in order.tolist():
        x0, y0, x1, y1 = (int(v) for v in boxes[j].tolist())
        region = out[y0:y1, x0:x1]
        region[masks[j, y0:y1, x0:x1] != 0] = int(labels[j])
    return out
