"""Panoptic quality: fastops.metrics.panoptic_quality against the COCO panoptic API's algorithm in
Python (tests/reference/panoptic.py, numpy per image as pq_compute) and torchmetrics'
PanopticQuality, on the same generated set.

Workload: 500 images (quick: 50) of 256 x 256 pixels, 20 thing and 10 stuff categories; the
ground truth a grid of blocks (about 40 segments per image, a tenth void, some crowd regions);
the prediction the ground truth with shifted blocks, relabelled segments and noise. fastops
and the reference take the COCO form (segment-id maps and segment lists); torchmetrics its
(category, instance) tensors of the same images, without crowd regions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from common import Row, bench_main, time_ms

import fastops.metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference.panoptic import pq_compute

THINGS, STUFFS = list(range(1, 21)), list(range(21, 31))
CATEGORIES = [{"id": c, "isthing": int(c in THINGS)} for c in THINGS + STUFFS]


def generate(n: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        grid = 7
        cats = rng.choice(THINGS + STUFFS + [0], size=(grid, grid), p=[0.9 / 30] * 30 + [0.1])
        ids = np.arange(1, grid * grid + 1).reshape(grid, grid) * 7
        gt = np.kron(np.where(cats > 0, ids, 0), np.ones((size // grid + 1, size // grid + 1), np.int64))[:size, :size]
        pred = np.roll(gt, shift=int(rng.integers(-6, 7)), axis=int(rng.integers(0, 2)))
        pred = np.where(rng.random(pred.shape) < 0.02, 0, pred)
        gt_info = [
            {"id": int(i), "category_id": int(c), "iscrowd": int(c in THINGS and rng.random() < 0.05)}
            for i, c in zip(ids.ravel(), cats.ravel(), strict=True)
            if c > 0
        ]
        relabel = {s["id"]: (s["category_id"] if rng.random() < 0.9 else int(rng.choice(THINGS))) for s in gt_info}
        present = set(np.unique(pred).tolist())
        pred_info = [{"id": i, "category_id": c} for i, c in relabel.items() if i in present]
        images.append((gt, pred, gt_info, pred_info))
    return images


def to_torchmetrics(images):
    cat_maps = []
    for gt, pred, gt_info, pred_info in images:
        pair = []
        for m, info in ((pred, pred_info), (gt, gt_info)):
            lut = np.zeros(int(m.max()) + 1, dtype=np.int64)  # 0: no category, void
            for s in info:
                lut[s["id"]] = s["category_id"]
            cat = lut[m]
            inst = np.where(np.isin(cat, STUFFS), 0, m)
            pair.append(torch.from_numpy(np.stack([cat, inst], -1)))
        cat_maps.append(pair)
    return torch.stack([p for p, _ in cat_maps]), torch.stack([g for _, g in cat_maps])


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    n = 50 if quick else 500
    images = generate(n, 256)
    pred = [(torch.from_numpy(p), pi) for _, p, _, pi in images]
    gt = [(torch.from_numpy(g), gi) for g, _, gi, _ in images]
    ref_images = [
        (g, p, {s["id"]: (s["category_id"], s["iscrowd"]) for s in gi}, {s["id"]: s["category_id"] for s in pi})
        for g, p, gi, pi in images
    ]
    isthing = {c["id"]: bool(c["isthing"]) for c in CATEGORIES}
    ms = time_ms(lambda: fastops.metrics.panoptic_quality(pred, gt, CATEGORIES), "cpu", repeat=5)
    ref_ms = time_ms(lambda: pq_compute(ref_images, isthing), "cpu", warmup=0, repeat=1 if not quick else 2)
    rows = [Row(f"panoptic_quality {n} images 256x256, COCO form", ms, "pq_compute algorithm (numpy)", ref_ms)]
    try:
        from torchmetrics.detection import PanopticQuality
    except ImportError:
        return rows
    tm_pred, tm_gt = to_torchmetrics(images)
    tensor_pred = tm_pred[..., 0] * 1000 + tm_pred[..., 1]
    tensor_gt = tm_gt[..., 0] * 1000 + tm_gt[..., 1]
    cats = {c: c in THINGS for c in THINGS + STUFFS}
    ms = time_ms(
        lambda: fastops.metrics.panoptic_quality(tensor_pred, tensor_gt, cats, label_divisor=1000), "cpu", repeat=5
    )

    def torchmetrics_pq():
        metric = PanopticQuality(things=THINGS, stuffs=STUFFS, allow_unknown_preds_category=True)
        metric.update(tm_pred, tm_gt)
        return metric.compute()

    ref_ms = time_ms(torchmetrics_pq, "cpu", warmup=0, repeat=1 if not quick else 2)
    rows.append(Row(f"panoptic_quality {n} images 256x256, tensor form", ms, "torchmetrics PanopticQuality", ref_ms))
    return rows


NOTES = """fastops builds each image's (ground truth, prediction) pixel histogram in one pass over
the maps in C++ (images in parallel); the reference calls numpy's unique on the combined ids per
image, torchmetrics works on the batch with torch ops and Python dictionaries."""


if __name__ == "__main__":
    bench_main("panoptic", __doc__, run, NOTES)
