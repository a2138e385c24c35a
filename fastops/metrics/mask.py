"""pycocotools' RLE mask API (``pycocotools.mask``), same functions, same results, computed by the
C++ ops in ``csrc/coco_eval/rle*.cpp`` (``maskApi.c``'s algorithms, uint32 wrap-around included).

An RLE is ``{"size": [h, w], "counts": bytes}``: run lengths of 0s and 1s over the column-major
pixels, compressed as pycocotools' LEB128-like string. Masks are uint8 arrays [h, w] or [h, w, n]
(returned in column-major order, as pycocotools returns them).

    encode(mask)                -> RLE (or list of RLEs for [h, w, n])
    decode(rle or [rles])       -> uint8 [h, w] (or [h, w, n])
    merge([rles], intersect=0)  -> RLE (union, or intersection)
    area(rle or [rles])         -> uint32 (or uint32 [n])
    toBbox(rle or [rles])       -> float64 [4] (or [n, 4]), xywh
    iou(dt, gt, iscrowd)        -> float64 [len(dt), len(gt)] (RLEs or xywh boxes; [] when either is empty)
    frPyObjects(obj, h, w)      -> RLE(s) from polygons, xywh boxes (float64 [n, 4] array) or uncompressed RLEs

Differences, deliberate: masks of any memory layout and bool masks are accepted (pycocotools needs
Fortran-ordered uint8); ``decode([])`` raises ValueError (pycocotools reads past an empty list).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["area", "decode", "encode", "frPyObjects", "iou", "merge", "toBbox"]

_ops = torch.ops.fastops


class _RleBatch:
    """n RLEs as flat tensors: counts (int32 holding uint32), offsets [n + 1], hw [n, 2]."""

    __slots__ = ("counts", "offsets", "hw")

    def __init__(self, counts, offsets, hw):
        self.counts, self.offsets, self.hw = counts, offsets, hw

    def __len__(self):
        return self.offsets.shape[0] - 1

    @staticmethod
    def from_objects(objs) -> "_RleBatch":
        """From compressed RLE dicts ({"size": [h, w], "counts": str or bytes})."""
        strings = []
        for o in objs:
            c = o["counts"]
            if isinstance(c, str):
                c = c.encode()
            elif not isinstance(c, (bytes, bytearray)):
                raise TypeError(
                    "RLE counts must be a compressed string (str or bytes); convert uncompressed RLEs "
                    "with frPyObjects first"
                )
            strings.append(bytes(c))
        lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
        offsets = np.zeros(len(strings) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        chars = np.frombuffer(b"".join(strings), dtype=np.uint8)
        hw = np.array([o["size"] for o in objs], dtype=np.int64).reshape(-1, 2)
        return _RleBatch(*_ops.rle_from_string(torch.from_numpy(chars.copy()), torch.from_numpy(offsets),
                                               torch.from_numpy(hw)))

    def to_objects(self) -> list:
        chars, offs = _ops.rle_to_string(self.counts, self.offsets, self.hw)
        data = chars.numpy().tobytes()
        offs = offs.tolist()
        hw = self.hw.tolist()
        return [{"size": hw[i], "counts": data[offs[i]:offs[i + 1]]} for i in range(len(offs) - 1)]

    @staticmethod
    def cat(parts: list) -> "_RleBatch":
        """All RLEs of several batches, in order."""
        if not parts:
            return _RleBatch.concat([], [])
        offsets = [parts[0].offsets]
        base = parts[0].counts.shape[0]
        for p in parts[1:]:
            offsets.append(p.offsets[1:] + base)
            base += p.counts.shape[0]
        return _RleBatch(torch.cat([p.counts for p in parts]), torch.cat(offsets), torch.cat([p.hw for p in parts]))

    @staticmethod
    def concat(parts: list, order: list) -> "_RleBatch":
        """RLEs picked from several batches: order[i] = (part index, index in that part)."""
        if not order:
            return _RleBatch(torch.zeros(0, dtype=torch.int32), torch.zeros(1, dtype=torch.int64),
                             torch.zeros(0, 2, dtype=torch.int64))
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
        return _RleBatch(counts[torch.from_numpy(gather)], torch.from_numpy(offsets), torch.from_numpy(hw))


def _batch(rleObjs) -> _RleBatch:
    return _RleBatch.from_objects(rleObjs)


def encode(bimask):
    """Binary mask(s) uint8 [h, w] or [h, w, n] -> RLE (or list of RLEs)."""
    m = np.asarray(bimask)
    if m.dtype == bool:
        m = m.view(np.uint8)
    if m.dtype != np.uint8:
        raise ValueError(f"encode: masks must be uint8 (or bool), got {m.dtype}")
    if m.ndim == 2:
        return encode(m.reshape(m.shape[0], m.shape[1], 1))[0]
    if m.ndim != 3:
        raise ValueError(f"encode: masks must have shape [h, w] or [h, w, n], got {m.shape}")
    masks = torch.from_numpy(np.ascontiguousarray(m.transpose(2, 1, 0)))  # [n, w, h]: column-major per mask
    return _RleBatch(*_ops.rle_encode(masks)).to_objects()


def decode(rleObjs):
    """RLE -> uint8 [h, w]; list of RLEs -> uint8 [h, w, n] (column-major, as pycocotools)."""
    if type(rleObjs) == list:
        if len(rleObjs) == 0:
            raise ValueError("decode: empty list of RLEs")
        b = _batch(rleObjs)
        return _ops.rle_decode(b.counts, b.offsets, b.hw).numpy().transpose(2, 1, 0)
    return decode([rleObjs])[:, :, 0]


def merge(rleObjs, intersect=0):
    """Union (or intersection) of a list of RLEs -> RLE."""
    b = _batch(rleObjs)
    return _RleBatch(*_ops.rle_merge(b.counts, b.offsets, b.hw, bool(intersect))).to_objects()[0]


def area(rleObjs):
    """Pixel count of RLE(s): uint32 (or uint32 [n])."""
    if type(rleObjs) == list:
        b = _batch(rleObjs)
        return _ops.rle_area(b.counts, b.offsets, b.hw).numpy().view(np.uint32)
    return area([rleObjs])[0]


def toBbox(rleObjs):
    """Bounding box(es) xywh of RLE(s): float64 [4] (or [n, 4])."""
    if type(rleObjs) == list:
        b = _batch(rleObjs)
        return _ops.rle_to_bbox(b.counts, b.offsets, b.hw).numpy()
    return toBbox([rleObjs])[0]


def _box_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """maskApi.c bbIou in numpy, the same double operations in the same order: [m, n]."""
    D, G = d[:, None, :], g[None, :, :]
    ga = G[..., 2] * G[..., 3]
    da = D[..., 2] * D[..., 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.fmin(D[..., 2] + D[..., 0], G[..., 2] + G[..., 0]) - np.fmax(D[..., 0], G[..., 0])
        h = np.fmin(D[..., 3] + D[..., 1], G[..., 3] + G[..., 1]) - np.fmax(D[..., 1], G[..., 1])
        i = w * h
        u = np.where(crowd[None, :], da, da + ga - i)
        o = i / u
    return np.where((w <= 0) | (h <= 0), 0.0, o)


def iou(dt, gt, pyiscrowd):
    """IoU of detections x ground truths, float64 [m, n]; for a crowd ground truth, intersection
    over the detection's area. dt and gt: both lists of RLEs, or both xywh boxes ([n, 4] array or
    list of 4-lists). Returns [] when either is empty."""

    def _preproc(objs):
        if len(objs) == 0:
            return objs
        if type(objs) == np.ndarray:
            if len(objs.shape) == 1:
                objs = objs.reshape((objs[0], 1))
            if not len(objs.shape) == 2 or not objs.shape[1] == 4:
                raise Exception("numpy ndarray input is only for *bounding boxes* and should have Nx4 dimension")
            return objs.astype(np.double)
        if type(objs) == list:
            isbox = np.all(np.array([(len(obj) == 4) and ((type(obj) == list) or (type(obj) == np.ndarray))
                                     for obj in objs]))
            isrle = np.all(np.array([type(obj) == dict for obj in objs]))
            if isbox:
                objs = np.array(objs, dtype=np.double)
                if len(objs.shape) == 1:
                    objs = objs.reshape((1, objs.shape[0]))
                return objs
            if isrle:
                return _batch(objs)
            raise Exception("list input can be bounding box (Nx4) or RLEs ([RLE])")
        raise Exception("unrecognized type.  The following type: RLEs (rle), np.ndarray (box), and list (box) are "
                        "supported.")

    crowd = np.array(pyiscrowd, dtype=np.uint8).reshape(-1)
    dt = _preproc(dt)
    gt = _preproc(gt)
    m, n = len(dt), len(gt)
    assert len(pyiscrowd) == n, "iou(iscrowd=) must have the same length as gt"
    if m == 0 or n == 0:
        return []
    if not type(dt) == type(gt):
        raise Exception("The dt and gt should have the same data type, either RLEs, list or np.ndarray")
    if isinstance(dt, _RleBatch):
        return _ops.rle_iou(dt.counts, dt.offsets, dt.hw, gt.counts, gt.offsets, gt.hw,
                            torch.from_numpy(crowd != 0)).numpy()
    return _box_iou(dt, gt, crowd != 0)


def _from_bbox(bb: np.ndarray, h, w) -> _RleBatch:
    xs, ys = bb[:, 0], bb[:, 1]
    xe, ye = xs + bb[:, 2], ys + bb[:, 3]
    xy = np.stack([xs, ys, xs, ye, xe, ye, xe, ys], axis=1).reshape(-1)
    n = bb.shape[0]
    return _polygons(xy, np.arange(0, 8 * n + 1, 8), np.arange(n + 1), np.tile([h, w], (n, 1)))


def _polygons(xy, poly_offsets, ann_offsets, hw) -> _RleBatch:
    t = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a, dtype=dt))  # noqa: E731
    return _RleBatch(*_ops.rle_from_polygons(t(xy, np.float64), t(poly_offsets, np.int64), t(ann_offsets, np.int64),
                                             t(np.asarray(hw).reshape(-1, 2), np.int64)))


def _from_poly_lists(polys: list, h, w, merge_all: bool) -> _RleBatch:
    """RLE per polygon (merge_all=False) or one RLE, their union (True)."""
    arrays = [np.asarray(p, dtype=np.double).reshape(-1) for p in polys]
    lengths = [2 * (len(a) // 2) for a in arrays]  # int(len(p) / 2) points
    xy = np.concatenate([a[:k] for a, k in zip(arrays, lengths)]) if arrays else np.zeros(0)
    poly_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = len(polys)
    ann_offsets = np.array([0, n]) if merge_all else np.arange(n + 1)
    return _polygons(xy, poly_offsets, ann_offsets, np.tile([h, w], (len(ann_offsets) - 1, 1)))


def _from_uncompressed(objs) -> _RleBatch:
    counts = [np.asarray(o["counts"], dtype=np.uint32).reshape(-1) for o in objs]
    lengths = [len(c) for c in counts]
    offsets = np.zeros(len(objs) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(counts) if counts else np.zeros(0, np.uint32)
    hw = np.array([o["size"] for o in objs], dtype=np.int64).reshape(-1, 2)
    return _RleBatch(torch.from_numpy(flat.view(np.int32).copy()), torch.from_numpy(offsets), torch.from_numpy(hw))


def frPyObjects(pyobj, h, w):
    """Polygons ([[x1, y1, x2, y2, ...], ...]), xywh boxes (float64 [n, 4] array) or uncompressed
    RLEs ({"size", "counts": list}) -> RLEs; a single polygon or uncompressed RLE -> one RLE. The
    input is read with pycocotools' own tests, in its order."""
    if type(pyobj) == np.ndarray:
        bb = pyobj
        if bb.ndim != 2 or bb.dtype != np.float64:
            raise ValueError("frPyObjects: a box array must be float64 with shape [n, 4]")
        return _from_bbox(bb, h, w).to_objects()
    if type(pyobj) == list and len(pyobj[0]) == 4:
        raise TypeError("frPyObjects: boxes must be a float64 numpy array [n, 4] (as pycocotools requires)")
    if type(pyobj) == list and len(pyobj[0]) > 4:
        return _from_poly_lists(pyobj, h, w, merge_all=False).to_objects()
    if type(pyobj) == list and type(pyobj[0]) == dict and "counts" in pyobj[0] and "size" in pyobj[0]:
        return _from_uncompressed(pyobj).to_objects()
    if type(pyobj) == list and len(pyobj) == 4:
        raise TypeError("frPyObjects: boxes must be a float64 numpy array [n, 4] (as pycocotools requires)")
    if type(pyobj) == list and len(pyobj) > 4:
        return _from_poly_lists([pyobj], h, w, merge_all=False).to_objects()[0]
    if type(pyobj) == dict and "counts" in pyobj and "size" in pyobj:
        return _from_uncompressed([pyobj]).to_objects()[0]
    raise Exception("input type is not supported.")


