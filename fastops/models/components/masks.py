"""Mask targets of Mask R-CNN's loss: each ground-truth mask cut at its proposal into an M x M
target by fastops RoIAlign. (Pasting the mask head's outputs into whole images at inference is the
``fastops.ops.paste_masks`` op, called by the transform's ``postprocess``.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...ops import roi_align

__all__ = ["project_masks_on_boxes"]


def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, size: int) -> Tensor:
    """Targets Tensor[K, size, size]: ground-truth mask ``matched_idxs[k]`` (of ``gt_masks``
    [G, H, W]) cut at ``boxes[k]`` and resampled by RoIAlign, as torchvision's Mask R-CNN loss."""
    rois = torch.cat([matched_idxs.to(boxes)[:, None], boxes], dim=1)
    return roi_align(gt_masks[:, None].to(rois), rois, (size, size), 1.0)[:, 0]
