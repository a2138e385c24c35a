"""Batched RLE masks: n run-length encodings as flat tensors, the form every C++ RLE op
(``csrc/coco_eval/rle*.cpp``) reads and writes. The pycocotools mask API (``mask.py``), the COCO
evaluation (``coco.py``, ``cocoeval.py``) and ``MeanAveragePrecision`` share it.

A batch holds ``counts`` (int32 holding uint32 run lengths, all RLEs back to back), ``offsets``
(int64 [n + 1]: RLE i is counts[offsets[i]:offsets[i + 1]]) and ``hw`` (int64 [n, 2]: each mask's
height and width). Runs alternate 0s and 1s over the column-major pixels, starting with 0s.
"""

from __future__ import annotations

import array
import itertools
from operator import itemgetter

import numpy as np
import torch

from .. import _C

__all__ = [
    "RleBatch",
    "from_boxes",
    "from_dicts",
    "from_parsed",
    "from_polygon_lists",
    "from_polygons",
    "from_strings",
    "from_uncompressed",
    "grouped_iou",
    "segmentations",
]

_ops = torch.ops.fastops


class RleBatch:
    """n RLEs as flat tensors: counts (int32 holding uint32), offsets [n + 1], hw [n, 2]."""

    __slots__ = ("counts", "hw", "offsets")

    def __init__(self, counts, offsets, hw):
        self.counts, self.offsets, self.hw = counts, offsets, hw

    def __len__(self):
        return self.offsets.shape[0] - 1

    @staticmethod
    def from_objects(objs, key: str | None = None) -> RleBatch:
        """From compressed RLE dicts ({"size": [h, w], "counts": str or bytes}), or with ``key``
        from dicts holding them under that key."""
        read = _C.rle_strings(objs, key) if type(objs) is list else None  # the usual case, in one C++ pass
        if read is not None:
            chars, offsets, hw = read
            return _decode(torch.from_numpy(chars), offsets, hw)
        if key is not None:
            for i, o in enumerate(objs):
                if not isinstance(o, dict):
                    raise TypeError(f"annotation {i} must be a dict, got {type(o).__name__}")
                if key not in o:
                    raise KeyError(f"annotation {i} has no {key!r}")
            objs = list(map(itemgetter(key), objs))
        try:
            counts = list(map(itemgetter("counts"), objs))
            sizes = list(map(itemgetter("size"), objs))
        except (KeyError, TypeError):
            raise TypeError("an RLE is a dict with 'size' [h, w] and 'counts'") from None
        return from_strings(counts, sizes)

    def to_objects(self) -> list:
        chars, offs = _ops.rle_to_string(self.counts, self.offsets, self.hw)
        data = chars.numpy().tobytes()
        offs = offs.tolist()
        hw = self.hw.tolist()
        return [{"size": hw[i], "counts": data[offs[i] : offs[i + 1]]} for i in range(len(offs) - 1)]

    @staticmethod
    def cat(parts: list) -> RleBatch:
        """All RLEs of several batches, in order."""
        if not parts:
            return RleBatch.concat([], [])
        offsets = [parts[0].offsets]
        base = parts[0].counts.shape[0]
        for p in parts[1:]:
            offsets.append(p.offsets[1:] + base)
            base += p.counts.shape[0]
        return RleBatch(torch.cat([p.counts for p in parts]), torch.cat(offsets), torch.cat([p.hw for p in parts]))

    @staticmethod
    def concat(parts: list, order: list) -> RleBatch:
        """RLEs picked from several batches: order[i] = (part index, index in that part)."""
        if len(order) == 0:
            return RleBatch.empty()
        counts = torch.cat([p.counts for p in parts])
        base = np.cumsum([0] + [p.counts.shape[0] for p in parts])
        src = np.array(order, dtype=np.int64).reshape(-1, 2)
        starts = np.empty(len(src), np.int64)
        lengths = np.empty(len(src), np.int64)
        hw = np.empty((len(src), 2), np.int64)
        for k, p in enumerate(parts):
            sel = np.flatnonzero(src[:, 0] == k)
            if sel.size == 0:
                continue
            idx = src[sel, 1]
            off = p.offsets.numpy()
            starts[sel] = base[k] + off[idx]
            lengths[sel] = off[idx + 1] - off[idx]
            hw[sel] = p.hw.numpy()[idx]
        offsets = np.zeros(len(src) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return RleBatch(counts[torch.from_numpy(gather)], torch.from_numpy(offsets), torch.from_numpy(hw))

    @staticmethod
    def empty() -> RleBatch:
        """A batch of no RLEs."""
        return RleBatch(
            torch.zeros(0, dtype=torch.int32), torch.zeros(1, dtype=torch.int64), torch.zeros(0, 2, dtype=torch.int64)
        )


def _sizes(sizes: list) -> np.ndarray:
    """[h, w] pairs (ints) -> int64 [n, 2]."""
    n = len(sizes)
    try:
        lengths = np.fromiter(map(len, sizes), np.int64, n)
        if not (lengths == 2).all():
            raise TypeError
        hw = np.frombuffer(array.array("q", itertools.chain.from_iterable(sizes)), np.int64)
    except (TypeError, OverflowError):
        bad = next((s for s in sizes if not (isinstance(s, (list, tuple, np.ndarray)) and len(s) == 2)), None)
        raise TypeError(f"an RLE's size must be [h, w] (two ints), got {bad!r}") from None
    return hw.reshape(n, 2)


def from_strings(counts: list, sizes) -> RleBatch:
    """Compressed RLEs from their counts strings (str or bytes, pycocotools' LEB128-like code) and
    sizes ([h, w] each, or an int64 array [n, 2])."""
    n = len(counts)
    kinds = set(map(type, counts))
    if kinds <= {str}:
        joined = "".join(counts)
        data = joined.encode()
        if len(data) != len(joined):  # non-ASCII characters: lengths in bytes differ
            encoded = [c.encode() for c in counts]
            data, lengths = b"".join(encoded), np.fromiter(map(len, encoded), np.int64, n)
        else:
            lengths = np.fromiter(map(len, counts), np.int64, n)
    elif kinds <= {bytes, bytearray, str}:
        encoded = [c.encode() if isinstance(c, str) else bytes(c) for c in counts]
        data, lengths = b"".join(encoded), np.fromiter(map(len, encoded), np.int64, n)
    else:
        raise TypeError(
            "RLE counts must be a compressed string (str or bytes); convert uncompressed RLEs with frPyObjects first"
        )
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    hw = sizes if isinstance(sizes, np.ndarray) else _sizes(sizes)
    chars = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
    return _decode(chars, offsets, hw)


def _decode(chars: torch.Tensor, offsets: np.ndarray, hw: np.ndarray) -> RleBatch:
    """uint8 counts strings one after the other, int64 offsets [n + 1], sizes [n, 2] -> RleBatch."""
    return RleBatch(*_ops.rle_from_string(chars, torch.from_numpy(offsets), torch.from_numpy(np.ascontiguousarray(hw))))


def from_boxes(bb: np.ndarray, h, w) -> RleBatch:
    xs, ys = bb[:, 0], bb[:, 1]
    xe, ye = xs + bb[:, 2], ys + bb[:, 3]
    xy = np.stack([xs, ys, xs, ye, xe, ye, xe, ys], axis=1).reshape(-1)
    n = bb.shape[0]
    return from_polygons(xy, np.arange(0, 8 * n + 1, 8), np.arange(n + 1), np.tile([h, w], (n, 1)))


def from_polygons(xy, poly_offsets, ann_offsets, hw) -> RleBatch:
    t = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a, dtype=dt))
    return RleBatch(
        *_ops.rle_from_polygons(
            t(xy, np.float64),
            t(poly_offsets, np.int64),
            t(ann_offsets, np.int64),
            t(np.asarray(hw).reshape(-1, 2), np.int64),
        )
    )


