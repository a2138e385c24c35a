"""``COCO.loadRes``: detection results (a JSON file, a list of dicts, or an [N, 7] array) read as
pycocotools reads them, their columns computed at load time without a Python loop per result
(the file by C++, dicts by C-level loops, arrays in numpy), and the result dicts built only when
asked for, by pycocotools' own loop.

pycocotools' rules: the kind comes from the first result ("caption", a non-empty "bbox",
"segmentation", "keypoints"); results are numbered 1..N; a box result's area is w * h (and its
segmentation the box's polygon when it has none); a segmentation result (a compressed RLE) gets
the mask's area and, when it has none, the mask's box; a keypoint result gets the keypoints'
extent as box and area; iscrowd is 0 (not set for keypoints); image ids must be images of the
ground truth (AssertionError).
"""

from __future__ import annotations

import copy
import itertools
import os
from operator import methodcaller

import numpy as np
import torch

from . import cocojson, rle
from .columns import (
    INVALID_ID,
    AnnotationColumns,
    DictFields,
    ParsedFields,
    boxes_of,
    ids_from_parsed,
)

__all__ = ["Results", "load", "numpy_annotations"]

_ops = torch.ops.fastops


class Results:
    """Loaded results: their kind, columns and RLEs, and how to build their dicts."""

    def __init__(self, kind: str, n: int, fetch, make_anns, rles=None, box_segm=None):
        self.kind = kind
        self.columns = AnnotationColumns(n, fetch)
        self._make_anns = make_anns
        self._rles = rles  # segmentation results: their RLEs
        self._box_segm = box_segm  # box results: each row's own segmentation (or None), read on demand

    def rle_batch(self, hw: np.ndarray) -> rle.RleBatch:
        """The RLE of every result as annToRLE gives it (hw: each result's image size)."""
        if self._rles is not None:
            return self._rles
        if self.kind != "bbox":
            raise KeyError(f"{self.kind} results have no segmentation")
        own = self._box_segm() if self._box_segm is not None else None
        box = self.columns.bbox()
        if own is None or not any(s is not None for s in own):
            return _box_polygons(box, hw)
        anns = [
            {"segmentation": s} if s is not None else {"segmentation": _box_polygon(box[i])} for i, s in enumerate(own)
        ]
        return rle.segmentations(anns, hw)

    def dataset(self, gt) -> dict:
        """The result set's dataset dict, as pycocotools' loadRes leaves it."""
        res = {"info": copy.deepcopy(gt.dataset.get("info", {})), "images": list(gt.dataset["images"])}
        anns = self._make_anns()
        if self.kind == "empty":
            res["categories"] = copy.deepcopy(gt.dataset.get("categories", []))
        elif self.kind == "caption":
            imgIds = {img["id"] for img in res["images"]} & {ann["image_id"] for ann in anns}
            res["images"] = [img for img in res["images"] if img["id"] in imgIds]
            for id, ann in enumerate(anns):
                ann["id"] = id + 1
        elif self.kind == "bbox":
            res["categories"] = copy.deepcopy(gt.dataset["categories"])
            for id, ann in enumerate(anns):
                bb = ann["bbox"]
                x1, x2, y1, y2 = [bb[0], bb[0] + bb[2], bb[1], bb[1] + bb[3]]
                if "segmentation" not in ann:
                    ann["segmentation"] = [[x1, y1, x1, y2, x2, y2, x2, y1]]
                ann["area"] = bb[2] * bb[3]
                ann["id"] = id + 1
                ann["iscrowd"] = 0
        elif self.kind == "segm":
            res["categories"] = copy.deepcopy(gt.dataset["categories"])
            areas = _ops.rle_area(self._rles.counts, self._rles.offsets, self._rles.hw).numpy().view(np.uint32)
            boxes = _ops.rle_to_bbox(self._rles.counts, self._rles.offsets, self._rles.hw).numpy()
            for id, ann in enumerate(anns):
                ann["area"] = areas[id]
                if "bbox" not in ann:
                    ann["bbox"] = boxes[id].copy()
                ann["id"] = id + 1
                ann["iscrowd"] = 0
        elif self.kind == "keypoints":
            res["categories"] = copy.deepcopy(gt.dataset["categories"])
            for id, ann in enumerate(anns):
                s = ann["keypoints"]
                x = s[0::3]
                y = s[1::3]
                x0, x1, y0, y1 = np.min(x), np.max(x), np.min(y), np.max(y)
                ann["area"] = (x1 - x0) * (y1 - y0)
                ann["id"] = id + 1
                ann["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        res["annotations"] = anns
        return res


_get_segmentation = methodcaller("get", "segmentation")
_get_bbox = methodcaller("get", "bbox")


def _box_polygon(bb):
    x1, x2, y1, y2 = [bb[0], bb[0] + bb[2], bb[1], bb[1] + bb[3]]
    return [[x1, y1, x1, y2, x2, y2, x2, y1]]


def _box_polygons(box: np.ndarray, hw: np.ndarray) -> rle.RleBatch:
    """RLEs of boxes as the polygons loadRes gives box results ([[x1, y1, x1, y2, x2, y2, x2, y1]])."""
    x1, y1 = box[:, 0], box[:, 1]
    x2, y2 = x1 + box[:, 2], y1 + box[:, 3]
    xy = np.stack([x1, y1, x1, y2, x2, y2, x2, y1], 1).reshape(-1)
    n = len(box)
    return rle.from_polygons(xy, np.arange(0, 8 * n + 1, 8), np.arange(n + 1), np.maximum(hw, 0))


def _check_images(gt, image_id: np.ndarray) -> None:
    known = np.isin(image_id, gt.image_table().ids)
    if not known.all():
        bad = image_id[~known][0]
        detail = "an id that is no integer" if bad == np.iinfo(np.int64).min else f"image_id {int(bad)}"
        raise AssertionError(f"Results do not correspond to current coco set ({detail} is not an image of it)")


def _keypoint_extent(flat: np.ndarray, offsets: np.ndarray):
    """x0, y0, x1, y1 of each row's keypoints s: np.min / np.max of s[0::3] and s[1::3] (NaN
    propagating)."""
    lengths = np.diff(offsets)
    if len(lengths) and lengths.min() < 2:
        raise ValueError("every keypoint result needs at least one (x, y) pair: zero-size min/max in pycocotools")
    if len(lengths) and lengths[0] % 3 == 0 and (lengths == lengths[0]).all():  # the usual case: one length
        # [k, 2, n] in memory: the reductions over k become elementwise passes over contiguous rows
        # (numpy's reduction of a short strided axis per row is ~15x slower)
        xy = np.ascontiguousarray(flat.reshape(len(lengths), int(lengths[0]) // 3, 3)[:, :, :2].transpose(1, 2, 0))
        lo, hi = xy.min(0), xy.max(0)  # [2, n]: x and y at once
        return lo[0], lo[1], hi[0], hi[1]
    row = np.repeat(np.arange(len(lengths)), lengths)
    pos = np.arange(len(flat)) - np.repeat(offsets[:-1], lengths)
    out = []
    for phase in (0, 1):
        sel = pos % 3 == phase
        v, r = flat[sel], row[sel]
        starts = np.searchsorted(r, np.arange(len(lengths)))
        out.append((np.minimum.reduceat(v, starts) if len(v) else v, np.maximum.reduceat(v, starts) if len(v) else v))
    (x0, x1), (y0, y1) = out
    return x0, y0, x1, y1


def _keypoint_fetch(base: dict, flat, offsets):
    x0, y0, x1, y1 = _keypoint_extent(flat, offsets)
    base.update(area=(x1 - x0) * (y1 - y0), bbox=np.stack([x0, y0, x1 - x0, y1 - y0], 1), keypoints=(flat, offsets))


def _fetcher(columns: dict, lazy: dict):
    def fetch(name):
        if name in columns:
            return columns[name]
        if name in lazy:
            return lazy[name]()
        raise KeyError(f"the results have no {name!r}")

    return fetch


def _kind(first) -> str:
    if not isinstance(first, dict):
        raise TypeError(f"loadRes: results must be dicts, got {type(first).__name__}")
    if "caption" in first:
        return "caption"
    if "bbox" in first and first["bbox"] != []:
        return "bbox"
    if "segmentation" in first:
        return "segm"
    if "keypoints" in first:
        return "keypoints"
    raise KeyError("loadRes: the first result has none of 'bbox', 'segmentation', 'keypoints', 'caption'")


def _from_dicts(gt, anns: list) -> Results:
    assert type(anns) is list, "results in not an array of objects"
    n = len(anns)
    kind = _kind(anns[0]) if n else "empty"
    fields = DictFields(anns)
    rows = {"bbox": ("bbox",), "keypoints": ("keypoints",)}.get(kind, ())
    fields.prefetch(ints=("image_id", "category_id"), floats=("score",), rows=rows)
    image_id = fields.fetch("image_id")
    _check_images(gt, image_id)
    cols = {"id": np.arange(1, n + 1, dtype=np.int64), "image_id": image_id, "crowd": (np.zeros(n, bool),) * 3}
    lazy = {"score": lambda: fields.fetch("score")}
    rles = box_segm = None
    if kind == "empty":
        cols.update(category_id=np.zeros(0, np.int64), bbox=np.zeros((0, 4)), area=np.zeros(0), score=np.zeros(0))
    elif kind == "caption":
        cols["category_id"] = np.full(n, np.iinfo(np.int64).min)
    else:
        cols["category_id"] = fields.fetch("category_id")
    if kind == "bbox":
        box = fields.fetch("bbox")
        cols.update(bbox=box, area=box[:, 2] * box[:, 3])
        box_segm = lambda: list(map(_get_segmentation, anns))
    elif kind == "segm":
        rles = rle.RleBatch.from_objects(anns, "segmentation")
        cols["area"] = _ops.rle_area(rles.counts, rles.offsets, rles.hw).numpy().view(np.uint32).astype(np.float64)
        lazy["bbox"] = lambda: _segm_boxes(rles, list(map(_get_bbox, anns)))
    elif kind == "keypoints":
        flat, offsets = fields.fetch("keypoints")
        _keypoint_fetch(cols, flat, offsets)
    return Results(kind, n, _fetcher(cols, lazy), lambda: anns, rles, box_segm)


def _segm_boxes(rles: rle.RleBatch, given: list) -> np.ndarray:
    """Each segmentation result's box: its own bbox, else the mask's (toBbox)."""
    boxes = _ops.rle_to_bbox(rles.counts, rles.offsets, rles.hw).numpy().copy()
    has = np.fromiter(map(_is_not_none, given), bool, len(given))
    if has.any():
        rows = np.flatnonzero(has)
        boxes[rows] = boxes_of(list(itertools.compress(given, has)), len(rows))
    return boxes


def _is_not_none(x) -> bool:
    return x is not None


def _from_parsed(gt, p: cocojson.ParsedFile, data) -> Results:
    n = len(p.anns)
    image_id = ids_from_parsed(p.anns, "image_id", "result image ids")
    _check_images(gt, image_id)
    shape = p.shape
    if n and shape[0, 3] != cocojson.KIND_ABSENT:  # captions: read as dicts
        return _from_dicts(gt, cocojson.loads(data))
    if n == 0:
        kind = "empty"
    elif shape[0, 0] != cocojson.KIND_ABSENT and p.bbox_len[0] != 0:
        kind = "bbox"
    elif shape[0, 1] != cocojson.KIND_ABSENT:
        kind = "segm"
    elif shape[0, 2] != cocojson.KIND_ABSENT:
        kind = "keypoints"
    else:
        raise KeyError("loadRes: the first result has none of 'bbox', 'segmentation', 'keypoints', 'caption'")
    fields = ParsedFields(p)
    cols = {"id": np.arange(1, n + 1, dtype=np.int64), "image_id": image_id, "crowd": (np.zeros(n, bool),) * 3}
    lazy = {"score": lambda: fields.fetch("score")}
    rles = box_segm = None
    cols["category_id"] = ids_from_parsed(p.anns, "category_id", "result category ids") if n else np.zeros(0, np.int64)
    if kind == "empty":
        cols.update(bbox=np.zeros((0, 4)), area=np.zeros(0), score=np.zeros(0))
    elif kind == "bbox":
        box = fields.fetch("bbox")
        cols.update(bbox=box, area=box[:, 2] * box[:, 3])
        if (shape[:, 1] != cocojson.KIND_ABSENT).any():  # rows with their own segmentation
            box_segm = lambda: list(map(_get_segmentation, cocojson.loads(data)))
    elif kind == "segm":
        if not (shape[:, 1] == cocojson.SEGM_RLE_STRING).all():
            raise TypeError(
                "segmentation results must be compressed RLEs ({'size', 'counts': string}), "
                "as pycocotools' loadRes reads them"
            )
        rles = rle.from_parsed(p, np.zeros((n, 2), np.int64))
        cols["area"] = _ops.rle_area(rles.counts, rles.offsets, rles.hw).numpy().view(np.uint32).astype(np.float64)
        has_box = shape[:, 0] != cocojson.KIND_ABSENT

        def boxes():
            b = _ops.rle_to_bbox(rles.counts, rles.offsets, rles.hw).numpy().copy()
            if has_box.any():
                if not (p.bbox_len[has_box] == 4).all():
                    raise ValueError("every result's bbox must be [x, y, w, h]")
                b[has_box] = p.bbox[has_box]
            return b

        lazy["bbox"] = boxes
    else:  # keypoints
        flat, offsets = fields.fetch("keypoints")
        _keypoint_fetch(cols, flat, offsets)
    return Results(kind, n, _fetcher(cols, lazy), lambda: cocojson.loads(data), rles, box_segm)


def numpy_annotations(data) -> list:
    """pycocotools' loadNumpyAnnotations: [N, 7] rows (image_id, x, y, w, h, score, category_id) -> dicts."""
    assert type(data) is np.ndarray
    assert data.shape[1] == 7
    return [
        {
            "image_id": int(data[i, 0]),
            "bbox": [data[i, 1], data[i, 2], data[i, 3], data[i, 4]],
            "score": data[i, 5],
            "category_id": int(data[i, 6]),
        }
        for i in range(data.shape[0])
    ]


def _truncated_ids(col: np.ndarray, what: str) -> np.ndarray:
    """int() of each array value (pycocotools' loadNumpyAnnotations): truncation; NaN and inf raise."""
    if col.dtype.kind in "iub":
        return col.astype(np.int64)
    if not np.isfinite(col).all():
        raise ValueError(f"loadRes: the array's {what} column must be finite numbers (int() of each is taken)")
    t = np.trunc(col)
    fits = np.abs(t) < 2.0**63  # beyond int64 no id can match: pycocotools' int() gives such a number
    return np.where(fits, np.where(fits, t, 0).astype(np.int64), INVALID_ID)


def _from_array(gt, data: np.ndarray) -> Results:
    assert type(data) is np.ndarray
    if data.ndim != 2 or data.shape[1] != 7:
        raise AssertionError(f"loadRes: a result array must have shape [N, 7], got {data.shape}")
    if data.dtype.kind not in "iuf":
        raise TypeError(f"loadRes: a result array must be numeric, got {data.dtype}")
    n = data.shape[0]
    image_id = _truncated_ids(data[:, 0], "image_id")
    _check_images(gt, image_id)
    box = data[:, 1:5].astype(np.float64)
    cols = {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "image_id": image_id,
        "category_id": _truncated_ids(data[:, 6], "category_id"),
        "crowd": (np.zeros(n, bool),) * 3,
        "bbox": box,
        "area": (data[:, 3] * data[:, 4]).astype(np.float64),  # in the array's dtype, as bb[2] * bb[3]
        "score": data[:, 5].astype(np.float64),
    }
    kind = "bbox" if n else "empty"
    return Results(kind, n, _fetcher(cols, {}), lambda: numpy_annotations(data))


def load(gt, resFile) -> Results:
    """Results of ``gt.loadRes(resFile)``."""
    if isinstance(resFile, (str, os.PathLike)):
        data, parsed = cocojson.read(resFile)
        if parsed is None:
            return _from_dicts(gt, cocojson.loads(data))
        assert parsed.top_is_list, "results in not an array of objects"
        return _from_parsed(gt, parsed, data)
    if isinstance(resFile, np.ndarray):
        return _from_array(gt, resFile)
    return _from_dicts(gt, resFile)
