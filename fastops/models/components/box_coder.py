"""Box regression targets relative to reference boxes (R-CNN's parametrization, as torchvision's
``BoxCoder``: the same operations in the same order, so the same bits):

    dx = wx (gx - px) / pw,   dy = wy (gy - py) / ph,   dw = ww log(gw / pw),   dh = wh log(gh / ph)

with (px, py, pw, ph) the reference box's centre and size and (gx, gy, gw, gh) the target's.
Decoding clamps dw and dh at ``bbox_xform_clip`` before the exponential.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["BoxCoder"]


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x1, y1, x2, y2 = boxes.unbind(-1)
    widths = x2 - x1
    heights = y2 - y1
    return x1 + 0.5 * widths, y1 + 0.5 * heights, widths, heights


class BoxCoder:
    """Encodes boxes as offsets from reference boxes and decodes them back.

    Args:
        weights: (wx, wy, ww, wh).
        bbox_xform_clip: the largest dw, dh decoded (log(1000 / 16): a box at most 62.5 times
            its reference's size).
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), bbox_xform_clip: float = math.log(1000.0 / 16)):
        if len(weights) != 4:
            raise ValueError(f"weights: 4 numbers (wx, wy, ww, wh), got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, boxes: Tensor, reference_boxes: Tensor) -> Tensor:
        """Targets Tensor[..., 4] that decode ``reference_boxes`` [..., 4] into ``boxes`` [..., 4]
        (torchvision's ``encode_single(boxes, reference_boxes)``)."""
        wx, wy, ww, wh = self.weights
        ex_x, ex_y, ex_w, ex_h = _centre_size(reference_boxes)
        gt_x, gt_y, gt_w, gt_h = _centre_size(boxes)
        dx = wx * (gt_x - ex_x) / ex_w
        dy = wy * (gt_y - ex_y) / ex_h
        dw = ww * torch.log(gt_w / ex_w)
        dh = wh * torch.log(gt_h / ex_h)
        return torch.stack((dx, dy, dw, dh), dim=-1)

    def decode(self, rel_codes: Tensor, reference_boxes: Tensor) -> Tensor:
        """Boxes Tensor[..., 4] (x1, y1, x2, y2) from offsets ``rel_codes`` [..., 4] and
        ``reference_boxes`` [..., 4] (broadcast), in ``rel_codes``' dtype."""
        reference_boxes = reference_boxes.to(rel_codes.dtype)
        ctr_x, ctr_y, widths, heights = _centre_size(reference_boxes)
        wx, wy, ww, wh = self.weights
        dx, dy, dw, dh = rel_codes.unbind(-1)
        dx = dx / wx
        dy = dy / wy
        dw = torch.clamp(dw / ww, max=self.bbox_xform_clip)
        dh = torch.clamp(dh / wh, max=self.bbox_xform_clip)
        pred_ctr_x = dx * widths + ctr_x
        pred_ctr_y = dy * heights + ctr_y
        half_w = 0.5 * (torch.exp(dw) * widths)
        half_h = 0.5 * (torch.exp(dh) * heights)
        return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=-1)