def from_polygon_lists(polys: list, h, w, merge_all: bool) -> RleBatch:
    """RLE per polygon (merge_all=False) or one RLE, their union (True)."""
    arrays = [np.asarray(p, dtype=np.double).reshape(-1) for p in polys]
    lengths = [2 * (len(a) // 2) for a in arrays]  # int(len(p) / 2) points
    xy = np.concatenate([a[:k] for a, k in zip(arrays, lengths)]) if arrays else np.zeros(0)
    poly_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = len(polys)
    ann_offsets = np.array([0, n]) if merge_all else np.arange(n + 1)
    return from_polygons(xy, poly_offsets, ann_offsets, np.tile([h, w], (len(ann_offsets) - 1, 1)))


def _uncompressed_counts(c) -> np.ndarray:
    """An uncompressed RLE's counts as uint32 (numbers in [0, 2**32), truncated as numpy does)."""
    try:
        a = np.asarray(c, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"uncompressed RLE counts must be a list of numbers, got {c!r}") from None
    if not (np.isfinite(a).all() and (a >= 0).all() and (a < 2**32).all()):
        raise ValueError("uncompressed RLE counts must be numbers in [0, 2**32)")
    return np.asarray(c).astype(np.uint32).reshape(-1) if a.size else np.zeros(0, np.uint32)


def from_uncompressed(objs) -> RleBatch:
    counts = [_uncompressed_counts(o["counts"]) for o in objs]
    lengths = [len(c) for c in counts]
    offsets = np.zeros(len(objs) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(counts) if counts else np.zeros(0, np.uint32)
    hw = np.array([o["size"] for o in objs], dtype=np.int64).reshape(-1, 2)
    return RleBatch(torch.from_numpy(flat.view(np.int32).copy()), torch.from_numpy(offsets), torch.from_numpy(hw))


def _polygon_list_checks(first_len: np.ndarray, n_polys: np.ndarray, names) -> None:
    """pycocotools' frPyObjects reading of a polygon list, as errors: an empty list, or a first
    polygon of 4 numbers (read as a box, which then fails) or fewer. names[i]: how to name row i."""
    for bad, kind in ((n_polys == 0, "empty"), (first_len == 4, "box"), (first_len < 4, "short")):
        if bad.any():
            ann = names[int(np.flatnonzero(bad)[0])]
            if kind == "empty":
                raise ValueError(f"annotation {ann}: empty segmentation list")
            if kind == "box":
                raise TypeError(
                    f"annotation {ann}: a 2-point polygon reads as a box in pycocotools, which then fails; "
                    "give polygons of at least 3 points"
                )
            raise Exception("input type is not supported.")


def segmentations(anns: list, hw: np.ndarray, bbox_results: bool = False) -> RleBatch:
    """RLEs of annotations' segmentations as COCO.annToRLE gives them (polygons merged, uncompressed
    RLEs converted, compressed RLEs as they are), batched: one C++ call per kind. hw: int64 [n, 2],
    each annotation's image size (polygons need it; -1 where the image is unknown: such a row gets an
    empty RLE, and the evaluation raises KeyError if it reads it, as annToRLE does)."""
    poly_xy, poly_len, poly_count, poly_rows = [], [], [], []
    comp, uncomp = [], []
    order = []
    for row, ann in enumerate(anns):
        segm = ann.get("segmentation")
        if segm is None and bbox_results:
            bb = ann["bbox"]
            x1, x2, y1, y2 = [bb[0], bb[0] + bb[2], bb[1], bb[1] + bb[3]]
            segm = [[x1, y1, x1, y2, x2, y2, x2, y1]]
        if segm is None:
            raise KeyError(f"annotation {ann.get('id')} has no segmentation")
        if type(segm) is list:
            _polygon_list_checks(np.array([len(segm[0]) if segm else 0]), np.array([len(segm)]), [ann.get("id")])
            order.append((0, len(poly_count)))
            for p in segm:
                k = 2 * (len(p) // 2)
                poly_xy.extend(p[:k])
                poly_len.append(k)
            poly_count.append(len(segm))
            poly_rows.append(row)
        elif type(segm["counts"]) is list:
            order.append((2, len(uncomp)))
            uncomp.append(segm)
        else:
            order.append((1, len(comp)))
            comp.append(segm)
    parts = []
    if poly_count:
        poly_offsets = np.zeros(len(poly_len) + 1, np.int64)
        np.cumsum(poly_len, out=poly_offsets[1:])
        ann_offsets = np.zeros(len(poly_count) + 1, np.int64)
        np.cumsum(poly_count, out=ann_offsets[1:])
        hw_p = np.maximum(np.asarray(hw, np.int64).reshape(-1, 2)[poly_rows], 0)
        parts.append(from_polygons(np.array(poly_xy, dtype=np.float64), poly_offsets, ann_offsets, hw_p))
    else:
        parts.append(None)
    parts.append(RleBatch.from_objects(comp) if comp else None)
    parts.append(from_uncompressed(uncomp) if uncomp else None)
    return _assemble(parts, np.array(order, dtype=np.int64).reshape(-1, 2))


def _assemble(parts: list, order: np.ndarray) -> RleBatch:
    """One batch from per-kind batches (None: absent) and each row's (kind, index in its batch)."""
    present = [p for p in parts if p is not None]
    if len(present) == 1 and len(present[0]) == len(order):  # one kind: already in row order
        return present[0]
    empty = RleBatch.empty()
    return RleBatch.concat([p if p is not None else empty for p in parts], order)


def from_parsed(p, hw: np.ndarray) -> RleBatch:
    """Every annotation's RLE of a parsed file (``cocojson.ParsedFile``), as COCO.annToRLE gives it;
    hw as in ``segmentations``."""
    from .cocojson import SEGM_POLYGONS, SEGM_RLE_LIST, SEGM_RLE_STRING

    kind = p.shape[:, 1]
    n = len(kind)
    known = (kind == SEGM_POLYGONS) | (kind == SEGM_RLE_STRING) | (kind == SEGM_RLE_LIST)
    if not known.all():
        raise KeyError(f"annotation {int(np.flatnonzero(~known)[0])} has no segmentation")
    order = np.zeros((n, 2), np.int64)
    parts = [None, None, None]
    rows = np.flatnonzero(kind == SEGM_POLYGONS)
    if rows.size:
        first, n_polys = p.ann_polys[rows], p.ann_polys[rows + 1] - p.ann_polys[rows]
        nxt = p.poly_offsets[np.minimum(first + 1, len(p.poly_offsets) - 1)]
        first_len = np.where(n_polys > 0, nxt - p.poly_offsets[first], 0)
        _polygon_list_checks(first_len, n_polys, rows)
        ann_offsets = np.append(first, p.ann_polys[-1])
        hw_p = np.maximum(np.asarray(hw, np.int64).reshape(-1, 2)[rows], 0)
        parts[0] = from_polygons(p.poly_xy, p.poly_offsets, ann_offsets - ann_offsets[0], hw_p)
        order[rows] = np.stack([np.zeros_like(rows), np.arange(rows.size)], 1)
    for part, k in ((1, SEGM_RLE_STRING), (2, SEGM_RLE_LIST)):
        rows = np.flatnonzero(kind == k)
        if not rows.size:
            continue
        size = p.rle_size[rows]
        integral = np.isfinite(size) & (size == np.floor(size))
        if not (integral & (size >= 0) & (size < 2**31)).all():
            raise TypeError("an RLE's size must be [h, w] (two non-negative ints below 2**31)")
        size = size.astype(np.int64)
        if k == SEGM_RLE_STRING:
            off = p.rle_char_offsets
            chars = p.rle_chars[off[rows[0]] : off[-1]]  # other rows hold no characters
            char_offsets = np.append(off[rows], off[-1]) - off[rows[0]]
            parts[part] = RleBatch(
                *_ops.rle_from_string(
                    torch.from_numpy(np.ascontiguousarray(chars)),
                    torch.from_numpy(char_offsets),
                    torch.from_numpy(size),
                )
            )
        else:
            off = p.rle_count_offsets
            counts = p.rle_counts[off[rows[0]] : off[-1]]
            if not (np.isfinite(counts).all() and (counts >= 0).all() and (counts < 2**32).all()):
                raise ValueError("uncompressed RLE counts must be numbers in [0, 2**32)")
            offsets = np.append(off[rows], off[-1]) - off[rows[0]]
            parts[part] = RleBatch(
                torch.from_numpy(counts.astype(np.uint32).view(np.int32)),
                torch.from_numpy(offsets),
                torch.from_numpy(size),
            )
        order[rows] = np.stack([np.full_like(rows, part), np.arange(rows.size)], 1)
    return _assemble(parts, order)


def from_dicts(objs: list) -> RleBatch:
    """RLE dicts, compressed ("counts" a string) or uncompressed ("counts" a list), in order."""
    comp = [i for i, o in enumerate(objs) if not isinstance(o.get("counts"), list)]
    if len(comp) == len(objs):
        return RleBatch.from_objects(objs)
    unc = [i for i, o in enumerate(objs) if isinstance(o.get("counts"), list)]
    order = np.zeros((len(objs), 2), np.int64)
    order[comp] = np.stack([np.zeros(len(comp), np.int64), np.arange(len(comp))], 1)
    order[unc] = np.stack([np.ones(len(unc), np.int64), np.arange(len(unc))], 1)
    compressed = RleBatch.from_objects([objs[i] for i in comp]) if comp else None
    parts = [compressed, from_uncompressed([objs[i] for i in unc])]
    return _assemble(parts, order)


def grouped_iou(dt: RleBatch, dt_rows, dt_groups, gt: RleBatch, gt_rows, gt_groups, gt_crowd):
    """Mask IoU per (category, image) group for the evaluation: (ious flat, iou_offsets). The
    groups' RLEs are dt[dt_rows[...]] and gt[gt_rows[...]] (no copy of the counts)."""
    return _ops.rle_grouped_iou(
        dt.counts, dt.offsets, dt.hw, dt_rows, dt_groups, gt.counts, gt.offsets, gt.hw, gt_rows, gt_groups, gt_crowd
    )
