"""Detection post-processing shared by the detectors: clipping, small-box removal, per-level top-k
candidates, and NMS of every image of a batch in one fastops ``batched_nms`` call (the groups are
(image, class) or (image, level) pairs, so no image or class suppresses another's boxes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ...ops import batched_nms

__all__ = [
    "clip_boxes_per_image",
    "clip_boxes_to_image",
    "nms_per_image",
    "remove_small_boxes",
    "topk_per_level",
]


def clip_boxes_to_image(boxes: Tensor, size: Sequence[int]) -> Tensor:
    """Boxes [..., 4] (xyxy) clamped into an image of ``size`` (H, W)."""
    height, width = int(size[0]), int(size[1])
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def clip_boxes_per_image(boxes: Tensor, image_index: Tensor, image_sizes: Sequence[tuple[int, int]]) -> Tensor:
    """Boxes [K, 4] of several images clamped into their own image: box k into
    ``image_sizes[image_index[k]]`` (H, W); the same numbers as ``clip_boxes_to_image`` per image."""
    sizes = torch.tensor(image_sizes, dtype=boxes.dtype, device=boxes.device)[image_index]
    return torch.minimum(boxes.clamp(min=0), sizes[:, [1, 0, 1, 0]])


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (int64 Tensor[K]) of the boxes [N, 4] whose width and height are both >= min_size."""
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((widths >= min_size) & (heights >= min_size))[0]


def topk_per_level(scores: Tensor, num_per_level: Sequence[int], k: int) -> Tensor:
    """Indices into the last dimension of ``scores`` [N, A] (levels concatenated, sizes
    ``num_per_level``) of the ``k`` best of each level, per row: int64 Tensor[N, sum_l min(k, A_l)],
    level by level, each level's in decreasing score."""
    chosen, offset = [], 0
    for level_scores in scores.split(list(num_per_level), dim=1):
        n = level_scores.shape[1]
        chosen.append(level_scores.topk(min(k, n), dim=1).indices + offset)
        offset += n
    return torch.cat(chosen, dim=1)


def nms_per_image(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    image_index: Tensor,
    num_images: int,
    iou_threshold: float,
    max_per_image: int,
) -> list[Tensor]:
    """NMS within each (image, group) of a batch's candidates, in one op.

    Args:
        boxes [K, 4], scores [K], groups [K] (class or level, int64 in [0, G)), image_index [K]
        (int64 in [0, num_images)), the candidates of every image.

    Returns:
        per image, the indices (into the K candidates) of at most ``max_per_image`` kept boxes in
        decreasing score (ties: index order), as torchvision's per-image ``batched_nms`` then
        ``[:max_per_image]``.
    """
    if boxes.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=boxes.device)
        return [empty] * num_images
    num_groups = int(groups.max()) + 1
    keep = batched_nms(boxes, scores, image_index * num_groups + groups, iou_threshold)
    kept_images = image_index[keep]
    if num_images == 1:
        return [keep[:max_per_image]]
    # keep is in decreasing score over the batch, so each image's kept boxes are too
    order = torch.argsort(kept_images, stable=True)
    counts = torch.bincount(kept_images, minlength=num_images).tolist()
    return [k[:max_per_image] for k in keep[order].split(counts)]
