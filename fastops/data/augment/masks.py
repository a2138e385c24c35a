"""What the augmentations share about instance masks: tight boxes and painting semantic maps."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["boxes_from_masks", "paint_semantic"]


def boxes_from_masks(masks: Tensor) -> Tensor:
    """float32 [K, 4] xyxy boxes on pixel edges, the smallest holding each mask of ``masks``
    ([K, H, W], any dtype, nonzero = inside); an empty mask gives (0, 0, 0, 0)."""
    k, h, w = masks.shape
    if k == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    inside = masks != 0
    rows, cols = inside.any(2), inside.any(1)  # [K, H], [K, W]
    ys = torch.arange(h, dtype=torch.int64)
    xs = torch.arange(w, dtype=torch.int64)
    y0 = torch.where(rows, ys, h).amin(1)
    y1 = torch.where(rows, ys + 1, 0).amax(1)
    x0 = torch.where(cols, xs, w).amin(1)
    x1 = torch.where(cols, xs + 1, 0).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1).to(torch.float32)
    return torch.where(rows.any(1)[:, None], boxes, 0.0)


def paint_semantic(semantic: Tensor, masks: Tensor, labels: Tensor) -> Tensor:
    """``semantic`` ([H, W]) with each mask's pixels set to its label, larger masks painted first
    so a smaller object lying on a larger one stays visible (as the COCO reader paints)."""
    out = semantic.clone()
    order = torch.argsort(masks.flatten(1).count_nonzero(1), descending=True, stable=True)
    for j in order.tolist():
        out[masks[j] != 0] = int(labels[j])
    return out
