"""Selective search: fastops.selective_search against OpenCV contrib's
(cv2.ximgproc.segmentation, switchToSelectiveSearchFast / switchToSelectiveSearchQuality).

Workload: SyntheticShapes images (6 of 256 x 256 pixels; quick: 2 of 96 x 96), as uint8 RGB
(BGR for OpenCV), each mode. Time: the median over the images of each image's median time.
Quality: recall of the ground-truth boxes at IoU 0.5 among the first 500 and 2000 proposals of
each side's ranking, over the whole set (in the ``also`` column). The two sides use their own
strategy lists (fastops: the paper's Table 5; OpenCV: its k = 150.. thresholds), so the
proposal counts differ; recall at a fixed count is the comparison that matters.
"""

from __future__ import annotations

import statistics

import numpy as np
import torch
from common import Row, bench_main, time_ms

import fastops
from fastops.data import SyntheticShapes


def opencv_search(cv2, bgr: np.ndarray, mode: str) -> np.ndarray:
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    ss.switchToSelectiveSearchFast() if mode == "fast" else ss.switchToSelectiveSearchQuality()
    return np.asarray(ss.process()).reshape(-1, 4)


def xywh_to_xyxy(rects: np.ndarray) -> torch.Tensor:
    r = torch.as_tensor(rects, dtype=torch.float32).reshape(-1, 4)
    return torch.cat([r[:, :2], r[:, :2] + r[:, 2:]], dim=1)


def recall(proposals: list[torch.Tensor], gts: list[torch.Tensor], count: int) -> float:
    hit = total = 0
    for boxes, gt in zip(proposals, gts):
        total += gt.shape[0]
        if gt.shape[0] and boxes.shape[0]:
            hit += int((fastops.box_iou(gt, boxes[:count]).max(dim=1).values >= 0.5).sum())
    return hit / max(total, 1)


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    try:
        import cv2
    except ImportError:
        cv2 = None
    num, size = (2, 96) if quick else (6, 256)
    repeat = 1 if quick else 3
    dataset = SyntheticShapes(num, size, seed=0, max_objects=9)
    images, gts = [], []
    for i in range(num):
        image, target = dataset[i]
        images.append((image * 255).round().to(torch.uint8))
        gts.append(target["boxes"])
    rows: list[Row] = []
    for mode in ("fast", "quality"):
        ours = [fastops.selective_search(img.to(device), mode).cpu() for img in images]
        ms = statistics.median(
            time_ms(
                lambda img=img: fastops.selective_search(img, mode), device, warmup=0 if quick else 1, repeat=repeat
            )
            for img in (i.to(device) for i in images)
        )
        extra = {f"recall@{n}": round(recall(ours, gts, n), 3) for n in (500, 2000)}
        extra["proposals"] = int(statistics.median(b.shape[0] for b in ours))
        ref, ref_ms = "OpenCV (not installed)", None
        if cv2 is not None and hasattr(cv2, "ximgproc"):
            bgrs = [np.ascontiguousarray(img.permute(1, 2, 0).numpy()[:, :, ::-1]) for img in images]
            theirs = [xywh_to_xyxy(opencv_search(cv2, bgr, mode)) for bgr in bgrs]
            ref_ms = statistics.median(
                time_ms(lambda bgr=bgr: opencv_search(cv2, bgr, mode), "cpu", warmup=0, repeat=repeat) for bgr in bgrs
            )
            ref = f"OpenCV switchToSelectiveSearch{mode.capitalize()}"
            extra.update({f"opencv_recall@{n}": round(recall(theirs, gts, n), 3) for n in (500, 2000)})
            extra["opencv_proposals"] = int(statistics.median(b.shape[0] for b in theirs))
        rows.append(Row(f"selective_search {mode}, {size} x {size}, per image", ms, ref, ref_ms, extra=extra))
    return rows


NOTES = """Both sides run on the CPU (a CUDA image is computed on the host: its time includes the
copies). fastops runs its strategies in parallel on torch's threads; OpenCV's process() loops over
its strategies in order (its image functions may use OpenCV's own threads)."""


if __name__ == "__main__":
    bench_main("selective_search", __doc__, run, NOTES)
