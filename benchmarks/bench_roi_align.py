"""RoIAlign / RoIPool / multi-level RoIAlign: fastops against torchvision, same inputs, same process.

Workloads: a Faster R-CNN box head on one feature map 2x256x200x304
(an 800x1216 image at stride 4), 1000 RoIs, 7x7, sampling ratio 2, aligned: forward, and forward
plus backward; the same on a channels_last map; four FPN levels (strides 4 to 32) with 2x500 RoIs
against MultiScaleRoIAlign; the mask head's 14x14 on the FPN levels; RoIPool on the single map.
Boxes: random in the image, sides 16 to 316 pixels (log-uniform for the FPN cases, so every level
gets RoIs).

Floor: RoIAlign is bound by memory here: at the least the features are read once and the output
written (forward), the upstream gradient read and the feature gradient written (backward), at the
copy bandwidth measured on buffers of the features' size.
"""

from __future__ import annotations

import math

import torch
import torchvision.ops as tv
from common import Row, bandwidth_gbs, bench_main, time_ms

import fastops

N, C, H, W = 2, 256, 200, 304
IMAGE = (800, 1216)


def single_map_boxes(k: int, g: torch.Generator) -> torch.Tensor:
    xy = torch.rand(k, 2, generator=g) * torch.tensor([IMAGE[1], IMAGE[0]], dtype=torch.float32)
    wh = torch.rand(k, 2, generator=g) * 300 + 16
    b = torch.randint(0, N, (k, 1), generator=g).float()
    return torch.cat([b, xy, xy + wh], dim=1)


def fpn_boxes(per_image: int, g: torch.Generator) -> list[torch.Tensor]:
    out = []
    for _ in range(N):
        side = torch.exp(torch.rand(per_image, 1, generator=g) * math.log(700 / 16)) * 16  # 16 to 700 pixels
        xy = torch.rand(per_image, 2, generator=g) * torch.tensor([IMAGE[1], IMAGE[0]], dtype=torch.float32)
        wh = side * (0.6 + 0.8 * torch.rand(per_image, 2, generator=g))
        out.append(torch.cat([xy, xy + wh], dim=1))
    return out


