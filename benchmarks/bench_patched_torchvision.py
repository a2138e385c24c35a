"""torchvision's detectors with fastops.patch_torchvision() against themselves unpatched.

Workload: torchvision's own RetinaNet, Faster R-CNN and Mask R-CNN (ResNet-50 FPN builders, random
weights, 91 classes), two 480x640 images: inference (eval, every candidate kept: score thresholds
0, as a trained model keeps thousands of candidates for its NMS) and one training step (forward
and backward with three boxes and masks per image). The same model weights and inputs patched and
unpatched; the RPN's and RoI heads' samplers reseeded before each call. Timings alternate
unpatched and patched calls after an untimed call of each. No floor: most of the time is the
backbone's convolutions, which the patch does not touch; the speedup is the detection ops' share.
--quick: ResNet-18 FPN models on 128x160 images, two repeats.
"""

from __future__ import annotations

import statistics
import time

import torch
import torchvision
from common import Row, bench_main, synchronize
from torchvision.models import detection as tvdet

import fastops

NOTES = (
    "Patched: fastops.patch_torchvision() before building the model, so its RoI modules, box IoU, "
    "NMS, RoIAlign (mask targets) and focal loss are fastops'; unpatched: torchvision's. Same weights "
    "and inputs. The backbone (convolutions) is torch's in both."
)

SIZES = {"full": (480, 640), "quick": (128, 160)}


def build(kind: str, quick: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    h, w = SIZES["quick" if quick else "full"]
    thresholds = dict(score_thresh=0.0) if kind == "retinanet" else dict(box_score_thresh=0.0)
    kwargs = dict(num_classes=91, min_size=h, max_size=w, **thresholds)
    if not quick:
        builder = {
            "retinanet": tvdet.retinanet_resnet50_fpn,
            "faster_rcnn": tvdet.fasterrcnn_resnet50_fpn,
            "mask_rcnn": tvdet.maskrcnn_resnet50_fpn,
        }[kind]
        return builder(weights=None, weights_backbone=None, **kwargs)
    fpn = dict(backbone_name="resnet18", weights=None, trainable_layers=5)
    if kind == "retinanet":
        extra = torchvision.ops.feature_pyramid_network.LastLevelP6P7(256, 256)
        backbone = tvdet.backbone_utils.resnet_fpn_backbone(**fpn, returned_layers=[2, 3, 4], extra_blocks=extra)
        return tvdet.RetinaNet(backbone, **kwargs)
    backbone = tvdet.backbone_utils.resnet_fpn_backbone(**fpn)
    return (tvdet.FasterRCNN if kind == "faster_rcnn" else tvdet.MaskRCNN)(backbone, **kwargs)


def inputs(quick: bool):
    h, w = SIZES["quick" if quick else "full"]
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, h, w, generator=g), torch.rand(3, h - h // 8, w - w // 8, generator=g)]
    targets = []
    for image in images:
        ih, iw = image.shape[1:]
        boxes = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.8], [0.2, 0.5, 0.6, 0.95]])
        boxes = boxes * torch.tensor([iw, ih, iw, ih])
        masks = torch.zeros(3, ih, iw, dtype=torch.uint8)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
            m[y1:y2, x1:x2] = 1
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 5, 17]), "masks": masks})
    return images, targets


def paired_ms(unpatched, patched, repeat: int) -> tuple[float, float]:
    """Median ms of each callable, alternating them, each called once untimed first. `patched`
    runs with torchvision patched, `unpatched` without."""

    def timed(fn, patch: bool) -> float:
        if patch:
            fastops.patch_torchvision()
        try:
            start = time.perf_counter()
            fn()
            synchronize("cpu")
            return (time.perf_counter() - start) * 1e3
        finally:
            if patch:
                fastops.unpatch_torchvision()

    timed(unpatched, False)
    timed(patched, True)
    u, p = [], []
    for _ in range(repeat):
        u.append(timed(unpatched, False))
        p.append(timed(patched, True))
    return statistics.median(u), statistics.median(p)


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    images, targets = inputs(quick)
    images = [i.to(device) for i in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    repeat = 2 if quick else 5
    for kind in ("retinanet", "faster_rcnn", "mask_rcnn"):
        reference = build(kind, quick).to(device)
        with fastops.patch_torchvision():
            model = build(kind, quick).to(device)
        model.load_state_dict(reference.state_dict())

        def infer(m):
            m.eval()
            with torch.no_grad():
                m(images)

        def train_step(m):
            m.train()
            m.zero_grad(set_to_none=True)
            torch.manual_seed(5)
            losses = m(images, targets)
            sum(losses.values()).backward()

        size = "x".join(str(s) for s in SIZES["quick" if quick else "full"])
        for what, step in (("inference", infer), ("training step", train_step)):
            ref_ms, ms = paired_ms(lambda: step(reference), lambda: step(model), repeat)
            rows.append(Row(f"{kind} {what}, 2 images {size}", ms, "torchvision unpatched", ref_ms))
    return rows


if __name__ == "__main__":
    bench_main("patched_torchvision", __doc__, run, NOTES)
