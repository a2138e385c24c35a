"""Mask helpers of Mask R-CNN: pasting the mask head's M x M outputs into whole images at their
boxes (inference), and cutting each ground-truth mask at its proposal into an M x M target
(training, by fastops RoIAlign).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...ops import roi_align

__all__ = ["paste_masks", "project_masks_on_boxes"]


@torch.compiler.disable  # a loop over data-dependent sizes: torch.compile would recompile per mask
def _paste_masks_python(masks: Tensor, boxes: Tensor, image_shape: tuple[int, int], padding: int = 1) -> Tensor:
    """torchvision's ``paste_masks_in_image``, mask by mask (the reference the op replaces)."""
    num_masks, m = masks.shape[0], masks.shape[-1]
    scale = float(m + 2 * padding) / m
    masks = F.pad(masks, (padding,) * 4)
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    expanded = torch.stack((x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half), dim=1).to(torch.int64)
    im_h, im_w = int(image_shape[0]), int(image_shape[1])
    out = masks.new_zeros((num_masks, 1, im_h, im_w))
    for i, (x0, y0, x1, y1) in enumerate(expanded.tolist()):
        w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        resized = F.interpolate(masks[i : i + 1], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        left, right = max(x0, 0), min(x1 + 1, im_w)
        top, bottom = max(y0, 0), min(y1 + 1, im_h)
        if right > left and bottom > top:
            out[i, 0, top:bottom, left:right] = resized[top - y0 : bottom - y0, left - x0 : right - x0]
    return out


def paste_masks(masks: Tensor, boxes: Tensor, image_shape: tuple[int, int], padding: int = 1) -> Tensor:
    """Masks Tensor[N, 1, M, M] (probabilities) pasted at ``boxes`` Tensor[N, 4] (xyxy, image
    pixels) into Tensor[N, 1, H, W] images, as torchvision's ``paste_masks_in_image``: each mask is
    padded by ``padding`` pixels, its box grown to match, and resized bilinearly to the box's
    integer size."""
    return _paste_masks_python(masks, boxes, image_shape, padding)


def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, size: int) -> Tensor:
    """Targets Tensor[K, size, size]: ground-truth mask ``matched_idxs[k]`` (of ``gt_masks``
    [G, H, W]) cut at ``boxes[k]`` and resampled by RoIAlign, as torchvision's Mask R-CNN loss."""
    rois = torch.cat([matched_idxs.to(boxes)[:, None], boxes], dim=1)
    return roi_align(gt_masks[:, None].to(rois), rois, (size, size), 1.0)[:, 0]
