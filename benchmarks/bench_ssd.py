"""SSD300 (VGG-16): fastops' ``ssd300_vgg16`` against torchvision's, same weights (torchvision's
random initialization, 91 classes, loaded into ours with strict=True), same images, same process.

Images: four 480 x 640 images (--quick: two), resized by both to 300 x 300. Rows:
- inference (eval mode, no_grad), with a check that both give the same detections;
- inference with channels_last (both models converted; "also" gives torchvision's time in it);
- the inference's stages: transform, backbone (VGG-16, fc6/fc7 and the extra blocks), head,
  post-processing (softmax, per-class top-k, decode, NMS), mapping back;
- one training step (forward and backward with two boxes per image), and its loss alone on the
  same head outputs (matching, box coding, hard negative mining).
"""

from __future__ import annotations

import torch
from bench_models import (
    channels_last_inference_row,
    images_and_targets,
    inference_call,
    same_detections,
    time_stages,
    torch_convolutions,
    train_step,
)
from common import Row, bench_main, time_ms
from torchvision.models import detection as tvd
from torchvision.ops import box_iou

from fastops.models.detection import ssd300_vgg16


def _stages(model, images, ours: bool) -> dict:
    state = {}

    def transform():
        state["b"] = model.transform(images, training=False)[0] if ours else model.transform(images)[0]

    def backbone():
        state["f"] = list(model.backbone(state["b"].tensors).values())

    def head():
        state["h"] = model.head(state["f"])
        state["a"] = (
            model.anchor_generator(state["b"].tensors.shape[-2:], state["f"])
            if ours
            else model.anchor_generator(state["b"], state["f"])
        )

    def post():
        state["d"] = model.postprocess_detections(state["h"], state["a"], state["b"].image_sizes)

    def back():
        original = [tuple(img.shape[-2:]) for img in images]
        model.transform.postprocess([dict(d) for d in state["d"]], state["b"].image_sizes, original)

    return {"transform": transform, "backbone": backbone, "head": head, "post-processing": post, "map back": back}


def _loss_only(model, images, targets, ours: bool):
    """A callable computing the losses on fixed head outputs (no backbone)."""
    batch, resized = (
        model.transform(images, [dict(t) for t in targets], training=True)
        if ours
        else model.transform(images, [dict(t) for t in targets])
    )
    with torch.no_grad():
        features = list(model.backbone(batch.tensors).values())
        outputs = model.head(features)
    outputs = {k: v.clone().requires_grad_() for k, v in outputs.items()}
    if ours:
        anchors = model.anchor_generator(batch.tensors.shape[-2:], features)
        return lambda: sum(model.loss_from_outputs(outputs, anchors, resized).values()).backward()
    anchors = model.anchor_generator(batch, features)

    def call():
        matched = [model.proposal_matcher(box_iou(t["boxes"], a)) for t, a in zip(resized, anchors)]
        sum(model.compute_loss(resized, outputs, anchors, matched).values()).backward()

    return call


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    num_images = 2 if quick else 4
    repeat = 1 if quick else 5
    torch.manual_seed(0)
    theirs = tvd.ssd300_vgg16(weights=None, weights_backbone=None)
    ours = ssd300_vgg16(weights=theirs.state_dict(), trainable_backbone_layers=5)
    theirs.to(device).eval()
    ours.to(device).eval()
    images, targets = images_and_targets((480, 640), masks=False)
    images = [img.to(device) for img in (images * 2)[:num_images]]
    targets = [{k: v.to(device) for k, v in t.items()} for t in (targets * 2)[:num_images]]
    what = f"ssd300_vgg16 {num_images} x 480x640"

    with torch.no_grad(), torch_convolutions(ours):
        same = same_detections(ours(images), theirs(images))
    ms = time_ms(inference_call(ours, images), device, warmup=1, repeat=repeat)
    ref = time_ms(inference_call(theirs, images), device, warmup=1, repeat=repeat)
    rows.append(Row(f"{what} inference", ms, "torchvision", ref, extra={"same": same}))

    stages_ours = time_stages(_stages(ours, images, True), repeat)
    stages_theirs = time_stages(_stages(theirs, images, False), repeat)
    for name in stages_ours:
        rows.append(Row(f"  ssd stage: {name}", stages_ours[name], "torchvision", stages_theirs[name]))

    label = f"{what} inference (channels_last)"
    rows.append(channels_last_inference_row(label, ours, theirs, images, ref, device, repeat))

    ours.train()
    theirs.train()
    ms = time_ms(_loss_only(ours, images, targets, True), device, warmup=1, repeat=repeat)
    ref = time_ms(_loss_only(theirs, images, targets, False), device, warmup=1, repeat=repeat)
    rows.append(Row("  ssd loss on given head outputs (forward + backward)", ms, "torchvision", ref))
    ms = time_ms(train_step(ours, images, targets), device, warmup=1, repeat=repeat)
    ref = time_ms(train_step(theirs, images, targets), device, warmup=1, repeat=repeat)
    rows.append(Row(f"{what} training step (forward + backward)", ms, "torchvision", ref))
    return rows


NOTES = """Where the time goes: the VGG-16 backbone (same convolutions in both, torch's or ours by
the autotuned path) is most of inference and of the training step. Post-processing is where SSD
differs most: torchvision loops over the 90 classes per image (a boolean mask and a top-k each,
decoding all 8732 boxes), ours does one top-k over every (image, class) row, decodes only the
candidates and runs one batched NMS for the batch. The loss: one top-k for the hard negatives
instead of two full sorts of every image's 8732 losses, and fastops' fused softmax cross-entropy."""

if __name__ == "__main__":
    bench_main("ssd", __doc__, run, NOTES)
