"""Panoptic FPN's fusion of instance and semantic predictions into one panoptic map (Kirillov et
al. 2019; detectron2's ``combine_semantic_and_instance_outputs``), and the map's
``category * label_divisor + instance`` form that ``fastops.metrics.panoptic_quality`` takes.

Things first: the instances with score >= ``score_threshold``, best score first (ties in the
given order), each takes its mask's pixels not yet taken, unless more than ``overlap_threshold``
of its mask is taken already (then it is dropped, as is an instance with no pixel left). Then
stuff: each stuff category of the semantic map, in increasing id order, takes its pixels still
free, unless fewer than ``stuff_area_threshold`` remain (no segment is ever empty). Pixels left
over are void (id 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["combine_semantic_and_instances", "panoptic_labels"]


def _check(masks: Tensor, scores: Tensor, labels: Tensor, semantic: Tensor) -> None:
    if semantic.dim() != 2 or semantic.is_floating_point() or semantic.dtype == torch.bool:
        got = f"{semantic.dtype} of shape {tuple(semantic.shape)}"
        raise ValueError(f"semantic: expected an integer [H, W] map, got {got}")
    if masks.dim() != 3 or masks.shape[1:] != semantic.shape:
        raise ValueError(
            f"masks: expected [K, {semantic.shape[0]}, {semantic.shape[1]}] (the semantic map's size), "
            f"got {tuple(masks.shape)}"
        )
    k = masks.shape[0]
    if scores.shape != (k,) or labels.shape != (k,):
        got = f"{tuple(scores.shape)} and {tuple(labels.shape)}"
        raise ValueError(f"scores and labels: expected shape [{k}] (one per mask), got {got}")


# a sequential, data-dependent loop over the instances: under torch.compile it runs eagerly rather
# than breaking the graph at every instance
@torch.compiler.disable
def combine_semantic_and_instances(
    masks: Tensor,
    scores: Tensor,
    labels: Tensor,
    semantic: Tensor,
    *,
    overlap_threshold: float = 0.5,
    stuff_area_threshold: int = 4096,
    score_threshold: float = 0.5,
    things_label: int = 0,
) -> tuple[Tensor, list[dict]]:
    """The panoptic map of one image (module docstring).

    Args:
        masks: Tensor[K, H, W] bool (or 0/1) instance masks.
        scores: Tensor[K] instance scores.
        labels: integer Tensor[K] instance categories.
        semantic: integer Tensor[H, W], the semantic prediction as stuff category ids; pixels of
            ``things_label`` belong to no stuff segment.
        overlap_threshold: the largest share of an instance's mask already taken for it to stay.
        stuff_area_threshold: the fewest free pixels a stuff segment needs.
        score_threshold: the lowest instance score kept.
        things_label: the semantic map's value for "some thing".

    Returns:
        ``(panoptic, segments_info)``: int64 Tensor[H, W] of segment ids (0 void, 1..N in the
        order the segments were placed) and one dict per segment: ``id``, ``category_id``,
        ``isthing``, ``score`` (the instance's; None for stuff), ``area`` (pixels) and, for
        things, ``instance`` (the index into ``masks``).
    """
    _check(masks, scores, labels, semantic)
    panoptic = torch.zeros(semantic.shape, dtype=torch.int64, device=semantic.device)
    taken = torch.zeros(semantic.shape, dtype=torch.bool, device=semantic.device)
    segments: list[dict] = []
    masks = masks.to(device=semantic.device, dtype=torch.bool)
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    score_list, label_list = scores.tolist(), labels.tolist()
    # each instance's overlap depends on the instances placed before it, so this loop is sequential
    for k in order:
        score = score_list[k]
        if score < score_threshold:
            break
        mask = masks[k]
        area = int(mask.sum())
        if area == 0:
            continue
        overlap = int((mask & taken).sum())
        if overlap / area > overlap_threshold or overlap == area:
            continue
        if overlap > 0:
            mask = mask & ~taken
        segment_id = len(segments) + 1
        panoptic[mask] = segment_id
        taken |= mask
        segments.append(
            {
                "id": segment_id,
                "category_id": int(label_list[k]),
                "isthing": True,
                "score": float(score),
                "area": area - overlap,
                "instance": k,
            }
        )
    for category in torch.unique(semantic).tolist():
        if category == things_label:
            continue
        region = (semantic == category) & ~taken
        area = int(region.sum())
        if area < stuff_area_threshold or area == 0:
            continue
        segment_id = len(segments) + 1
        panoptic[region] = segment_id
        taken |= region
        segments.append({"id": segment_id, "category_id": int(category), "isthing": False, "score": None, "area": area})
    return panoptic, segments


def panoptic_labels(panoptic: Tensor, segments_info: list[dict], label_divisor: int = 1000, void: int = -1) -> Tensor:
    """The map as ``category_id * label_divisor + instance`` (int64 [H, W]): things numbered
    1, 2, ... per category in segment order, stuff instance 0, void pixels ``void`` (negative
    values are void to ``fastops.metrics.panoptic_quality``); pixels of ids not listed are void too."""
    if label_divisor < 1:
        raise ValueError(f"label_divisor: expected a positive int, got {label_divisor}")
    ids = [int(s["id"]) for s in segments_info]
    if any(i < 1 for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"segments_info: ids must be distinct and positive, got {ids}")
    # one lookup table over the segment ids, so the map is rewritten in one indexing pass
    table = torch.full((max(ids, default=0) + 1,), void, dtype=torch.int64)
    counts: dict[int, int] = {}
    for s in segments_info:
        category, instance = int(s["category_id"]), 0
        if s["isthing"]:
            instance = counts.get(category, 0) + 1
            counts[category] = instance
            if instance >= label_divisor:
                raise ValueError(f"label_divisor: {label_divisor} is too small for {instance} instances of a category")
        table[int(s["id"])] = category * label_divisor + instance
    if panoptic.numel() and (int(panoptic.min()) < 0 or int(panoptic.max()) >= table.shape[0]):
        raise ValueError("panoptic: segment ids must be 0 (void) or listed in segments_info")
    return table.to(panoptic.device)[panoptic.long()]
