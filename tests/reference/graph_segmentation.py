"""Felzenszwalb-Huttenlocher graph segmentation (IJCV 2004, the authors' segment-image code)
without smoothing, written from the paper in numpy for selective search's tests.

The graph: each pixel joined to its right, lower, lower-right and upper-right neighbours, the
weight the Euclidean distance of their colours (float32, as the kernel computes it), edges visited
by increasing weight (ties in the listing order: pixel by pixel in raster order, those four
neighbours in that order). Two components join when the edge's weight is at most both sides'
internal difference plus k / |C| (Int(C) is the weight of the edge that last joined C, 0 for a
pixel); then, along the edges in the same order, components smaller than ``min_size`` join their
neighbour. The partition depends only on these set-level rules, not on the union-find's choices.
"""

import numpy as np


def edges(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, weight) of the 8-neighbour graph of image [C, H, W], sorted stably by weight."""
    c, h, w = image.shape
    values = image.reshape(c, h * w).astype(np.float32)
    a_list, b_list = [], []
    for y in range(h):
        for x in range(w):
            p = y * w + x
            for dx, dy, ok in ((1, 0, x + 1 < w), (0, 1, y + 1 < h), (1, 1, x + 1 < w and y + 1 < h)):
                if ok:
                    a_list.append(p)
                    b_list.append(p + dy * w + dx)
            if x + 1 < w and y > 0:
                a_list.append(p)
                b_list.append(p - w + 1)
    a, b = np.array(a_list, dtype=np.int64), np.array(b_list, dtype=np.int64)
    diff = values[:, a] - values[:, b]
    weight = np.sqrt((diff * diff).sum(axis=0, dtype=np.float32)).astype(np.float32)
    order = np.argsort(weight, kind="stable")
    return a[order], b[order], weight[order]


def segment(image: np.ndarray, k: float, min_size: int) -> np.ndarray:
    """Labels [H, W] of the partition (arbitrary region numbers)."""
    _, h, w = image.shape
    a, b, weight = edges(image)
    members = {p: {p} for p in range(h * w)}  # component id -> pixels
    component = np.arange(h * w)
    internal = {p: np.float32(0) for p in range(h * w)}

    def join(i: int, j: int) -> int:
        if len(members[i]) < len(members[j]):
            i, j = j, i
        for p in members[j]:
            component[p] = i
        members[i] |= members.pop(j)
        internal.pop(j)
        return i

    for p, q, wt in zip(a, b, weight):
        i, j = component[p], component[q]
        if i == j:
            continue
        ti = internal[i] + np.float32(k / len(members[i]))
        tj = internal[j] + np.float32(k / len(members[j]))
        if wt <= ti and wt <= tj:
            internal[join(i, j)] = wt
    for p, q in zip(a, b):
        i, j = component[p], component[q]
        if i != j and (len(members[i]) < min_size or len(members[j]) < min_size):
            join(i, j)
    return component.reshape(h, w)


def region_boxes(labels: np.ndarray) -> set[tuple[float, float, float, float]]:
    """Each region's bounding box (x1, y1, x2, y2) in pixel edges."""
    boxes = set()
    for region in np.unique(labels):
        ys, xs = np.nonzero(labels == region)
        boxes.add((float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))
    return boxes
