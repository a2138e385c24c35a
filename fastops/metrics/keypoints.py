"""Object keypoint similarity of every (category, image) group, as COCOeval.computeOks computes it
(csrc/coco_eval/oks_cpu.cpp for the exponents and numpy's pairwise sum, numpy's own exp between:
pycocotools' bits on any CPU).

computeOks, per (detection, ground truth) pair: with ``vars = (sigmas * 2) ** 2`` and the GT's
keypoints (x, y, v), ``e = (dx**2 + dy**2) / vars / (area + np.spacing(1)) / 2`` where dx, dy are
the distances to the GT keypoints when any is visible (v > 0; only those count), else the distances
outside the GT box doubled around it; OKS = ``np.sum(np.exp(-e)) / len(e)``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .grouping import Groups

__all__ = ["SIGMAS", "grouped_oks"]

# Params.kpt_oks_sigmas: the 17 COCO person keypoints
SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def grouped_oks(gt_cols, g: Groups, dt_cols, d: Groups, sigmas) -> tuple[torch.Tensor, torch.Tensor]:
    """(ious, iou_offsets) for coco_evaluate: group p's OKS [n_dt, n_gt] row-major in load order."""
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    kpt_vars = (sigmas * 2) ** 2
    gk, gk_off = gt_cols.keypoints()
    dk, dk_off = dt_cols.keypoints()
    # the GT boxes are read only for a GT without a visible keypoint (computeOks reads every GT's)
    gt_box = gt_cols.bbox() if len(g.rows) else np.zeros((gt_cols.n, 4))
    terms, term_offsets, iou_offsets = torch.ops.fastops.coco_oks_terms(
        _t(gk),
        _t(gk_off),
        _t(np.asarray(gt_box, np.float64).reshape(-1, 4)),
        _t(gt_cols.area()),
        g.rows,
        g.offsets,
        _t(dk),
        _t(dk_off),
        d.rows,
        d.offsets,
        _t(kpt_vars),
    )
    _negative_exp(terms.numpy())
    return torch.ops.fastops.coco_oks_reduce(terms, term_offsets), iou_offsets


def _negative_exp(a: np.ndarray, min_part: int = 1 << 17) -> None:
    """a = np.exp(-a) in place, in parts on torch's thread count: numpy's exp releases the GIL and
    computes each element alone, so the parts give the bits of one call."""

    def part(lo: int, hi: int) -> None:
        with np.errstate(over="ignore", under="ignore"):  # numpy's error state is per thread
            s = a[lo:hi]
            np.negative(s, out=s)
            np.exp(s, out=s)

    parts = max(1, min(torch.get_num_threads(), a.size // min_part))
    bounds = [a.size * i // parts for i in range(parts + 1)]
    if parts == 1:
        part(0, a.size)
        return
    with ThreadPoolExecutor(parts - 1) as pool:
        done = [pool.submit(part, bounds[i], bounds[i + 1]) for i in range(1, parts)]
        part(bounds[0], bounds[1])
        for f in done:
            f.result()


def no_ious(g: Groups, d: Groups) -> tuple[torch.Tensor, torch.Tensor]:
    """IoUs that match nothing (pycocotools' computeOks with useCats=0 looks up category -1: no
    pairs, so no detection matches)."""
    ng = (g.offsets[1:] - g.offsets[:-1]).numpy()
    nd = (d.offsets[1:] - d.offsets[:-1]).numpy()
    offsets = np.zeros(len(ng) + 1, np.int64)
    np.cumsum(ng * nd, out=offsets[1:])
    return torch.full((int(offsets[-1]),), -np.inf, dtype=torch.float64), _t(offsets)
