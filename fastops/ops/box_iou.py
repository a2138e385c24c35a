"""IoU-family box ops: IoU, GIoU, DIoU, CIoU and IoF, pairwise (N x M) and aligned (N with N), and
the box-regression losses built on them.

Kernels: ``csrc/box_iou/`` (one fused kernel per mode: the output is written once, with no N x M
temporaries). This file holds the op's Python side: fake kernels and autograd registration, then
the public functions. Saved for backward: both box sets (the gradient is recomputed from them).

torchvision-compatible: ``box_iou``, ``generalized_box_iou``, ``distance_box_iou``,
``complete_box_iou`` and the three ``*_box_iou_loss`` functions take the same arguments and give the
same results (float32 to a few ulp, float64 to rounding), script with TorchScript and trace with
FX. Beyond torchvision: ``box_overlap(..., mode=, aligned=, fmt=)`` reaches every mode in both
forms and every box format, and the losses accept ``fmt=``.

dtypes: float16, bfloat16, float32 and float64 boxes are read directly; arithmetic runs in float32
(float64 for float64 boxes), and the result is float32 (float64), as torchvision's. Integer boxes
are converted to float32 first. Mixed dtypes are promoted. Autocast leaves these ops alone: they
are precision-neutral, never computing in half precision.

Edge values (documented and tested): a ratio whose denominator is exactly 0 gives 0 where
torchvision gives NaN or Inf (two zero-area boxes have IoU 0); CIoU's aspect-ratio term is 0 for
a box with zero width and zero height; a NaN or infinite coordinate gives NaN for every pair that
box is in, and NaN gradients. Empty inputs give empty outputs.

Errors: a bad shape or value raises ``ArgumentError`` (ValueError and RuntimeError), a bad dtype
``ArgumentTypeError`` (TypeError and RuntimeError); see ``fastops.ops.errors``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._fake import register_fake
from ._jit import script_as, trace_or_type_error
from .errors import ArgumentError, ArgumentTypeError, as_torch_error
from .reduction import reduction_code

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

# ---- op registration: fake kernels and autograd ------------------------------------------------


@register_fake("fastops::box_overlap")
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


@register_fake("fastops::box_overlap_backward")
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
# Each public function is written for eager Python; the `_..._script` function (or the shared
# helper) named in its @script_as is what TorchScript compiles for it (see fastops/ops/_jit.py).


def _check_choice(name: str, value: str, allowed: list[str]) -> None:
    if value not in allowed:
        raise ArgumentError(name + " must be one of " + str(allowed) + ", got '" + value + "'")


def _as_float_boxes(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Both box sets in one floating dtype (promoted; integers become float32)."""
    for name, t in (("boxes1", boxes1), ("boxes2", boxes2)):
        if t.dtype == torch.bool or t.is_complex():
            raise ArgumentTypeError(name + " must hold real numbers, got dtype " + str(t.dtype))
    dtype = torch.promote_types(boxes1.dtype, boxes2.dtype)
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        dtype = torch.float32
    if boxes1.dtype != dtype:
        boxes1 = boxes1.to(dtype)
    if boxes2.dtype != dtype:
        boxes2 = boxes2.to(dtype)
    return boxes1, boxes2


def _box_overlap(
    boxes1: Tensor, boxes2: Tensor, mode: str = "iou", aligned: bool = False, fmt: str = "xyxy", eps: float = 1e-7
) -> Tensor:
    _check_choice("mode", mode, ["iou", "giou", "diou", "ciou", "iof"])
    _check_choice("fmt", fmt, ["xyxy", "xywh", "cxcywh"])
    boxes1, boxes2 = _as_float_boxes(boxes1, boxes2)
    if aligned:
        if boxes1.shape != boxes2.shape:
            expanded = torch.broadcast_tensors(boxes1, boxes2)
            boxes1, boxes2 = expanded[0], expanded[1]
    elif boxes1.dim() >= 2 and boxes2.dim() >= 2 and boxes1.shape[:-2] != boxes2.shape[:-2]:
        # broadcast the leading dimensions (on empty stand-ins: TorchScript has no broadcast_shapes)
        lead = torch.broadcast_tensors(boxes1[..., :0, 0], boxes2[..., :0, 0])[0].shape[:-1]
        boxes1 = boxes1.expand(list(lead) + list(boxes1.shape[-2:]))
        boxes2 = boxes2.expand(list(lead) + list(boxes2.shape[-2:]))
    return torch.ops.fastops.box_overlap(boxes1, boxes2, mode, fmt, aligned, eps, False)


