"""NMS family: fastops against torchvision (and plain torch where torchvision has no such op).

Workloads: nms on N = 1k, 5k, 20k random boxes (800 x 800 image, sides 4 to 204
px, IoU threshold 0.5); batched_nms on N = 20k over 80 classes; multiclass post-processing on
RetinaNet-sized outputs (B = 2, 120k anchors x 80 classes, score threshold 0.05, top-k 1000, 100
detections) against torchvision's RetinaNet post-processing; soft-NMS and Matrix NMS on 1k boxes.
Floor: every exact NMS sorts the scores first, so the time of torch's sort of N scores (measured
here) bounds it from below; the greedy pass then costs O(N x kept) IoU tests.
"""

from __future__ import annotations

import torch
import torchvision.ops as tv
from common import Row, bandwidth_gbs, bench_main, time_ms

import fastops


def random_boxes(n: int, device: str, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * 800
    wh = torch.rand(n, 2, generator=g) * 200 + 4
    return torch.cat([xy, xy + wh], dim=1).to(device)


def torchvision_retinanet_postprocess(boxes, scores, score_thresh=0.05, topk=1000, nms_thresh=0.5, detections=100):
    """torchvision's RetinaNet.postprocess_detections, for one level of already decoded boxes."""
    num_classes = scores.shape[-1]
    out = []
    for b in range(scores.shape[0]):
        flat = scores[b].flatten()
        keep_idxs = flat > score_thresh
        cand = flat[keep_idxs]
        topk_idxs = torch.where(keep_idxs)[0]
        num = min(topk, topk_idxs.size(0))
        cand, idxs = cand.topk(num)
        topk_idxs = topk_idxs[idxs]
        anchors = torch.div(topk_idxs, num_classes, rounding_mode="floor")
        labels = topk_idxs % num_classes
        cand_boxes = boxes[b, anchors]
        keep = tv.batched_nms(cand_boxes, cand, labels, nms_thresh)[:detections]
        out.append((cand_boxes[keep], cand[keep], labels[keep]))
    return out


def matrix_nms_torch(boxes, scores, sigma=2.0):
    """mmdet's mask_matrix_nms formula written with torch ops, for boxes (gaussian kernel)."""
    order = scores.argsort(descending=True)
    b, s = boxes[order], scores[order]
    iou = tv.box_iou(b, b).triu(diagonal=1)
    comp = iou.max(0).values.expand(len(s), len(s)).t()
    decay = (torch.exp(-sigma * iou**2) / torch.exp(-sigma * comp**2)).min(0).values
    return order, s * decay


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    g = torch.Generator().manual_seed(0)
    repeat = 5 if quick else 15
    sizes = [1000, 5000] if quick else [1000, 5000, 20000]
    for n in sizes:
        boxes, scores = random_boxes(n, device, g), torch.rand(n, generator=g).to(device)
        floor = time_ms(lambda: scores.sort(descending=True, stable=True), device, repeat=repeat)
        ms = time_ms(lambda: fastops.nms(boxes, scores, 0.5), device, repeat=repeat)
        ref_ms = time_ms(lambda: tv.nms(boxes, scores, 0.5), device, repeat=3 if n >= 20000 else 7, warmup=1)
        kept = len(fastops.nms(boxes, scores, 0.5))
        rows.append(Row(f"nms {n // 1000}k (kept {kept})", ms, "torchvision.ops.nms", ref_ms, floor, "sort N scores"))

    n = 20000
    boxes, scores = random_boxes(n, device, g), torch.rand(n, generator=g).to(device)
    idxs = torch.randint(0, 80, (n,), generator=g).to(device)
    floor = time_ms(lambda: scores.sort(descending=True, stable=True), device, repeat=repeat)
    ms = time_ms(lambda: fastops.batched_nms(boxes, scores, idxs, 0.5), device, repeat=repeat)
    ref_ms = time_ms(lambda: tv.batched_nms(boxes, scores, idxs, 0.5), device, repeat=7)
    rows.append(Row("batched_nms 20k, 80 classes", ms, "torchvision.ops.batched_nms", ref_ms, floor, "sort N scores"))

    b, anchors, classes = 2, (30000 if quick else 120000), 80
    boxes = random_boxes(b * anchors, device, g).reshape(b, anchors, 4)
    scores = torch.sigmoid(torch.randn(b, anchors, classes, generator=g) * 1.5 - 5.0).to(device)  # ~8% above 0.05
    score_bytes = scores.numel() * scores.element_size()
    read_ms = score_bytes / (bandwidth_gbs(device, score_bytes, "copy") * 1e9) * 1e3
    ms = time_ms(lambda: fastops.multiclass_nms(scores=scores, boxes=boxes), device, repeat=repeat)
    ref_ms = time_ms(lambda: torchvision_retinanet_postprocess(boxes, scores), device, repeat=5)
    rows.append(
        Row(
            f"multiclass_nms B=2, {anchors // 1000}k x 80",
            ms,
            "torchvision RetinaNet postprocess",
            ref_ms,
            read_ms,
            "read the scores once",
        )
    )

    n = 1000
    boxes, scores = random_boxes(n, device, g), torch.rand(n, generator=g).to(device)
    for method in ("linear", "gaussian"):
        ms = time_ms(lambda: fastops.soft_nms(boxes, scores, method=method), device, repeat=repeat)
        rows.append(Row(f"soft_nms {method} 1k", ms, "-", None))
    ms = time_ms(lambda: fastops.matrix_nms(boxes, scores), device, repeat=repeat)
    ref_ms = time_ms(lambda: matrix_nms_torch(boxes, scores), device, repeat=repeat)
    rows.append(Row("matrix_nms gaussian 1k", ms, "torch eager (mmdet formula)", ref_ms))
    return rows


NOTES = """Random boxes of sides 4-204 px in an 800 x 800 image overlap a lot, so a large share is
kept (the case label says how many): the greedy pass is O(N x kept) IoU tests, vectorized and
blocked (csrc/nms/nms_cpu_kernel.cpp). torchvision's batched_nms above 4000 boxes loops over
classes in Python; below, it offsets coordinates."""


if __name__ == "__main__":
    bench_main("nms", __doc__, run, NOTES)
