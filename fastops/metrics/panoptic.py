"""Panoptic quality (Kirillov et al. 2019) as the COCO panoptic API computes it
(``panopticapi.evaluation.pq_compute``), counted in C++ (``csrc/panoptic_quality/``).

Per image, every (ground-truth segment, predicted segment) pair of one category whose IoU is above
0.5 is a match (a true positive; the predicted segment's void pixels are left out of the union).
Unmatched ground-truth segments are false negatives, except crowd regions, which never match.
Unmatched predicted segments are false positives, except those more than half covered by void
and by the crowd region of their category. Per category: PQ = sum of matched IoUs / (TP + FP/2 +
FN/2), SQ = sum of matched IoUs / TP (0 without TP), RQ = TP / (TP + FP/2 + FN/2); the averages
over things, stuff and all take the categories with any TP, FP or FN, as the API does (NaN when
there is none, where the API divides by zero).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["panoptic_quality"]


def _id_map(value, name: str) -> np.ndarray:
    """An [H, W] int64 segment-id map from an integer tensor or array, or an [H, W, 3] uint8 RGB
    image as COCO's PNGs store it (id = R + 256 G + 256^2 B). numpy does the conversions: they run
    on this thread, where ATen's copies of large tensors wake its thread pool."""
    a = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    if a.ndim == 3 and a.shape[-1] == 3 and a.dtype == np.uint8:
        a = a.astype(np.int64)
        return a[..., 0] + 256 * a[..., 1] + 65536 * a[..., 2]
    if a.ndim != 2 or a.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be an [H, W] integer map or an [H, W, 3] uint8 RGB image, got {a.dtype} of shape {a.shape}"
        )
    return a.astype(np.int64, copy=False)


def _categories(categories) -> tuple[list[int], list[bool]]:
    if isinstance(categories, Mapping):
        items = [(int(k), bool(v)) for k, v in categories.items()]
    else:
        try:
            items = [(int(c["id"]), bool(c["isthing"])) for c in categories]
        except (TypeError, KeyError):
            raise TypeError(
                "categories must be COCO's category dicts (with 'id' and 'isthing') or a mapping id -> isthing"
            ) from None
    ids = [i for i, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"categories has a repeated id: {ids}")
    return ids, [t for _, t in items]


def _segments(info, index: dict, crowd: bool, name: str) -> np.ndarray:
    rows = []
    for s in info:
        try:
            cat = index[int(s["category_id"])]
        except KeyError:
            raise ValueError(
                f"{name}: segment {s.get('id')} has category_id {s.get('category_id')}, not among the categories"
            ) from None
        rows.append((int(s["id"]), cat, int(s.get("iscrowd", 0))) if crowd else (int(s["id"]), cat))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3 if crowd else 2)


def _flatten(maps_pred: list[np.ndarray], maps_gt: list[np.ndarray]) -> tuple[Tensor, Tensor, Tensor]:
    for i, (p, g) in enumerate(zip(maps_pred, maps_gt, strict=True)):
        if p.shape != g.shape:
            raise ValueError(f"image {i}: predicted map {tuple(p.shape)} and ground-truth map {tuple(g.shape)} differ")
    offsets = torch.from_numpy(np.cumsum([0] + [m.size for m in maps_gt], dtype=np.int64))

    def flat(maps):
        out = np.empty(int(offsets[-1]), dtype=np.int64)
        for m, start in zip(maps, offsets.tolist(), strict=False):
            out[start : start + m.size].reshape(m.shape)[...] = m  # one copy, whatever m's strides
        return torch.from_numpy(out)

    return flat(maps_pred), flat(maps_gt), offsets


