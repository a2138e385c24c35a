"""The cost of the public functions' Python layer: each eager call against the bare
``torch.ops.fastops`` call it makes, on inputs so small that the call overhead is the whole time.

The public functions check their arguments, re-raise the kernels' errors as torch's exception
types, record themselves under torch.fx and carry a TorchScript body (``fastops/ops/_jit.py``);
none of that may slow the eager path. Workload: 8 boxes, a 1 x 4 x 8 x 8 feature map with one RoI,
8 x 3 logits; each timing is a loop of calls, reported per call. Floor: the bare op call (the
public function can take no less); the reference is torchvision's function on the same inputs.
On large inputs the layer's fixed cost (microseconds) vanishes beside the kernel's: the ratios in
the other benchmarks are the kernels'.
"""

from __future__ import annotations

import torch
import torchvision.ops as tv
from common import Row, bench_main, time_ms

import fastops

NOTES = (
    "Per call, tiny inputs: fastops' public function, torchvision's function, and the bare "
    "torch.ops.fastops call the public function makes (the floor). x floor - 1 is the Python "
    "layer's share of a call."
)


def cases(device: str):
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(8, 4, generator=g) * 10
    boxes[:, 2:] += boxes[:, :2] + 1
    boxes = boxes.to(device)
    scores = torch.rand(8, generator=g).to(device)
    labels = torch.randint(0, 3, (8,), generator=g).to(device)
    feature = torch.rand(1, 4, 8, 8, generator=g).to(device)
    rois = torch.tensor([[0.0, 1.0, 1.0, 5.0, 5.0]], device=device)
    logits = torch.randn(8, 3, generator=g).to(device)
    targets = (torch.rand(8, 3, generator=g) < 0.3).float().to(device)
    ops = torch.ops.fastops
    return [
        (
            "nms",
            lambda: fastops.nms(boxes, scores, 0.5),
            lambda: tv.nms(boxes, scores, 0.5),
            lambda: ops.nms(boxes, scores, None, 0.5),
        ),
        (
            "batched_nms",
            lambda: fastops.batched_nms(boxes, scores, labels, 0.5),
            lambda: tv.batched_nms(boxes, scores, labels, 0.5),
            lambda: ops.nms(boxes, scores, labels, 0.5),
        ),
        (
            "box_iou",
            lambda: fastops.box_iou(boxes, boxes),
            lambda: tv.box_iou(boxes, boxes),
            lambda: ops.box_overlap(boxes, boxes, "iou", "xyxy", False, 1e-7, False),
        ),
        (
            "generalized_box_iou_loss",
            lambda: fastops.generalized_box_iou_loss(boxes, boxes),
            lambda: tv.generalized_box_iou_loss(boxes, boxes),
            lambda: 1 - ops.box_overlap(boxes, boxes, "giou", "xyxy", True, 1e-7, True),
        ),
        (
            "sigmoid_focal_loss",
            lambda: fastops.sigmoid_focal_loss(logits, targets),
            lambda: tv.sigmoid_focal_loss(logits, targets),
            lambda: ops.sigmoid_focal_loss(logits, targets, None, None, None, 0.25, 2.0, 0, 3, -100),
        ),
        (
            "roi_align",
            lambda: fastops.roi_align(feature, rois, 2),
            lambda: tv.roi_align(feature, rois, 2),
            lambda: ops.roi_align(feature, rois, 1.0, 2, 2, -1, False),
        ),
        (
            "roi_pool",
            lambda: fastops.roi_pool(feature, rois, 2),
            lambda: tv.roi_pool(feature, rois, 2),
            lambda: ops.roi_pool(feature, rois, 1.0, 2, 2),
        ),
    ]


def per_call_ms(fn, device: str, calls: int, repeat: int) -> float:
    def loop():
        for _ in range(calls):
            fn()

    return time_ms(loop, device, warmup=1, repeat=repeat) / calls


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    calls, repeat = (50, 5) if quick else (500, 15)
    rows = []
    for name, ours, theirs, bare in cases(device):
        ms = per_call_ms(ours, device, calls, repeat)
        ref_ms = per_call_ms(theirs, device, calls, repeat)
        floor = per_call_ms(bare, device, calls, repeat)
        rows.append(Row(f"{name}, one eager call, tiny input", ms, "torchvision", ref_ms, floor, "bare op call"))
    return rows


if __name__ == "__main__":
    bench_main("python_layer", __doc__, run, NOTES)