@script_as(_box_overlap)
def box_overlap(
    boxes1: Tensor,
    boxes2: Tensor,
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
    if not isinstance(boxes1, Tensor) or not isinstance(boxes2, Tensor):
        bad = ("boxes1", boxes1) if not isinstance(boxes1, Tensor) else ("boxes2", boxes2)
        return trace_or_type_error(box_overlap, (boxes1, boxes2, mode, aligned, fmt, eps), *bad)
    try:
        return _box_overlap(boxes1, boxes2, mode, aligned, fmt, eps)
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


def _pairwise(public, args: tuple, mode: str, eps: float, fmt: str = "xyxy") -> Tensor:
    """The pairwise functions' eager body: ``args`` are the public function's arguments, the two
    box sets first."""
    boxes1, boxes2 = args[0], args[1]
    if not isinstance(boxes1, Tensor) or not isinstance(boxes2, Tensor):
        bad = ("boxes1", boxes1) if not isinstance(boxes1, Tensor) else ("boxes2", boxes2)
        return trace_or_type_error(public, args, *bad)
    try:
        return _box_overlap(boxes1, boxes2, mode, False, fmt, eps)
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


def _box_iou_script(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> Tensor:
    if fmt in ["cxcywhr", "xywhr", "xyxyxyxy"]:
        raise ArgumentError(
            "fastops.box_iou supports the axis-aligned formats xyxy, xywh and cxcywh; rotated format '"
            + fmt
            + "' is not supported (use torchvision.ops.box_iou)"
        )
    return _box_overlap(boxes1, boxes2, "iou", False, fmt, 1e-7)


@script_as(_box_iou_script)
def box_iou(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> Tensor:
    """Pairwise intersection over union, as ``torchvision.ops.box_iou``.

    Args:
        boxes1: Tensor[..., N, 4]; boxes2: Tensor[..., M, 4].
        fmt: "xyxy", "xywh" or "cxcywh" (torchvision's rotated formats are not supported).

    Returns:
        Tensor[..., N, M], float32 (float64 for float64 boxes).
    """
    if fmt in ("cxcywhr", "xywhr", "xyxyxyxy"):
        return _box_iou_script(boxes1, boxes2, fmt)  # raises
    return _pairwise(box_iou, (boxes1, boxes2, fmt), "iou", 1e-7, fmt)


def _generalized_box_iou_script(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    return _box_overlap(boxes1, boxes2, "giou", False, "xyxy", 1e-7)


@script_as(_generalized_box_iou_script)
def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU of xyxy boxes, as ``torchvision.ops.generalized_box_iou``.

    boxes1: Tensor[..., N, 4], boxes2: Tensor[..., M, 4] -> Tensor[..., N, M] in [-1, 1].
    """
    return _pairwise(generalized_box_iou, (boxes1, boxes2), "giou", 1e-7)


def _distance_box_iou_script(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    return _box_overlap(boxes1, boxes2, "diou", False, "xyxy", eps)


@script_as(_distance_box_iou_script)
def distance_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise distance IoU of xyxy boxes, as ``torchvision.ops.distance_box_iou``.

    boxes1: Tensor[..., N, 4], boxes2: Tensor[..., M, 4] -> Tensor[..., N, M].
    """
    return _pairwise(distance_box_iou, (boxes1, boxes2, eps), "diou", float(eps))


def _complete_box_iou_script(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    return _box_overlap(boxes1, boxes2, "ciou", False, "xyxy", eps)


@script_as(_complete_box_iou_script)
def complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise complete IoU of xyxy boxes, as ``torchvision.ops.complete_box_iou``.

    boxes1: Tensor[..., N, 4], boxes2: Tensor[..., M, 4] -> Tensor[..., N, M].
    """
    return _pairwise(complete_box_iou, (boxes1, boxes2, eps), "ciou", float(eps))


def _overlap_loss(mode: str, boxes1: Tensor, boxes2: Tensor, reduction: str, eps: float, fmt: str) -> Tensor:
    code = reduction_code(reduction)
    _check_choice("fmt", fmt, ["xyxy", "xywh", "cxcywh"])
    boxes1, boxes2 = _as_float_boxes(boxes1, boxes2)
    if boxes1.shape != boxes2.shape:
        expanded = torch.broadcast_tensors(boxes1, boxes2)
        boxes1, boxes2 = expanded[0], expanded[1]
    loss = 1 - torch.ops.fastops.box_overlap(boxes1, boxes2, mode, fmt, True, eps, True)
    if code == 1:
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if code == 2:
        return loss.sum()
    return loss


def _loss(public, mode: str, boxes1, boxes2, reduction: str, eps: float, fmt: str) -> Tensor:
    """The losses' eager body: _overlap_loss, with FX's node and torch's error types."""
    if not isinstance(boxes1, Tensor) or not isinstance(boxes2, Tensor):
        bad = ("boxes1", boxes1) if not isinstance(boxes1, Tensor) else ("boxes2", boxes2)
        return trace_or_type_error(public, (boxes1, boxes2, reduction, eps, fmt), *bad)
    try:
        return _overlap_loss(mode, boxes1, boxes2, reduction, float(eps), fmt)
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


def _generalized_box_iou_loss_script(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7, fmt: str = "xyxy"
) -> Tensor:
    return _overlap_loss("giou", boxes1, boxes2, reduction, eps, fmt)


@script_as(_generalized_box_iou_loss_script)
def generalized_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7, fmt: str = "xyxy"
) -> Tensor:
    """1 - GIoU of aligned boxes, as ``torchvision.ops.generalized_box_iou_loss``.

    Args:
        boxes1, boxes2: Tensor[..., 4] of the same (or broadcastable) shape.
        reduction: "none" (Tensor[...]), "mean" or "sum" (scalars; the mean of no boxes is 0, with
            a zero gradient, as torchvision).
        eps: added to the union and to the enclosing area.
        fmt: box format (an extension; torchvision takes xyxy only).
    """
    return _loss(generalized_box_iou_loss, "giou", boxes1, boxes2, reduction, eps, fmt)


def _distance_box_iou_loss_script(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7, fmt: str = "xyxy"
) -> Tensor:
    return _overlap_loss("diou", boxes1, boxes2, reduction, eps, fmt)


@script_as(_distance_box_iou_loss_script)
def distance_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7, fmt: str = "xyxy"
) -> Tensor:
    """1 - DIoU of aligned boxes, as ``torchvision.ops.distance_box_iou_loss``.

    boxes1, boxes2: Tensor[..., 4]; reduction "none" | "mean" | "sum".
    """
    return _loss(distance_box_iou_loss, "diou", boxes1, boxes2, reduction, eps, fmt)


def _complete_box_iou_loss_script(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7, fmt: str = "xyxy"
) -> Tensor:
    return _overlap_loss("ciou", boxes1, boxes2, reduction, eps, fmt)


@script_as(_complete_box_iou_loss_script)
def complete_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7, fmt: str = "xyxy"
) -> Tensor:
    """1 - CIoU of aligned boxes, as ``torchvision.ops.complete_box_iou_loss``.

    boxes1, boxes2: Tensor[..., 4]; reduction "none" | "mean" | "sum". One deliberate difference:
    torchvision applies ``eps`` only to CIoU's alpha and uses 1e-7 for the rest; here ``eps`` is
    used throughout (identical at the default eps).
    """
    return _loss(complete_box_iou_loss, "ciou", boxes1, boxes2, reduction, eps, fmt)
