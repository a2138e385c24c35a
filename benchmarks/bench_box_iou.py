"""IoU family: fastops against torchvision (and plain torch where torchvision has no such op).

Workloads: pairwise 2000 x 2000 and 20000 x 500 in every mode; aligned 1M pairs,
forward and forward plus backward of the box losses. Boxes: 800 x 800 image, sides 4 to 204 px.
Floors: the pairwise ops are bound by writing the N x M float32 output; the aligned ones by reading
two N x 4 box sets and writing N results (plus, backward, reading the gradient and writing two
N x 4 gradients). Bandwidths are measured here on buffers of the same size (bandwidth_gbs).
"""

from __future__ import annotations

import torch
import torchvision.ops as tv
from common import Row, bandwidth_gbs, bench_main, time_ms

import fastops


def random_boxes(n: int, device: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 800
    wh = torch.rand(n, 2, generator=g) * 200 + 4
    return torch.cat([xy, xy + wh], dim=1).to(device)


def torch_aligned(mode: str):
    """What one writes with plain torch for aligned IoU / IoF (torchvision has no aligned op)."""

    def fn(b1, b2):
        lt = torch.max(b1[:, :2], b2[:, :2])
        rb = torch.min(b1[:, 2:], b2[:, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[:, 0] * wh[:, 1]
        area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
        if mode == "iof":
            return inter / area1
        area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
        return inter / (area1 + area2 - inter)

    return fn


def torch_pairwise_iof(b1, b2):
    lt = torch.max(b1[:, None, :2], b2[:, :2])
    rb = torch.min(b1[:, None, 2:], b2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    return wh[..., 0] * wh[..., 1] / area1[:, None]


PAIRWISE = {
    "iou": (lambda a, b: fastops.box_iou(a, b), "torchvision.ops.box_iou", tv.box_iou),
    "giou": (
        lambda a, b: fastops.generalized_box_iou(a, b),
        "torchvision.ops.generalized_box_iou",
        tv.generalized_box_iou,
    ),
    "diou": (lambda a, b: fastops.distance_box_iou(a, b), "torchvision.ops.distance_box_iou", tv.distance_box_iou),
    "ciou": (lambda a, b: fastops.complete_box_iou(a, b), "torchvision.ops.complete_box_iou", tv.complete_box_iou),
    "iof": (lambda a, b: fastops.box_overlap(a, b, mode="iof"), "torch eager", torch_pairwise_iof),
}
LOSSES = {
    "giou": (fastops.generalized_box_iou_loss, tv.generalized_box_iou_loss),
    "diou": (fastops.distance_box_iou_loss, tv.distance_box_iou_loss),
    "ciou": (fastops.complete_box_iou_loss, tv.complete_box_iou_loss),
}


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    repeat = 5 if quick else 15
    ref_repeat = 3 if quick else 7
    shapes = [(2000, 2000)] if quick else [(2000, 2000), (20000, 500)]
    for n, m in shapes:
        b1, b2 = random_boxes(n, device, 0), random_boxes(m, device, 1)
        out_bytes = n * m * 4
        floor = out_bytes / (bandwidth_gbs(device, out_bytes, "write") * 1e9) * 1e3
        for mode, (ours, ref_name, ref) in PAIRWISE.items():
            ms = time_ms(lambda: ours(b1, b2), device, repeat=repeat)
            ref_ms = time_ms(lambda: ref(b1, b2), device, repeat=ref_repeat, warmup=1)
            rows.append(Row(f"pairwise {mode} {n}x{m}", ms, ref_name, ref_ms, floor, "write N*M*4 B"))

    n = 200_000 if quick else 1_000_000
    b1, b2 = random_boxes(n, device, 2), random_boxes(n, device, 3)
    fwd_bytes = 2 * n * 16 + n * 4
    fwd_floor = fwd_bytes / (bandwidth_gbs(device, fwd_bytes // 2, "copy") * 1e9) * 1e3
    for mode in ("iou", "iof"):
        ms = time_ms(lambda: fastops.box_overlap(b1, b2, mode=mode, aligned=True), device, repeat=repeat)
        ref_ms = time_ms(lambda: torch_aligned(mode)(b1, b2), device, repeat=ref_repeat)
        rows.append(
            Row(f"aligned {mode} {n // 1000}k", ms, "torch eager", ref_ms, fwd_floor, "read 2 N*16 B + write N*4 B")
        )
    bwd_bytes = fwd_bytes + 2 * n * 16 + n * 4 + 2 * n * 16  # forward, then read boxes + grad, write 2 grads
    bwd_floor = bwd_bytes / (bandwidth_gbs(device, bwd_bytes // 2, "copy") * 1e9) * 1e3
    for mode, (ours, ref) in LOSSES.items():
        ms = time_ms(lambda: ours(b1, b2, reduction="sum"), device, repeat=repeat)
        ref_ms = time_ms(lambda: ref(b1, b2, reduction="sum"), device, repeat=ref_repeat)
        rows.append(
            Row(
                f"{mode} loss {n // 1000}k fwd",
                ms,
                f"torchvision {ref.__name__}",
                ref_ms,
                fwd_floor,
                "read 2 N*16 B + write N*4 B",
            )
        )

        def fwd_bwd(fn):
            x, y = b1.clone().requires_grad_(), b2.clone().requires_grad_()

            def step():
                fn(x, y, reduction="sum").backward()
                x.grad = y.grad = None

            return step

        ms = time_ms(fwd_bwd(ours), device, repeat=repeat)
        ref_ms = time_ms(fwd_bwd(ref), device, repeat=ref_repeat)
        rows.append(
            Row(
                f"{mode} loss {n // 1000}k fwd+bwd",
                ms,
                f"torchvision {ref.__name__}",
                ref_ms,
                bwd_floor,
                "fwd + read boxes, grad; write 2 grads",
            )
        )

    a, b = random_boxes(2000, device, 4).requires_grad_(), random_boxes(2000, device, 5).requires_grad_()
    grad = torch.randn(2000, 2000, device=device)
    for mode, fn, ref in (("giou", fastops.generalized_box_iou, tv.generalized_box_iou),):
        ms = time_ms(lambda: torch.autograd.grad(fn(a, b), (a, b), grad), device, repeat=repeat)
        ref_ms = time_ms(lambda: torch.autograd.grad(ref(a, b), (a, b), grad), device, repeat=3, warmup=1)
        rows.append(Row(f"pairwise {mode} 2000x2000 fwd+bwd", ms, f"torchvision {ref.__name__}", ref_ms))
    return rows


NOTES = """Floors use bandwidth measured in the same run on buffers of the same size (on the 2-core
CPU machine these sizes sit in its large L3, so the floor is a cache-bandwidth floor). The pairwise
floor writes the output into memory already mapped, as fastops does in a loop: its outputs come
from a cache of freed large CPU outputs. torchvision's come from glibc, which maps allocations of
32 MB and more anew on every call (20000 x 500 floats is 40 MB), and the kernel zeroing those pages
then dominates its time."""

if __name__ == "__main__":
    bench_main("box_iou", __doc__, run, NOTES)
