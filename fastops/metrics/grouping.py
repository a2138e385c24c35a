"""Rows of a COCO object grouped as COCOeval evaluates them, by (category, image), with the
columns each group's matching reads gathered in that order (``coco_evaluate``'s inputs).

The ground truth's groups depend only on its annotations and the evaluated images and categories:
they are built once and kept in its ``AnnotationColumns.eval_cache``, reused for every new set of
detections, and dropped with the columns when the annotations are read again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .columns import AnnotationColumns

__all__ = ["Groups", "dt_groups", "group_rows", "gt_groups"]

_CACHE_ENTRIES = 4  # parameter sets kept per ground truth


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def group_rows(cols: AnnotationColumns, img_ids: np.ndarray, cat_ids: np.ndarray, use_cats: bool):
    """Rows of one COCO object in pycocotools' evaluation order, grouped by (category, image).

    Returns (rows, offsets): group p = k * I + i (useCats) or i (useCats=0) holds rows
    rows[offsets[p]:offsets[p + 1]], in the order COCOeval._prepare collects them.
    """
    loaded = cols.loaded_rows()
    if use_cats and loaded is None:
        rows, offsets = torch.ops.fastops.coco_group(_t(cols.image_id), _t(cols.category_id), _t(img_ids), _t(cat_ids))
        return rows.numpy(), offsets.numpy()
    I = len(img_ids)  # noqa: E741 (pycocotools' name)
    img_idx = np.searchsorted(img_ids, cols.image_id) if I else np.zeros(cols.n, np.int64)
    img_idx = np.minimum(img_idx, max(I - 1, 0))
    img_ok = (img_ids[img_idx] == cols.image_id) if I else np.zeros(cols.n, bool)
    if use_cats:
        K = len(cat_ids)  # unique and sorted by evaluate()
        cat_idx = np.minimum(np.searchsorted(cat_ids, cols.category_id), max(K - 1, 0))
        cat_ok = (cat_ids[cat_idx] == cols.category_id) if K else np.zeros(cols.n, bool)
        # getAnnIds walks the images in order, filtering by each annotation's own category;
        # loadAnns then returns the last annotation with each id, grouped by its own keys.
        seq = np.flatnonzero(img_ok & cat_ok)
        seq = seq[np.argsort(img_idx[seq], kind="stable")]
        sel = loaded[seq]
        sel = sel[img_ok[sel] & cat_ok[sel]]
        key = cat_idx[sel] * I + img_idx[sel]
        order = np.argsort(key, kind="stable")
        rows = sel[order]
        counts = np.bincount(key, minlength=K * I) if K * I else np.zeros(0, np.int64)
    else:
        # one group per image: categories in p.catIds order (duplicates repeat), then load order
        C = len(cat_ids)
        base = np.flatnonzero(img_ok)
        if loaded is not None:
            base = base[np.argsort(img_idx[base], kind="stable")]
            base = loaded[base]
            base = base[img_ok[base]]
        cid = cols.category_id[base]
        rows_list, keys_list = [], []
        for pos, c in enumerate(cat_ids.tolist()):  # a category listed twice is collected twice
            b = base[cid == c]
            rows_list.append(b)
            keys_list.append(img_idx[b] * C + pos)
        rows_all = np.concatenate(rows_list) if rows_list else np.zeros(0, np.int64)
        keys = np.concatenate(keys_list) if keys_list else np.zeros(0, np.int64)
        order = np.argsort(keys, kind="stable")
        rows = rows_all[order]
        counts = np.bincount(keys // max(C, 1), minlength=I) if I else np.zeros(0, np.int64)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return rows.astype(np.int64, copy=False), offsets


@dataclass
class Groups:
    """One side's grouped rows and the columns coco_evaluate reads (tensors): the ground truth's
    gathered in group order (built once), the detections' whole, read through ``rows``."""

    rows: torch.Tensor  # int64 [n]: the annotation row of each grouped entry
    offsets: torch.Tensor  # int64 [P + 1]
    area: torch.Tensor
    ids: torch.Tensor
    boxes: torch.Tensor | None = None  # bbox evaluation: float64 [*, 4]
    crowd: torch.Tensor | None = None  # ground truth: int(iscrowd) != 0
    ignore: torch.Tensor | None = None  # ground truth: ignore before area ranges
    score: torch.Tensor | None = None  # detections


def _image_check(coco, cols: AnnotationColumns, rows: np.ndarray) -> None:
    """annToRLE looks up each evaluated annotation's image first (KeyError when it is unknown)."""
    _, known = coco.image_table().sizes(cols.image_id[rows])
    if not known.all():
        i = int(rows[~known][0])
        raise KeyError(f"annotation id {int(cols.id[i])}: image_id {int(cols.image_id[i])} is not an image of the set")


def gt_groups(coco, img_ids: np.ndarray, cat_ids: np.ndarray, use_cats: bool, iou_type: str) -> Groups:
    """The ground truth's groups (built once per annotations, parameters and iou type)."""
    cols = coco.columns()
    key = (img_ids.tobytes(), cat_ids.tobytes(), use_cats, iou_type)
    cache = cols.eval_cache
    if key in cache:
        return cache[key]
    rows, offsets = group_rows(cols, img_ids, cat_ids, use_cats)
    crowd, ignore, missing = cols.crowd()
    if missing[rows].any():
        i = int(rows[missing[rows]][0])
        raise KeyError(f"ground truth annotation id {int(cols.id[i])} has no 'iscrowd' (pycocotools needs it too)")
    ignore = ignore[rows]
    if iou_type == "keypoints":  # pycocotools: ignore = (num_keypoints == 0) or bool(iscrowd)
        ignore = ignore | (cols.num_keypoints()[rows] == 0)
    if iou_type == "segm":
        _image_check(coco, cols, rows)
    g = Groups(
        _t(rows),
        _t(offsets),
        _t(cols.area()[rows]),
        _t(cols.id[rows]),
        boxes=_t(cols.bbox()[rows]) if iou_type == "bbox" else None,
        crowd=_t(crowd[rows]),
        ignore=_t(ignore),
    )
    while len(cache) >= _CACHE_ENTRIES:
        cache.pop(next(iter(cache)))
    cache[key] = g
    return g


def dt_groups(coco, img_ids: np.ndarray, cat_ids: np.ndarray, use_cats: bool, iou_type: str) -> Groups:
    """The detections' groups (built for each evaluation: the detections change every epoch)."""
    cols = coco.columns()
    rows, offsets = group_rows(cols, img_ids, cat_ids, use_cats)
    if iou_type == "segm":
        _image_check(coco, cols, rows)
    return Groups(
        _t(rows),
        _t(offsets),
        _t(cols.area()),
        _t(cols.id),
        boxes=_t(cols.bbox()) if iou_type == "bbox" else None,
        score=_t(cols.score()),
    )