def _maps(value, name: str) -> list[np.ndarray]:
    if isinstance(value, Tensor) and value.dim() == 3:
        return [_id_map(m, f"{name}[{i}]") for i, m in enumerate(value.detach().cpu().numpy())]
    if isinstance(value, (Tensor, str)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be an [N, H, W] tensor or a list of [H, W] maps, got {type(value).__name__}")
    return [_id_map(m, f"{name}[{i}]") for i, m in enumerate(value)]


def panoptic_quality(pred, gt, categories, *, label_divisor: int | None = None) -> dict:
    """Panoptic quality, segmentation quality and recognition quality: per category and averaged
    over things, stuff and all, as ``panopticapi.evaluation.pq_compute`` returns them.

    Two input forms:

    - COCO panoptic (``label_divisor=None``): ``pred`` and ``gt`` are lists with one
      ``(segment_map, segments_info)`` pair per image. A map is an ``[H, W]`` integer tensor or
      array of segment ids, or the ``[H, W, 3]`` uint8 RGB PNG (id = R + 256 G + 256^2 B); id 0
      is void. ``segments_info`` lists the segments as in the COCO JSON: dicts with ``id``,
      ``category_id`` and, for the ground truth, ``iscrowd`` (default 0). A ground-truth segment's
      area is its pixel count (COCO's JSON ``area``); ground-truth pixels of an unlisted id are
      neither void nor matched, as in the API. A predicted id missing from its list, a listed
      predicted segment absent from its map, a repeated id, id 0 listed, or an unknown category
      raises ValueError.
    - Tensor maps (detectron2's and torchmetrics' panoptic encoding): with ``label_divisor``,
      ``pred`` and ``gt`` are ``[N, H, W]`` tensors (or lists of ``[H, W]`` maps) of
      ``category_id * label_divisor + instance_id``; every distinct value is one segment; values
      that are negative or whose category is not among ``categories`` are void. No crowd regions.

    Args:
        pred, gt: the predictions and the ground truth, in one of the forms above, N images each.
        categories: COCO's category dicts (``id``, ``isthing``) or a mapping id -> isthing; only
            these categories are scored.
        label_divisor: selects the tensor form (see above).

    Returns:
        ``{"All": {"pq", "sq", "rq", "n"}, "Things": {...}, "Stuff": {...}, "per_class":
        {category_id: {"pq", "sq", "rq"}}}`` (Python floats; ``n`` is the number of categories
        averaged: those with any true positive, false positive or false negative).
    """
    ids, isthing = _categories(categories)
    index = {c: k for k, c in enumerate(ids)}
    if label_divisor is None:
        if not isinstance(pred, Sequence) or not isinstance(gt, Sequence) or len(pred) != len(gt):
            raise ValueError(
                "pred and gt must be lists of (segment_map, segments_info) pairs, one per image, "
                "of one length (or pass label_divisor for tensor maps)"
            )
        maps_pred = [_id_map(p[0], f"pred[{i}] map") for i, p in enumerate(pred)]
        maps_gt = [_id_map(g[0], f"gt[{i}] map") for i, g in enumerate(gt)]
        gt_rows = [_segments(g[1], index, True, f"gt[{i}]") for i, g in enumerate(gt)]
        pred_rows = [_segments(p[1], index, False, f"pred[{i}]") for i, p in enumerate(pred)]
        seg = {
            "gt_segments": torch.from_numpy(np.concatenate([np.zeros((0, 3), np.int64), *gt_rows])),
            "gt_segment_offsets": torch.from_numpy(np.cumsum([0] + [len(r) for r in gt_rows], dtype=np.int64)),
            "pred_segments": torch.from_numpy(np.concatenate([np.zeros((0, 2), np.int64), *pred_rows])),
            "pred_segment_offsets": torch.from_numpy(np.cumsum([0] + [len(r) for r in pred_rows], dtype=np.int64)),
        }
        category_of = torch.empty(0, dtype=torch.int64)
        divisor = 1
    else:
        if isinstance(label_divisor, bool) or not isinstance(label_divisor, int) or label_divisor < 1:
            raise ValueError(f"label_divisor must be a positive int, got {label_divisor!r}")
        maps_pred, maps_gt = _maps(pred, "pred"), _maps(gt, "gt")
        if len(maps_pred) != len(maps_gt):
            raise ValueError(f"pred and gt must hold as many images, got {len(maps_pred)} and {len(maps_gt)}")
        if any(c < 0 for c in ids):
            raise ValueError(f"category ids must be >= 0 with label_divisor, got {ids}")
        table = np.full(max(ids, default=-1) + 1, -1, dtype=np.int64)
        table[ids] = np.arange(len(ids))
        seg = {"gt_segments": None, "gt_segment_offsets": None, "pred_segments": None, "pred_segment_offsets": None}
        category_of = torch.from_numpy(table)
        divisor = label_divisor
    flat_pred, flat_gt, offsets = _flatten(maps_pred, maps_gt)
    stats = torch.ops.fastops.panoptic_quality_stats(
        flat_gt,
        flat_pred,
        offsets,
        seg["gt_segments"],
        seg["gt_segment_offsets"],
        seg["pred_segments"],
        seg["pred_segment_offsets"],
        category_of,
        len(ids),
        divisor,
    )
    return _summarize(stats.numpy(), ids, isthing)


def _summarize(stats: np.ndarray, ids: list[int], isthing: list[bool]) -> dict:
    tp, fp, fn, iou = stats.T
    seen = tp + fp + fn > 0
    denom = np.where(seen, tp + 0.5 * fp + 0.5 * fn, 1.0)
    pq = np.where(seen, iou / denom, 0.0)
    sq = np.where(tp > 0, iou / np.where(tp > 0, tp, 1.0), 0.0)
    rq = np.where(seen, tp / denom, 0.0)
    things = np.asarray(isthing, dtype=bool)
    results = {}
    for name, keep in [("All", np.ones_like(things)), ("Things", things), ("Stuff", ~things)]:
        chosen = keep & seen
        n = int(chosen.sum())

        # summed in category order, as the API's loop does
        def mean(v, chosen=chosen, n=n):
            return float(sum(v[chosen].tolist()) / n) if n else float("nan")

        results[name] = {"pq": mean(pq), "sq": mean(sq), "rq": mean(rq), "n": n}
    results["per_class"] = {c: {"pq": float(pq[k]), "sq": float(sq[k]), "rq": float(rq[k])} for k, c in enumerate(ids)}
    return results
