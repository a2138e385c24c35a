"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

import pytest
import torch

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
