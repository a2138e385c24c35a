"""Detectors: fastops' RetinaNet, Faster R-CNN and Mask R-CNN (ResNet-50 FPN) against torchvision's,
same configuration, same weights, same images, same process.

Configuration: torchvision's trained one (frozen batch norm, 3 trainable backbone stages, as its
builders make it from COCO or ImageNet weights), 91 classes, random weights under which detections
exist (batch-norm statistics of order 1, spread classification logits), the same state_dict loaded
into both. Images: two 480 x 640 images, which torchvision's default transform (min_size 800,
max_size 1333) resizes to 800 x 1066 and pads to 800 x 1088. --quick: two 96 x 128 images with
min_size 128 / max_size 171, one timed call each.

Rows, per model:
- inference (eval mode, no_grad), fastops as built: frozen batch norm folded into the convolution
  before it (one convolution with a bias: how our FrozenBatchNorm2d computes, in every mode);
- inference with channels_last (``model.to(memory_format=torch.channels_last)``), an inference-only
  rewrite; the "also" column gives torchvision's time with the same rewrite;
- one training step (forward and backward on two images with targets, NCHW);
- the inference's stages (transform, backbone body, FPN, RPN or head, RoI heads or post-processing,
  mapping back with mask pasting), each stage's time in both.
Each inference row checks that both give the same detections (count, labels, boxes to 1e-2 pixel),
ours with torch's convolutions for that check (``torch_convolutions``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
import torchvision
from common import Row, bench_main, time_ms
from torchvision.models import detection as tvd
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

import fastops.nn
from fastops.models.detection import (
    fasterrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn,
    randomize_for_detections,
    retinanet_resnet50_fpn,
)

BUILDERS = {
    "retinanet": retinanet_resnet50_fpn,
    "fasterrcnn": fasterrcnn_resnet50_fpn,
    "maskrcnn": maskrcnn_resnet50_fpn,
}


def torchvision_model(kind: str, **kwargs):
    body = torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d)
    if kind == "retinanet":
        backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
        return tvd.RetinaNet(backbone, 91, **kwargs)
    backbone = _resnet_fpn_extractor(body, 3)
    return {"fasterrcnn": tvd.FasterRCNN, "maskrcnn": tvd.MaskRCNN}[kind](backbone, 91, **kwargs)


def images_and_targets(size: tuple[int, int], masks: bool):
    g = torch.Generator().manual_seed(1)
    h, w = size
    images, targets = [], []
    for _ in range(2):
        image = torch.rand(3, h, w, generator=g) * 0.2
        boxes = torch.tensor([[w * 0.1, h * 0.2, w * 0.5, h * 0.7], [w * 0.55, h * 0.1, w * 0.9, h * 0.5]])
        for x0, y0, x1, y1 in boxes.int().tolist():
            image[:, y0:y1, x0:x1] += 0.6
        target = {"boxes": boxes, "labels": torch.tensor([1, 2])}
        if masks:
            m = torch.zeros(2, h, w, dtype=torch.uint8)
            for i, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
                m[i, y0:y1, x0:x1] = 1
            target["masks"] = m
        images.append(image)
        targets.append(target)
    return images, targets


@contextlib.contextmanager
def torch_convolutions(model):
    """``model``'s fastops convolution modules on torch's kernels (``path="torch"``) inside the block.

    The detection check runs under it: with random weights many scores saturate near 0.996, and a
    last-bit difference of a convolution's sum (our kernels' against oneDNN's, where ``"auto"``
    measured ours faster) reorders near-tied scores, so NMS keeps a neighbouring anchor's box
    instead (seen at 480x640: 11 of 300 RetinaNet detections, one anchor stride apart). The timed
    calls run ``"auto"``."""
    convs = [m for m in model.modules() if isinstance(m, fastops.nn.Conv2d | fastops.nn.ConvTranspose2d)]
    paths = [m.path for m in convs]
    for m in convs:
        m.path = "torch"
    try:
        yield model
    finally:
        for m, path in zip(convs, paths):
            m.path = path


def same_detections(a: list[dict], b: list[dict]) -> bool:
    """Equal counts and labels, boxes within 1e-2 pixel, compared in score order."""
    for x, y in zip(a, b):
        if x["boxes"].shape != y["boxes"].shape:
            return False
        if x["boxes"].numel() == 0:
            continue
        ox, oy = torch.sort(x["scores"], stable=True).indices, torch.sort(y["scores"], stable=True).indices
        if not torch.equal(x["labels"][ox].sort().values, y["labels"][oy].sort().values):
            return False
        err = (x["boxes"][:, None] - y["boxes"][None]).abs().amax(-1).min(dim=1).values
        if float(err.max()) > 1e-2:
            return False
    return True


def _stages_ours(model, images) -> dict[str, Callable[[], object]]:
    """Timed stages of our model's inference, each fed by the previous one's output."""
    state = {}

    def transform():
        state["batch"], _ = model.transform(images, training=False)

    def body():
        state["c"] = model.backbone.body(state["batch"].tensors)

    def fpn():
        state["f"] = model.backbone.fpn(state["c"])

    stages = {"transform": transform, "backbone body": body, "fpn": fpn}
    batch_size = lambda: state["batch"].tensors.shape[-2:]
    if hasattr(model, "rpn"):

        def rpn():
            levels, sizes = list(state["f"].values()), state["batch"].image_sizes
            state["p"], _ = model.rpn(levels, batch_size(), sizes, training=False)

        def roi_heads():
            state["d"], _ = model.roi_heads(state["f"], state["p"], state["batch"].image_sizes, training=False)

        stages |= {"rpn": rpn, "roi heads (+ masks)": roi_heads}
    else:

        def head():
            levels = list(state["f"].values())
            state["h"] = model.head(levels)
            state["a"] = model.anchor_generator(batch_size(), levels)
            state["n"] = model.anchor_generator.num_anchors_per_level(levels)

        def post():
            state["d"] = model.postprocess_detections(state["h"], state["a"], state["n"], state["batch"].image_sizes)

        stages |= {"head": head, "detections (top-k, decode, nms)": post}

    def back():
        original = [tuple(img.shape[-2:]) for img in images]
        model.transform.postprocess([dict(d) for d in state["d"]], state["batch"].image_sizes, original)

    stages["map back (+ paste masks)"] = back
    return stages


def _stages_torchvision(model, images) -> dict[str, Callable[[], object]]:
    state = {}

    def transform():
        state["il"], _ = model.transform(images)

    def body():
        state["c"] = model.backbone.body(state["il"].tensors)

    def fpn():
        state["f"] = model.backbone.fpn(state["c"])

    stages = {"transform": transform, "backbone body": body, "fpn": fpn}
    if hasattr(model, "rpn"):

        def rpn():
            state["p"], _ = model.rpn(state["il"], state["f"])

        def roi_heads():
            state["d"], _ = model.roi_heads(state["f"], state["p"], state["il"].image_sizes)

        stages |= {"rpn": rpn, "roi heads (+ masks)": roi_heads}
    else:

        def head():
            levels = list(state["f"].values())
            state["h"] = model.head(levels)
            state["a"] = model.anchor_generator(state["il"], levels)
            state["levels"] = levels

        def post():
            levels, h = state["levels"], state["h"]
            hw = sum(x.shape[2] * x.shape[3] for x in levels)
            a = h["cls_logits"].shape[1] // hw
            split = [x.shape[2] * x.shape[3] * a for x in levels]
            outputs = {k: list(v.split(split, dim=1)) for k, v in h.items()}
            anchors = [list(x.split(split)) for x in state["a"]]
            state["d"] = model.postprocess_detections(outputs, anchors, state["il"].image_sizes)

        stages |= {"head": head, "detections (top-k, decode, nms)": post}

    def back():
        original = [tuple(img.shape[-2:]) for img in images]
        model.transform.postprocess([dict(d) for d in state["d"]], state["il"].image_sizes, original)

    stages["map back (+ paste masks)"] = back
    return stages


def channels_last_inference_row(label, ours, theirs, images, ref_ms, device, repeat) -> Row:
    """Both models converted to channels_last for one inference row, then back. The row's reference is
    torchvision's default (NCHW) time ``ref_ms``; its time in channels_last goes in the row's extra."""
    ours.to(memory_format=torch.channels_last)
    theirs.to(memory_format=torch.channels_last)
    try:
        with torch.no_grad(), torch_convolutions(ours):
            same = same_detections(ours(images), theirs(images))
        ms = time_ms(inference_call(ours, images), device, warmup=1, repeat=repeat)
        ref_cl = time_ms(inference_call(theirs, images), device, warmup=1, repeat=repeat)
    finally:
        ours.to(memory_format=torch.contiguous_format)
        theirs.to(memory_format=torch.contiguous_format)
    extra = {"same": same, "torchvision_channels_last_ms": round(ref_cl, 1)}
    return Row(label, ms, "torchvision", ref_ms, extra=extra)


def inference_call(model, images):
    """A no-argument callable running ``model(images)`` without autograd, for time_ms."""

    def call():
        with torch.no_grad():
            return model(images)

    return call


def time_stages(stages: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    best = {k: float("inf") for k in stages}
    with torch.no_grad():
        for _ in range(repeat):
            for name, fn in stages.items():
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], (time.perf_counter() - t0) * 1e3)
    return best


def train_step(model, images, targets):
    def step():
        losses = model(images, targets)
        sum(losses.values()).backward()
        model.zero_grad(set_to_none=True)

    return step


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    size = (96, 128) if quick else (480, 640)
    transform = {"min_size": 128, "max_size": 171} if quick else {}
    repeat = 1 if quick else 5
    for kind, builder in BUILDERS.items():
        torch.manual_seed(0)
        theirs = torchvision_model(kind, **transform)
        state = randomize_for_detections(theirs.state_dict())
        theirs.load_state_dict(state)
        ours = builder(weights=state, **transform)
        theirs.to(device).eval()
        ours.to(device).eval()
        images, targets = images_and_targets(size, masks=kind == "maskrcnn")
        images = [img.to(device) for img in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        what = f"{kind} 2 x {size[0]}x{size[1]}"

        with torch.no_grad(), torch_convolutions(ours):
            same = same_detections(ours(images), theirs(images))
        ms = time_ms(inference_call(ours, images), device, warmup=1, repeat=repeat)
        ref = time_ms(inference_call(theirs, images), device, warmup=1, repeat=repeat)
        rows.append(Row(f"{what} inference (frozen BN folded)", ms, "torchvision", ref, extra={"same": same}))

        stages_ours = time_stages(_stages_ours(ours, images), repeat)
        stages_theirs = time_stages(_stages_torchvision(theirs, images), repeat)
        for name in stages_ours:
            rows.append(Row(f"  {kind} stage: {name}", stages_ours[name], "torchvision", stages_theirs[name]))

        label = f"{what} inference (frozen BN folded, channels_last)"
        rows.append(channels_last_inference_row(label, ours, theirs, images, ref, device, repeat))

        ours.train()
        theirs.train()
        ms = time_ms(train_step(ours, images, targets), device, warmup=1, repeat=repeat)
        ref = time_ms(train_step(theirs, images, targets), device, warmup=1, repeat=repeat)
        rows.append(Row(f"{what} training step (forward + backward)", ms, "torchvision", ref))
    return rows


NOTES = """Stages: each stage is timed on the previous stage's output (best of the repeats), so the
stage times add up to about the inference time. Where the time goes and what differs: the backbone
body (our frozen batch norm is folded into the convolutions: one convolution with a bias instead
of a convolution, a multiplication and an addition over every activation), the RoI heads (fastops'
multi-level RoIAlign in one threaded op instead of torchvision's single-threaded per-level calls),
NMS (one fastops batched_nms for every image and class), the training step (the fused focal loss,
RoIAlign's threaded backward, no batch-norm passes backward). Convolutions are the same oneDNN
calls in both and are most of the time."""

if __name__ == "__main__":
    bench_main("models", __doc__, run, NOTES)
