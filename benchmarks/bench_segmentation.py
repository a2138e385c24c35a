"""Segmentation models against torchvision's (same weights, same inputs, same process), float32:
DeepLabV3-ResNet50 and FCN-ResNet50 inference (eval mode, no autograd, no auxiliary head) and a
training step (train mode, auxiliary head, cross-entropy on "out" plus 0.5 x on "aux", backward,
SGD step) on two 513x513 images and on two 193x193 images (where more of ASPP's rate 12-36 taps
fall in the padding); U-Net (depth 4, 64 base channels, transposed-convolution up path) at 256x256
against the same network on torch's convolutions (``path="torch"``, the same modules torch
provides).

Inference rows also time torchvision's model converted to channels_last by hand (``also``): ours
runs channels_last by default (FCN and DeepLab), and on the CPU that layout alone makes oneDNN's
convolutions faster, so that figure shows what fastops adds beyond the layout.

fastops' models run with ``path="auto"``: the first call of each convolution problem times both
implementations and keeps the faster (``fastops.nn.conv_autotune``); that happens in the untimed
warm-up calls. Timing: ``common.paired_ms`` (alternating calls, each after a quiet moment, the
fastest of ``repeat`` kept). No floor: the reference is the same network on torch's kernels.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from common import Row, bench_main, paired_ms

import fastops.nn
from fastops.models import segmentation as seg

SIZES_FULL = ((513, 513), (193, 193))
SIZES_QUICK = ((97, 97), (49, 49))


def _pair(name: str, num_classes: int, aux: bool, device: str):
    """(ours, torchvision's) with the same random weights."""
    import torchvision.models.segmentation as tv_seg

    torch.manual_seed(0)
    theirs = getattr(tv_seg, name)(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux)
    ours = getattr(seg, name)(weights=theirs.state_dict())
    return ours.to(device), theirs.to(device)


def _inference(model, x):
    def run():
        with torch.no_grad():
            model(x)

    return run


def _train_step(model, x, masks, loss_fn):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def run():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model, x, masks).backward()
        optimizer.step()

    return run


def _ours_loss(model, x, masks):
    return model.loss(x, masks)["loss"]


def _torchvision_loss(model, x, masks):
    out = model(x)
    return F.cross_entropy(out["out"], masks, ignore_index=255) + 0.5 * F.cross_entropy(
        out["aux"], masks, ignore_index=255
    )


def _segmenter_rows(rows, name, title, sizes, device, repeat):
    num_classes = 21
    ours, theirs = _pair(name, num_classes, aux=False, device=device)
    ours.eval(), theirs.eval()
    theirs_cl = copy.deepcopy(theirs).to(memory_format=torch.channels_last)
    for size in sizes:
        x = torch.randn(2, 3, *size, device=device)
        ms, ref = paired_ms(_inference(ours, x), _inference(theirs, x), device, repeat)
        # torchvision's model made channels_last by hand, as ours runs: what our kernels add beyond the layout
        x_cl = x.contiguous(memory_format=torch.channels_last)
        ms_cl, ref_cl = paired_ms(_inference(ours, x), _inference(theirs_cl, x_cl), device, repeat)
        extra = {"torchvision channels_last ms": round(ref_cl, 1), "speedup vs it": round(ref_cl / ms_cl, 2)}
        rows.append(Row(f"{title} inference 2x{size[0]}x{size[1]}", ms, "torchvision, same weights", ref, extra=extra))
    ours, theirs = _pair(name, num_classes, aux=True, device=device)
    ours.train(), theirs.train()
    for size in sizes:
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 3, *size, generator=g).to(device)
        masks = torch.randint(0, num_classes, (2, *size), generator=g).to(device)
        masks[:, : size[0] // 8] = 255
        ms, ref = paired_ms(
            _train_step(ours, x, masks, _ours_loss),
            _train_step(theirs, x, masks, _torchvision_loss),
            device,
            repeat,
        )
        rows.append(Row(f"{title} train step 2x{size[0]}x{size[1]}", ms, "torchvision, same weights", ref))


def _unet_rows(rows, size, base_channels, device, repeat):
    torch.manual_seed(0)
    ours = seg.unet(3, 2, depth=4, base_channels=base_channels).to(device)
    theirs = seg.unet(3, 2, depth=4, base_channels=base_channels, path="torch").to(device)
    theirs.load_state_dict(ours.state_dict())
    reference = "same U-Net, torch's convolutions"
    x = torch.randn(2, 3, *size, device=device)
    masks = torch.randint(0, 2, (2, *size), device=device)
    ours.eval(), theirs.eval()
    ms, ref = paired_ms(_inference(ours, x), _inference(theirs, x), device, repeat)
    rows.append(Row(f"U-Net inference 2x{size[0]}x{size[1]}", ms, reference, ref))
    ours.train(), theirs.train()
    ms, ref = paired_ms(
        _train_step(ours, x, masks, _ours_loss), _train_step(theirs, x, masks, _ours_loss), device, repeat
    )
    rows.append(Row(f"U-Net train step 2x{size[0]}x{size[1]}", ms, reference, ref))


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    repeat = 2 if quick else 5
    sizes = SIZES_QUICK if quick else SIZES_FULL
    previous = fastops.nn.set_conv_autotune(True)
    try:
        rows: list[Row] = []
        _segmenter_rows(rows, "deeplabv3_resnet50", "DeepLabV3-ResNet50", sizes, device, repeat)
        _segmenter_rows(rows, "fcn_resnet50", "FCN-ResNet50", sizes, device, repeat)
        _unet_rows(rows, (64, 64) if quick else (256, 256), 16 if quick else 64, device, repeat)
        return rows
    finally:
        fastops.nn.set_conv_autotune(previous)


NOTES = """Targets (2-core CPU): DeepLabV3 at least 1.2x torchvision at 513x513 and 1.3x at 193x193,
for inference and the training step. Our models' convolutions run with path="auto" (measured on
each problem's first call, in the warm-up). The machine is shared: each pair of calls waits for a
quiet moment and the fastest of the repeats is reported, for both."""


if __name__ == "__main__":
    bench_main("segmentation", __doc__, run, NOTES)
