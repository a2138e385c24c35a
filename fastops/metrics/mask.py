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

from .rle import RleBatch, from_boxes, from_polygon_lists, from_uncompressed

__all__ = ["area", "decode", "encode", "frPyObjects", "iou", "merge", "toBbox"]

_ops = torch.ops.fastops


def _batch(rleObjs) -> RleBatch:
    return RleBatch.from_objects(rleObjs)


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
    return RleBatch(*_ops.rle_encode(masks)).to_objects()


def decode(rleObjs):
    """RLE -> uint8 [h, w]; list of RLEs -> uint8 [h, w, n] (column-major, as pycocotools)."""
    if type(rleObjs) is list:
        if len(rleObjs) == 0:
            raise ValueError("decode: empty list of RLEs")
        b = _batch(rleObjs)
        return _ops.rle_decode(b.counts, b.offsets, b.hw).numpy().transpose(2, 1, 0)
    return decode([rleObjs])[:, :, 0]


def merge(rleObjs, intersect=0):
    """Union (or intersection) of a list of RLEs -> RLE."""
    b = _batch(rleObjs)
    return RleBatch(*_ops.rle_merge(b.counts, b.offsets, b.hw, bool(intersect))).to_objects()[0]


def area(rleObjs):
    """Pixel count of RLE(s): uint32 (or uint32 [n])."""
    if type(rleObjs) is list:
        b = _batch(rleObjs)
        return _ops.rle_area(b.counts, b.offsets, b.hw).numpy().view(np.uint32)
    return area([rleObjs])[0]


def toBbox(rleObjs):
    """Bounding box(es) xywh of RLE(s): float64 [4] (or [n, 4])."""
    if type(rleObjs) is list:
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
        if type(objs) is np.ndarray:
            if len(objs.shape) == 1:
                objs = objs.reshape((objs[0], 1))
            if not len(objs.shape) == 2 or not objs.shape[1] == 4:
                raise Exception("numpy ndarray input is only for *bounding boxes* and should have Nx4 dimension")
            return objs.astype(np.double)
        if type(objs) is list:
            isbox = np.all(
                np.array([(len(obj) == 4) and ((type(obj) is list) or (type(obj) is np.ndarray)) for obj in objs])
            )
            isrle = np.all(np.array([type(obj) is dict for obj in objs]))
            if isbox:
                objs = np.array(objs, dtype=np.double)
                if len(objs.shape) == 1:
                    objs = objs.reshape((1, objs.shape[0]))
                return objs
            if isrle:
                return _batch(objs)
            raise Exception("list input can be bounding box (Nx4) or RLEs ([RLE])")
        raise Exception(
            "unrecognized type.  The following type: RLEs (rle), np.ndarray (box), and list (box) are supported."
        )

    crowd = np.array(pyiscrowd, dtype=np.uint8).reshape(-1)
    dt = _preproc(dt)
    gt = _preproc(gt)
    m, n = len(dt), len(gt)
    assert len(pyiscrowd) == n, "iou(iscrowd=) must have the same length as gt"
    if m == 0 or n == 0:
        return []
    if type(dt) is not type(gt):
        raise Exception("The dt and gt should have the same data type, either RLEs, list or np.ndarray")
    if isinstance(dt, RleBatch):
        return _ops.rle_iou(
            dt.counts, dt.offsets, dt.hw, gt.counts, gt.offsets, gt.hw, torch.from_numpy(crowd != 0)
        ).numpy()
    return _box_iou(dt, gt, crowd != 0)


def frPyObjects(pyobj, h, w):
    """Polygons ([[x1, y1, x2, y2, ...], ...]), xywh boxes (float64 [n, 4] array) or uncompressed
    RLEs ({"size", "counts": list}) -> RLEs; a single polygon or uncompressed RLE -> one RLE. The
    input is read with pycocotools' own tests, in its order."""
    if type(pyobj) is np.ndarray:
        bb = pyobj
        if bb.ndim != 2 or bb.dtype != np.float64:
            raise ValueError("frPyObjects: a box array must be float64 with shape [n, 4]")
        return from_boxes(bb, h, w).to_objects()
    if type(pyobj) is list and len(pyobj[0]) == 4:
        raise TypeError("frPyObjects: boxes must be a float64 numpy array [n, 4] (as pycocotools requires)")
    if type(pyobj) is list and len(pyobj[0]) > 4:
        return from_polygon_lists(pyobj, h, w, merge_all=False).to_objects()
    if type(pyobj) is list and type(pyobj[0]) is dict and "counts" in pyobj[0] and "size" in pyobj[0]:
        return from_uncompressed(pyobj).to_objects()
    if type(pyobj) is list and len(pyobj) == 4:
        raise TypeError("frPyObjects: boxes must be a float64 numpy array [n, 4] (as pycocotools requires)")
    if type(pyobj) is list and len(pyobj) > 4:
        return from_polygon_lists([pyobj], h, w, merge_all=False).to_objects()[0]
    if type(pyobj) is dict and "counts" in pyobj and "size" in pyobj:
        return from_uncompressed([pyobj]).to_objects()[0]
    raise Exception("input type is not supported.")