def fwd_bwd(fn, x, *args):
    """One forward plus backward with an upstream gradient of ones, on leaf copies of x."""
    leaves = [t.detach().clone().requires_grad_() for t in (x if isinstance(x, (list, tuple)) else [x])]
    inp = leaves if isinstance(x, (list, tuple)) else leaves[0]

    def step():
        y = fn(inp, *args)
        y.backward(torch.ones_like(y))
        for t in leaves:
            t.grad = None

    return step


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    g = torch.Generator().manual_seed(0)
    c = C // 8 if quick else C
    k = 1000
    x = torch.randn(N, c, H, W, generator=g).to(device)
    rois = single_map_boxes(k, g).to(device)
    rep, rep_ref = (3, 2) if quick else (9, 3)
    feat_bytes = x.numel() * 4
    bw = bandwidth_gbs(device, feat_bytes, "copy") * 1e9
    out_bytes = k * c * 49 * 4
    fwd_floor = (feat_bytes + out_bytes) / bw * 1e3
    bwd_floor = fwd_floor + (out_bytes + feat_bytes) / bw * 1e3
    floor_fwd_basis = "read features + write output"
    floor_bwd_basis = "fwd + read grad + write feature grad"

    for layout in ("NCHW", "channels_last"):
        xin = x.contiguous(memory_format=torch.channels_last) if layout != "NCHW" else x
        ms = time_ms(lambda: fastops.roi_align(xin, rois, 7, 0.25, 2, True), device, repeat=rep)
        ref = time_ms(lambda: tv.roi_align(xin, rois, 7, 0.25, 2, True), device, repeat=rep_ref)
        rows.append(
            Row(
                f"roi_align {N}x{c}x{H}x{W} {layout}, {k} RoIs, 7x7 fwd",
                ms,
                "torchvision.ops.roi_align",
                ref,
                fwd_floor,
                floor_fwd_basis,
            )
        )
        ms = time_ms(fwd_bwd(fastops.roi_align, xin, rois, 7, 0.25, 2, True), device, repeat=rep)
        ref = time_ms(fwd_bwd(tv.roi_align, xin, rois, 7, 0.25, 2, True), device, repeat=rep_ref)
        rows.append(
            Row(
                f"roi_align {N}x{c}x{H}x{W} {layout}, {k} RoIs, 7x7 fwd+bwd",
                ms,
                "torchvision.ops.roi_align",
                ref,
                bwd_floor,
                floor_bwd_basis,
            )
        )

    ms = time_ms(lambda: fastops.roi_pool(x, rois, 7, 0.25), device, repeat=rep)
    ref = time_ms(lambda: tv.roi_pool(x, rois, 7, 0.25), device, repeat=rep_ref)
    rows.append(
        Row(
            f"roi_pool {N}x{c}x{H}x{W}, {k} RoIs, 7x7 fwd",
            ms,
            "torchvision.ops.roi_pool",
            ref,
            fwd_floor,
            floor_fwd_basis,
        )
    )

    # FPN: four levels, strides 4 to 32
    names = ["p2", "p3", "p4", "p5"]
    feats = [torch.randn(N, c, H // s, W // s, generator=g).to(device) for s in (1, 2, 4, 8)]
    fpn_bytes = sum(f.numel() for f in feats) * 4
    shapes = [IMAGE] * N
    for size, per_image in ((7, 500), (14, 128)):
        boxes = [b.to(device) for b in fpn_boxes(per_image, g)]
        ours = fastops.MultiScaleRoIAlign(names, size, 2)
        theirs = tv.MultiScaleRoIAlign(names, size, 2)
        kk = N * per_image
        o_bytes = kk * c * size * size * 4
        floor = (fpn_bytes + o_bytes) / bw * 1e3
        ms = time_ms(lambda: ours(dict(zip(names, feats)), boxes, shapes), device, repeat=rep)
        ref = time_ms(lambda: theirs(dict(zip(names, feats)), boxes, shapes), device, repeat=rep_ref)
        rows.append(
            Row(
                f"MultiScaleRoIAlign 4 levels, {kk} RoIs, {size}x{size} fwd",
                ms,
                "torchvision MultiScaleRoIAlign",
                ref,
                floor,
                floor_fwd_basis,
            )
        )

        def run_ms(module):
            return lambda fs, *a: module(dict(zip(names, fs)), boxes, shapes)

        ms = time_ms(fwd_bwd(run_ms(ours), feats), device, repeat=rep)
        ref = time_ms(fwd_bwd(run_ms(theirs), feats), device, repeat=rep_ref)
        rows.append(
            Row(
                f"MultiScaleRoIAlign 4 levels, {kk} RoIs, {size}x{size} fwd+bwd",
                ms,
                "torchvision MultiScaleRoIAlign",
                ref,
                2 * floor,
                floor_bwd_basis,
            )
        )
    return rows


NOTES = """torchvision's CPU kernels run on one thread (their OpenMP pragma is commented out) and copy a
channels_last input to NCHW on every call. fastops processes NCHW features one (16-channel block,
level, image) at a time: the block is copied into a pixel-major tile, only the 16-pixel chunks that
the group's RoIs sample, and every RoI of
that image reads it, each bilinear sample being a few 16-lane vector operations; channels_last
features are read in place. Both give torchvision's float32 bits, forward and backward (same
operations in the same order). Backward: each thread owns its gradient values (no atomics). Outputs
and gradients come from fastops' cache of freed large CPU outputs, so repeated calls do not fault in
fresh memory (torchvision's calls do). In the 14x14 forward the time goes to reading the needed
chunks of the features into the tiles (strided plane reads, the memory-bound part), the scattered
output stores (the next RoI's output block is prefetched for writing) and the sampling itself."""

if __name__ == "__main__":
    bench_main("roi_align", __doc__, run, NOTES)
