"""Focal losses: fastops against torchvision's sigmoid_focal_loss (and torch's cross-entropy and
BCEWithLogitsLoss for the softmax and weighted-BCE variants).

Workload: RetinaNet-sized logits 240000 x 80 with 1% positives, dense float
targets: forward (sum) and forward plus backward, and the peak memory of forward plus backward
(measured in a fresh process: its peak resident set, reset just before, over its resident set
then, on the CPU (Linux); the CUDA allocator's peak on a GPU).
Floor: the bytes that must move (forward reads logits and targets;
backward reads them again and writes the gradient) over the copy bandwidth measured here.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
import torchvision.ops as tv
from common import Row, bandwidth_gbs, bench_main, run_python, time_ms

import fastops

ROWS, CLASSES = 240000, 80

MEMORY_SCRIPT = f"""
import json, sys, torch, fastops, torchvision.ops as tv
which, device = sys.argv[1], sys.argv[2]

def status_kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

x = torch.randn({ROWS}, {CLASSES}, device=device).requires_grad_()
t = torch.zeros_like(x, requires_grad=False)
t.view(-1)[::100] = 1.0
fn = fastops.sigmoid_focal_loss if which == "fastops" else tv.sigmoid_focal_loss
fn(x[:100], t[:100], reduction="sum").backward()  # warm up
x.grad = None
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
else:
    open("/proc/self/clear_refs", "w").write("5")  # resets the peak resident set (VmHWM) to now
    base = status_kib("VmRSS") * 1024
fn(x, t, reduction="sum").backward()
if device == "cuda":
    torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() - base
else:
    peak = status_kib("VmHWM") * 1024 - base
print(json.dumps(peak))
"""


def peak_extra_memory_mb(which: str, device: str) -> float:
    out = run_python(["-c", MEMORY_SCRIPT, which, device])
    return json.loads(out.stdout.strip().splitlines()[-1]) / 2**20


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    g = torch.Generator().manual_seed(0)
    n = ROWS // 8 if quick else ROWS
    x = torch.randn(n, CLASSES, generator=g).to(device)
    t = (torch.rand(n, CLASSES, generator=g) < 0.01).float().to(device)
    repeat = 5 if quick else 11
    nbytes = x.numel() * 4
    bw = bandwidth_gbs(device, nbytes, "copy") * 1e9
    fwd_floor = 2 * nbytes / bw * 1e3  # read logits and targets
    bwd_floor = (2 * nbytes + 2 * nbytes + nbytes) / bw * 1e3  # forward, then read both again, write the gradient

    ms = time_ms(lambda: fastops.sigmoid_focal_loss(x, t, reduction="sum"), device, repeat=repeat)
    ref = time_ms(lambda: tv.sigmoid_focal_loss(x, t, reduction="sum"), device, repeat=5)
    rows.append(
        Row(
            f"sigmoid focal {n}x{CLASSES} fwd (sum)",
            ms,
            "torchvision.ops.sigmoid_focal_loss",
            ref,
            fwd_floor,
            "read logits + targets",
        )
    )

    def fwd_bwd(fn, targets, **kw):
        xg = x.clone().requires_grad_()

        def step():
            fn(xg, targets, reduction="sum", **kw).backward()
            xg.grad = None

        return step

    ms = time_ms(fwd_bwd(fastops.sigmoid_focal_loss, t), device, repeat=repeat)
    ref = time_ms(fwd_bwd(tv.sigmoid_focal_loss, t), device, repeat=5)
    extra = {}
    if not quick:
        extra = {
            "peak_extra_mb_fastops": round(peak_extra_memory_mb("fastops", device), 1),
            "peak_extra_mb_torchvision": round(peak_extra_memory_mb("torchvision", device), 1),
            "gradient_mb": round(nbytes / 2**20, 1),
        }
    rows.append(
        Row(
            f"sigmoid focal {n}x{CLASSES} fwd+bwd (sum)",
            ms,
            "torchvision.ops.sigmoid_focal_loss",
            ref,
            bwd_floor,
            "fwd + read both again + write grad",
            extra,
        )
    )

    labels = torch.where(t.bool().any(1), t.argmax(1), torch.full((n,), CLASSES, device=device))
    ms = time_ms(fwd_bwd(fastops.sigmoid_focal_loss, labels), device, repeat=repeat)
    rows.append(
        Row(
            "sigmoid focal, index targets, fwd+bwd",
            ms,
            "torchvision (dense targets)",
            ref,
            3 * nbytes / bw * 1e3,
            "read logits twice + write grad",
        )
    )

    idx = torch.randint(0, CLASSES, (n,), generator=g).to(device)
    ms = time_ms(fwd_bwd(fastops.softmax_focal_loss, idx, gamma=0.0), device, repeat=repeat)
    ref = time_ms(fwd_bwd(F.cross_entropy, idx), device, repeat=repeat)
    rows.append(Row("softmax focal (gamma 0) fwd+bwd", ms, "torch cross_entropy", ref))
    pw = torch.rand(CLASSES, generator=g).to(device) + 0.5
    ms = time_ms(fwd_bwd(fastops.weighted_bce_with_logits, t, pos_weight=pw), device, repeat=repeat)
    ref = time_ms(fwd_bwd(F.binary_cross_entropy_with_logits, t, pos_weight=pw), device, repeat=repeat)
    rows.append(Row("weighted BCE (pos_weight) fwd+bwd", ms, "torch binary_cross_entropy_with_logits", ref))
    return rows


NOTES = """The sigmoid losses are bound by arithmetic on this 2-core CPU, not by memory: each element
needs an exp, a log and a division, once forward and once backward, since only the inputs and
targets are saved. With the restricted-domain exp_neg_/log1p_unit_ of fast_math.h and every
multiply-add fused by hand, a pass costs about 1.05 ns per element per core (65 AVX-512
instructions per 16 elements forward, 72 backward, at about 1.5 per cycle); before, with the
general exp_/log_, 1.6 ns, and 2.3-2.6 ns once the rows no longer fit in cache, which software
prefetch (2 KB ahead) now hides. Extra memory of forward plus backward: see the fwd+bwd row's
`peak_extra_mb_*` (fastops: the gradient only)."""

if __name__ == "__main__":
    bench_main("focal_loss", __doc__, run, NOTES)
