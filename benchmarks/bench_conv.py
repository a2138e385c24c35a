"""Convolutions: fastops' per-tap kernels against torch's own convolution (oneDNN on the CPU, cuDNN
on the GPU), same inputs, same process, float32.

Workloads: the ASPP branches of DeepLab v3 on a 1x2048x33x33 map -> 256 channels, 3x3 at
rates 12, 24, 36, and the whole ASPP module (1x1 + three atrous branches + image pooling +
projection; fastops' fused op against the same module on torch's convolutions); a 1x256x64x64 3x3
convolution at rates 1 and 6; U-Net's transposed convolutions 1x128x64x64 -> 64, k2s2 and k4s2p1.
Forward, and forward plus backward (gradients of input and weight).

Floor: the useful FLOPs (2 per multiply-add, only the taps whose input pixel lies inside the map;
backward: twice the forward, input and weight gradients) at the float32 peak measured here by
fastops' FMA micro-kernel (common.peak_gflops); the basis also names the rate torch's GEMM reaches
on the fused ASPP centre GEMM's shape (1024x2048 @ 2048x1089), for scale. The rows named
"module auto" time fastops.nn's path rule (torch's kernels where they are faster).

Timing: fastops and torch alternate call by call, and each reports its fastest call. The
development machine is shared with other builds and tests, and a second process on one of its two
cores stalls every multi-threaded region at its barrier: medians then measure the neighbours (and
hit fastops, which runs more, shorter parallel regions: GEMMs, window copies, adds, harder than
oneDNN's single region). So each pair of calls waits (up to 10 s) for a 0.1 s window in which other
processes use under 10% of the CPU, and the fastest of the alternating calls is reported: the time
of a quiet machine, for both.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from common import Row, bench_main, peak_gflops, synchronize

import fastops
import fastops.nn
from fastops.nn.conv import useful_fraction


def _cpu_ticks() -> tuple[int, int, int]:
    """(busy ticks of the whole machine, all ticks, this process's ticks) from /proc."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(values) - idle, sum(values), int(fields[11]) + int(fields[12])


def wait_until_quiet(max_wait_s: float = 10.0, window_s: float = 0.1, share: float = 0.1) -> None:
    """Waits (at most max_wait_s) for a window in which other processes use under `share` of the
    machine's CPU time, so that a timing does not run beside someone else's build or test."""
    try:
        deadline = time.perf_counter() + max_wait_s
        while time.perf_counter() < deadline:
            busy0, total0, own0 = _cpu_ticks()
            time.sleep(window_s)
            busy1, total1, own1 = _cpu_ticks()
            if total1 > total0 and (busy1 - busy0 - (own1 - own0)) / (total1 - total0) < share:
                return
    except (OSError, ValueError, IndexError):
        return  # not Linux: time as it comes


def paired_ms(fn_a, fn_b, device: str, repeat: int) -> tuple[float, float]:
    """The fastest call of fn_a and of fn_b in milliseconds, timed alternately (see the notes)."""
    for _ in range(2):
        fn_a()
        fn_b()
    times_a, times_b = [], []
    for i in range(repeat):
        order = ((fn_a, times_a), (fn_b, times_b)) if i % 2 == 0 else ((fn_b, times_b), (fn_a, times_a))
        if not device.startswith("cuda"):
            wait_until_quiet()
            # after the wait the thread pool sleeps and the caches are cold, so the first call after
            # it is not timed, and the order alternates
            order[0][0]()
        for fn, times in order:
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append((time.perf_counter() - t0) * 1e3)
    return min(times_a), min(times_b)


def gemm_gflops(device: str, repeat: int) -> float:
    a = torch.randn(1024, 2048, device=device)
    b = torch.randn(2048, 1089, device=device)
    ms, _ = paired_ms(lambda: a @ b, lambda: None, device, repeat)
    return 2 * 1024 * 2048 * 1089 / (ms * 1e-3) / 1e9


def conv_flops(c_in, c_out, in_hw, out_hw, kernel, stride, padding, dilation, groups=1) -> float:
    dense = 2 * c_out * (c_in // groups) * kernel[0] * kernel[1] * out_hw[0] * out_hw[1]
    return dense * useful_fraction(in_hw, out_hw, kernel, stride, padding, dilation)


def _step(fn, *tensors):
    """forward plus backward of fn(*tensors) into its leaves' .grad (cleared each call)."""

    def step():
        for t in tensors:
            t.grad = None
        fn(*tensors).sum().backward()

    return step


def _module_step(module, x):
    """forward plus backward of a module (weight and input gradients)."""

    def step():
        x.grad = module.weight.grad = None
        module(x).sum().backward()

    return step


def _kernel_and_module_rows(
    rows,
    title,
    short,
    ours,
    theirs,
    module,
    module_uses_fastops,
    x,
    w,
    flops,
    extra,
    *,
    device,
    repeat,
    ref_name,
    floor,
    basis,
):
    """Four rows for one case: fastops' kernels (ours(input, weight)) and the module's auto path
    (module, given the weight w), each forward then forward plus backward, against theirs."""
    path = "fastops" if module_uses_fastops else "torch"
    module.weight.data.copy_(w)
    ms, ref = paired_ms(lambda: ours(x, w), lambda: theirs(x, w), device, repeat)
    rows.append(Row(f"{title} fwd", ms, ref_name, ref, floor(flops), basis, extra or {}))
    module.weight.requires_grad_(False)  # as w: forward only, no graph
    ms, ref = paired_ms(lambda: module(x), lambda: theirs(x, w), device, repeat)
    rows.append(Row(f"{short} fwd, module auto ({path})", ms, ref_name, ref, floor(flops), basis))
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    ms, ref = paired_ms(_step(ours, xg, wg), _step(theirs, xg, wg), device, repeat)
    rows.append(Row(f"{short} fwd+bwd", ms, ref_name, ref, floor(3 * flops), basis))
    module.weight.requires_grad_(True)
    ms, ref = paired_ms(_module_step(module, xg), _step(theirs, xg, wg), device, repeat)
    rows.append(Row(f"{short} fwd+bwd, module auto ({path})", ms, ref_name, ref, floor(3 * flops), basis))


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    torch.manual_seed(0)
    repeat = 3 if quick else 11
    rows: list[Row] = []
    peak, how = peak_gflops(device)
    floor = lambda flops: flops / (peak * 1e9) * 1e3
    basis = f"useful FLOPs at {peak:.0f} GFLOP/s ({how}; torch GEMM here: {gemm_gflops(device, repeat):.0f})"
    ref_name = "torch conv (cuDNN)" if device.startswith("cuda") else "torch conv (oneDNN)"

    # ASPP branches: 1x2048x33x33 -> 256, 3x3 at rate r
    hw = (17, 17) if quick else (33, 33)
    c_in = 512 if quick else 2048
    x = torch.randn(1, c_in, *hw, device=device)
    for r in (12, 24, 36):
        w = torch.randn(256, c_in, 3, 3, device=device) / (3 * c_in**0.5)
        flops = conv_flops(c_in, 256, hw, hw, (3, 3), (1, 1), (r, r), (r, r))
        ours, ref = paired_ms(
            lambda: fastops.conv2d(x, w, padding=r, dilation=r),
            lambda: F.conv2d(x, w, padding=r, dilation=r),
            device,
            repeat,
        )
        rows.append(
            Row(
                f"ASPP branch 1x{c_in}x{hw[0]}x{hw[1]}->256 3x3 rate {r} fwd",
                ours,
                ref_name,
                ref,
                floor(flops),
                basis,
                {"useful": round(flops / (2 * 256 * c_in * 9 * hw[0] * hw[1]), 3)},
            )
        )
        xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
        ours, ref = paired_ms(
            _step(lambda a, b: fastops.conv2d(a, b, padding=r, dilation=r), xg, wg),
            _step(lambda a, b: F.conv2d(a, b, padding=r, dilation=r), xg, wg),
            device,
            repeat,
        )
        rows.append(Row(f"ASPP branch rate {r} fwd+bwd", ours, ref_name, ref, floor(3 * flops), basis))

    # the whole ASPP module, fused op against the same module on torch's convolutions
    rates = (12, 24, 36)
    ours_m = fastops.nn.ASPP(c_in, 256, rates, path="fastops").to(device)
    torch_m = fastops.nn.ASPP(c_in, 256, rates, path="torch").to(device)
    torch_m.load_state_dict(ours_m.state_dict())
    branch_flops = 2 * 256 * c_in * hw[0] * hw[1] + sum(
        conv_flops(c_in, 256, hw, hw, (3, 3), (1, 1), (r, r), (r, r)) for r in rates
    )
    module_flops = branch_flops + 2 * 256 * (5 * 256) * hw[0] * hw[1] + 2 * 256 * c_in
    ours_m.eval(), torch_m.eval()
    with torch.no_grad():
        ours, ref = paired_ms(lambda: ours_m(x), lambda: torch_m(x), device, repeat)
    rows.append(
        Row("ASPP module (rates 12/24/36) fwd, eval", ours, "same module, " + ref_name, ref, floor(module_flops), basis)
    )
    # (BatchNorm stays in eval mode: the pooling branch's 1x1 map cannot train on a batch of 1)
    xg = x.clone().requires_grad_()
    ours, ref = paired_ms(_step(ours_m, xg), _step(torch_m, xg), device, repeat)
    rows.append(Row("ASPP module fwd+bwd", ours, "same module, " + ref_name, ref, floor(3 * module_flops), basis))

    # 1x256x64x64 3x3 at rates 1 and 6: fastops' kernels and the module's auto path
    hw2 = (32, 32) if quick else (64, 64)
    ctx = dict(device=device, repeat=repeat, ref_name=ref_name, floor=floor, basis=basis)
    x2 = torch.randn(1, 256, *hw2, device=device)
    for r in (1, 6):
        w = torch.randn(256, 256, 3, 3, device=device) / 48
        flops = conv_flops(256, 256, hw2, hw2, (3, 3), (1, 1), (r, r), (r, r))
        module = fastops.nn.Conv2d(256, 256, 3, padding=r, dilation=r, bias=False).to(device)
        _kernel_and_module_rows(
            rows,
            f"1x256x{hw2[0]}x{hw2[1]} 3x3 rate {r}",
            f"  rate {r}",
            lambda a, b: fastops.conv2d(a, b, padding=r, dilation=r),
            lambda a, b: F.conv2d(a, b, padding=r, dilation=r),
            module,
            module._uses_fastops(x2),
            x2,
            w,
            flops,
            {"useful": round(flops / (2 * 256 * 256 * 9 * hw2[0] * hw2[1]), 3)},
            **ctx,
        )

    # U-Net transposed convolutions 1x128x64x64 -> 64
    x3 = torch.randn(1, 128, *hw2, device=device)
    for k, s, p in ((2, 2, 0), (4, 2, 1)):
        w = torch.randn(128, 64, k, k, device=device) / 32
        out_hw = tuple((n - 1) * s - 2 * p + k for n in hw2)
        # the adjoint conv2d's useful work (conv from the output map back to the input's size)
        flops = conv_flops(64, 128, out_hw, hw2, (k, k), (s, s), (p, p), (1, 1))
        module = fastops.nn.ConvTranspose2d(128, 64, k, stride=s, padding=p, bias=False).to(device)
        _kernel_and_module_rows(
            rows,
            f"transposed 1x128x{hw2[0]}x{hw2[1]}->64 k{k}s{s}p{p}",
            f"  k{k}s{s}p{p}",
            lambda a, b: fastops.conv_transpose2d(a, b, stride=s, padding=p),
            lambda a, b: F.conv_transpose2d(a, b, stride=s, padding=p),
            module,
            module._uses_fastops(x3),
            x3,
            w,
            flops,
            None,
            **ctx,
        )
    return rows


NOTES = """Targets, 2-core CPU: >= 1.5x torch on the large-rate ASPP cases, >= 0.9x on the
others; CUDA: >= 1.2x cuDNN on large-rate ASPP, >= 0.8x on the rest. "useful" is the share of the
dense convolution's products whose input pixel lies inside the map: the work fastops does, where
torch's convolution does all of it. The machine is shared with other builds and tests: each pair
of calls waits for a quiet moment, makes one untimed call (the first call after a wait runs on cold
caches and a sleeping thread pool), and alternates which library goes first; absolute times still
vary between runs."""

if __name__ == "__main__":
    bench_main("conv", __doc__, run, NOTES)