def _segmentations_batch(anns: list, imgs: dict, bbox_results: bool = False) -> _RleBatch:
    """RLEs of annotations' segmentations as COCO.annToRLE gives them (polygons merged, uncompressed
    RLEs converted, compressed RLEs as they are), batched: one C++ call per kind."""
    poly_xy, poly_len, poly_count, poly_hw = [], [], [], []
    comp, uncomp = [], []
    order = []
    for ann in anns:
        segm = ann.get("segmentation")
        if segm is None and bbox_results:
            bb = ann["bbox"]
            x1, x2, y1, y2 = [bb[0], bb[0] + bb[2], bb[1], bb[1] + bb[3]]
            segm = ann["segmentation"] = [[x1, y1, x1, y2, x2, y2, x2, y1]]
        if segm is None:
            raise KeyError(f"annotation {ann.get('id')} has no segmentation")
        if type(segm) == list:
            if len(segm) == 0:
                raise ValueError(f"annotation {ann.get('id')}: empty segmentation list")
            if len(segm[0]) == 4:
                raise TypeError(f"annotation {ann.get('id')}: a 2-point polygon reads as a box in pycocotools, "
                                "which then fails; give polygons of at least 3 points")
            if not len(segm[0]) > 4:
                raise Exception("input type is not supported.")
            img = imgs[ann["image_id"]]
            order.append((0, len(poly_count)))
            for p in segm:
                k = 2 * (len(p) // 2)
                poly_xy.extend(p[:k])
                poly_len.append(k)
            poly_count.append(len(segm))
            poly_hw.append((img["height"], img["width"]))
        elif type(segm["counts"]) == list:
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
        parts.append(_polygons(np.array(poly_xy, dtype=np.float64), poly_offsets, ann_offsets, np.array(poly_hw)))
    else:
        parts.append(None)
    parts.append(_RleBatch.from_objects(comp) if comp else None)
    parts.append(_from_uncompressed(uncomp) if uncomp else None)
    present = [p for p in parts if p is not None]
    if len(present) == 1:  # one kind of segmentation: already in annotation order
        return present[0]
    empty = _RleBatch(torch.zeros(0, dtype=torch.int32), torch.zeros(1, dtype=torch.int64),
                      torch.zeros(0, 2, dtype=torch.int64))
    return _RleBatch.concat([p if p is not None else empty for p in parts], order)


def _grouped_iou(dt: _RleBatch, dt_rows, dt_groups, gt: _RleBatch, gt_rows, gt_groups, gt_crowd):
    """Mask IoU per (category, image) group for the evaluation: (ious flat, iou_offsets). The
    groups' RLEs are dt[dt_rows[...]] and gt[gt_rows[...]] (no copy of the counts)."""
    return _ops.rle_grouped_iou(dt.counts, dt.offsets, dt.hw, dt_rows, dt_groups, gt.counts, gt.offsets, gt.hw,
                                gt_rows, gt_groups, gt_crowd)
