"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path): devices and
dtypes to parametrize over, box generators, the per-instruction-set comparisons, float32-against-
float64 runs. Float64 references of the ops are in the `reference` package."""

import contextlib

import pytest
import torch

import fastops

# Parametrize over this to run a test on the CPU and, where a GPU exists, on CUDA.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def rand_boxes_xyxy(n: int, *, size: float = 100.0, dtype=torch.float64, device="cpu", generator=None) -> torch.Tensor:
    """n boxes with corners in [0, size) and sides in (0.5, size / 2]."""
    xy = torch.rand(n, 2, dtype=torch.float64, generator=generator) * size
    wh = torch.rand(n, 2, dtype=torch.float64, generator=generator) * (size / 2 - 0.5) + 0.5
    return torch.cat([xy, xy + wh], dim=-1).to(dtype=dtype, device=device)


def xyxy_to(boxes: torch.Tensor, fmt: str) -> torch.Tensor:
    """Converts xyxy boxes to fmt (for building inputs; the kernels read each format directly)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    if fmt == "xyxy":
        return boxes
    if fmt == "xywh":
        return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)
    if fmt == "cxcywh":
        return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)
    raise ValueError(fmt)


def special_boxes_xyxy(dtype=torch.float64) -> torch.Tensor:
    """Boxes that hit the edge cases: identical, nested, touching, disjoint, zero-area, a point."""
    return torch.tensor(
        [
            [0, 0, 10, 10],
            [0, 0, 10, 10],  # identical to the first: every max/min ties
            [2, 2, 5, 5],  # nested
            [10, 0, 20, 10],  # touches the first along an edge (zero-width intersection)
            [10, 10, 20, 20],  # touches at a corner
            [30, 30, 40, 45],  # disjoint
            [3, 3, 3, 8],  # zero width
            [4, 4, 4, 4],  # a point
        ],
        dtype=dtype,
    )


# ---- CPU instruction sets (the kernels are compiled once per set; docs/ARCHITECTURE.md) ----------

ISAS = ["default", "avx2", "avx512"]


def assert_same_across_isas(run):
    """run() under every instruction set this CPU has: each must give the default copy's bits."""
    results = {}
    for isa in ISAS:
        used = fastops.set_cpu_isa(isa)
        results.setdefault(used, run())
    base = results.pop("default")
    for isa, res in results.items():
        for a, b in zip(base, res):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{isa}: {m}")


@contextlib.contextmanager
def cpu_isa(name):
    fastops.set_cpu_isa(name)
    try:
        yield
    finally:
        fastops.set_cpu_isa("avx512")  # back to the best available


def assert_float32_close(ours, ref):
    """float32 sums of up to a few thousand products: errors relative to the largest value."""
    scale = ref.abs().max().clamp_min(1.0) if ref.numel() else 1.0
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=2e-5 * float(scale))


def float32_and_float64(fn, ref_fn, operands, seed, **kw):
    """fn on float32 operands and ref_fn on the same values in float64, each followed by a
    backward of the same upstream gradient (drawn in float64)."""

    def run(f, ops):
        ops = [None if t is None else t.detach().clone().requires_grad_() for t in ops]
        out = f(*ops, **kw)
        grad = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        out.backward(grad.to(out.dtype))
        return [out.detach()] + [None if t is None else t.grad for t in ops]

    return run(fn, operands), run(ref_fn, [None if t is None else t.double() for t in operands])
