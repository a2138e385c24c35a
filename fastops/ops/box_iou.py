"""IoU-family box ops: IoU, GIoU, DIoU, CIoU and IoF, pairwise (N x M) and aligned (N with N), and
the box-regression losses built on them.

Kernels: ``csrc/box_iou/`` (one fused kernel per mode: the output is written once, with no N x M
temporaries). This file holds the op's Python side: fake kernels and autograd registration, then
the public functions.

torchvision-compatible: ``box_iou``, ``generalized_box_iou``, ``distance_box_iou``,
``complete_box_iou`` and the three ``*_box_iou_loss`` functions take the same arguments and give the
same results. Beyond torchvision: ``box_overlap(..., mode=, aligned=, fmt=)`` reaches every mode in
both forms and every box format, and the losses accept ``fmt=``.

dtypes: float16, bfloat16, float32 and float64 boxes are read directly; arithmetic runs in float32
(float64 for float64 boxes), and the result is float32 (float64), as torchvision's. Integer boxes
are converted to float32 first. Mixed dtypes are promoted. Autocast leaves these ops alone: they
are precision-neutral, never computing in half precision.

Edge values (documented and tested): a ratio whose denominator is exactly 0 gives 0 where
torchvision gives NaN or Inf (two zero-area boxes have IoU 0); CIoU's aspect-ratio term is 0 for
a box with zero width and zero height; a NaN or infinite coordinate gives NaN for every pair that
box is in, and NaN gradients. Empty inputs give empty outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "box_iou",
    "box_overlap",
    "complete_box_iou",
    "complete_box_iou_loss",
    "distance_box_iou",
    "distance_box_iou_loss",
    "generalized_box_iou",
    "generalized_box_iou_loss",
]

MODES = ("iou", "giou", "diou", "ciou", "iof")
FORMATS = ("xyxy", "xywh", "cxcywh")
_ROTATED_FORMATS = ("cxcywhr", "xywhr", "xyxyxyxy")
_REDUCTIONS = ("none", "mean", "sum")

# ---- op registration: fake kernels and autograd ------------------------------------------------


@torch.library.register_fake("fastops::box_overlap")
def _box_overlap_fake(boxes1, boxes2, mode, fmt, aligned, eps, loss_form):
    torch._check(
        boxes1.shape[-1] == 4, lambda: f"box_overlap: boxes1 must have shape [..., 4], got {tuple(boxes1.shape)}"
    )
    torch._check(
        boxes2.shape[-1] == 4, lambda: f"box_overlap: boxes2 must have shape [..., 4], got {tuple(boxes2.shape)}"
    )
    out_dtype = torch.float64 if boxes1.dtype == torch.float64 else torch.float32
    if aligned:
        torch._check(boxes1.shape == boxes2.shape, lambda: "box_overlap: aligned boxes must have the same shape")
        shape = boxes1.shape[:-1]
    else:
        torch._check(boxes1.shape[:-2] == boxes2.shape[:-2], lambda: "box_overlap: leading dimensions differ")
        shape = (*boxes1.shape[:-2], boxes1.shape[-2], boxes2.shape[-2])
    return boxes1.new_empty(shape, dtype=out_dtype)


@torch.library.register_fake("fastops::box_overlap_backward")
def _box_overlap_backward_fake(grad, boxes1, boxes2, mode, fmt, aligned, eps, loss_form):
    return boxes1.new_empty(boxes1.shape), boxes2.new_empty(boxes2.shape)


def _setup_context(ctx, inputs, output):
    boxes1, boxes2, *args = inputs
    ctx.save_for_backward(boxes1, boxes2)
    ctx.args = args  # mode, fmt, aligned, eps, loss_form


def _backward(ctx, grad):
    boxes1, boxes2 = ctx.saved_tensors
    grad1, grad2 = torch.ops.fastops.box_overlap_backward(grad, boxes1, boxes2, *ctx.args)
    return (
        grad1 if ctx.needs_input_grad[0] else None,
        grad2 if ctx.needs_input_grad[1] else None,
        None,
        None,
        None,
        None,
        None,
    )


torch.library.register_autograd("fastops::box_overlap", _backward, setup_context=_setup_context)

# ---- public API ----------------------------------------------------------------------------------


def _as_float_boxes(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Checks the tensor types and brings both to one floating dtype (integers become float32)."""
    for name, t in (("boxes1", boxes1), ("boxes2", boxes2)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    dtype = torch.promote_types(boxes1.dtype, boxes2.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    return boxes1.to(dtype), boxes2.to(dtype)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def box_overlap(
    boxes1: Tensor,
    boxes2: Tensor,
    *,
    mode: str = "iou",
    aligned: bool = False,
    fmt: str = "xyxy",
    eps: float = 1e-7,
) -> Tensor:
    """Overlap of boxes, pairwise or aligned, in one fused kernel.

    Args:
        boxes1: Tensor[..., N, 4] (aligned: Tensor[..., 4]).
        boxes2: Tensor[..., M, 4] (aligned: the same shape as boxes1, or broadcastable to it).
            Leading dimensions broadcast.
        mode: "iou", "giou" (generalized), "diou" (distance), "ciou" (complete) or "iof"
            (intersection over the area of the boxes1 box).
        aligned: False for all pairs, True for boxes1[k] with boxes2[k].
        fmt: "xyxy", "xywh" or "cxcywh", read directly (no conversion pass).
        eps: added to the DIoU/CIoU denominators, as in torchvision.

    Returns:
        Tensor[..., N, M] (aligned: Tensor[...]), float32, or float64 for float64 boxes.
        Differentiable with respect to both box sets.
    """
    _check_choice("mode", mode, MODES)
    _check_choice("fmt", fmt, FORMATS)
    boxes1, boxes2 = _as_float_boxes(boxes1, boxes2)
    if aligned:
        if boxes1.shape != boxes2.shape:
            boxes1, boxes2 = torch.broadcast_tensors(boxes1, boxes2)
    elif boxes1.dim() >= 2 and boxes2.dim() >= 2 and boxes1.shape[:-2] != boxes2.shape[:-2]:
        lead = torch.broadcast_shapes(boxes1.shape[:-2], boxes2.shape[:-2])
        boxes1 = boxes1.expand(*lead, *boxes1.shape[-2:])
        boxes2 = boxes2.expand(*lead, *boxes2.shape[-2:])
    return torch.ops.fastops.box_overlap(boxes1, boxes2, mode, fmt, aligned, eps, False)


def box_iou(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> Tensor:
    """Pairwise intersection over union, as ``torchvision.ops.box_iou``.

    Args:
        boxes1: Tensor[..., N, 4]; boxes2: Tensor[..., M, 4].
        fmt: "xyxy", "xywh" or "cxcywh" (torchvision's rotated formats are not supported).

    Returns:
        Tensor[..., N, M], float32 (float64 for float64 boxes).
    """
    if fmt in _ROTATED_FORMATS:
        raise ValueError(
            f"fastops.box_iou supports axis-aligned formats {FORMATS}; rotated format {fmt!r} is not "
            "supported (use torchvision.ops.box_iou)"
        )
    return box_overlap(boxes1, boxes2, mode="iou", fmt=fmt)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU of xyxy boxes, as ``torchvision.ops.generalized_box_iou``.

    boxes1: Tensor[..., N, 4], boxes2: Tensor[..., M, 4] -> Tensor[..., N, M] in [-1, 1].
    """
    return box_overlap(boxes1, boxes2, mode="giou")


def distance_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise distance IoU of xyxy boxes, as ``torchvision.ops.distance_box_iou``.

    boxes1: Tensor[..., N, 4], boxes2: Tensor[..., M, 4] -> Tensor[..., N, M].
    """
    return box_overlap(boxes1, boxes2, mode="diou", eps=eps)


def complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise complete IoU of xyxy boxes, as ``torchvision.ops.complete_box_iou``.

    boxes1: Tensor[..., N, 4], boxes2: Tensor[..., M, 4] -> Tensor[..., N, M].
    """
    return box_overlap(boxes1, boxes2, mode="ciou", eps=eps)


def _overlap_loss(mode: str, boxes1: Tensor, boxes2: Tensor, reduction: str, eps: float, fmt: str) -> Tensor:
    _check_choice("reduction", reduction, _REDUCTIONS)
    _check_choice("fmt", fmt, FORMATS)
    boxes1, boxes2 = _as_float_boxes(boxes1, boxes2)
    if boxes1.shape != boxes2.shape:
        boxes1, boxes2 = torch.broadcast_tensors(boxes1, boxes2)
    loss = 1 - torch.ops.fastops.box_overlap(boxes1, boxes2, mode, fmt, True, eps, True)
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss


def generalized_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7, *, fmt: str = "xyxy"
) -> Tensor:
    """1 - GIoU of aligned boxes, as ``torchvision.ops.generalized_box_iou_loss``.

    Args:
        boxes1, boxes2: Tensor[..., 4] of the same (or broadcastable) shape.
        reduction: "none" (Tensor[...]), "mean" or "sum" (scalars).
        eps: added to the union and to the enclosing area.
        fmt: box format (an extension; torchvision takes xyxy only).
    """
    return _overlap_loss("giou", boxes1, boxes2, reduction, eps, fmt)


def distance_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7, *, fmt: str = "xyxy"
) -> Tensor:
    """1 - DIoU of aligned boxes, as ``torchvision.ops.distance_box_iou_loss``.

    boxes1, boxes2: Tensor[..., 4]; reduction "none" | "mean" | "sum".
    """
    return _overlap_loss("diou", boxes1, boxes2, reduction, eps, fmt)


def complete_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7, *, fmt: str = "xyxy"
) -> Tensor:
    """1 - CIoU of aligned boxes, as ``torchvision.ops.complete_box_iou_loss``.

    boxes1, boxes2: Tensor[..., 4]; reduction "none" | "mean" | "sum". One deliberate difference:
    torchvision applies ``eps`` only to CIoU's alpha and uses 1e-7 for the rest; here ``eps`` is
    used throughout (identical at the default eps).
    """
    return _overlap_loss("ciou", boxes1, boxes2, reduction, eps, fmt)
