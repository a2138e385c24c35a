"""Non-maximum suppression: ``nms`` and ``batched_nms`` (torchvision's), batched multiclass
post-processing for detector heads, soft-NMS and Matrix NMS.

Kernels: ``csrc/nms/``. This file holds the ops' fake kernels (their output sizes depend on the
data, except ``multiclass_nms``, whose outputs are padded to a fixed size) and the public functions,
which script with TorchScript and trace with FX (one node per call).

Ordering: boxes are visited in decreasing score; equal scores keep their index order (a stable
sort, as torchvision's). ``nms`` and ``batched_nms`` return int64 indices in that order, identical
to torchvision's for float32 and float64 boxes. float16 and bfloat16 boxes are compared in float32.
A box is suppressed by a kept box of higher score whose IoU with it is strictly above
``iou_threshold`` (compared in double, as torchvision). Quantized (CPU) boxes and scores are
compared through their integer representations, as torchvision's quantized nms
(``fastops.ops.quantized``).

NaN: a NaN score ranks below every number (as -inf) in ``nms``/``batched_nms`` and Matrix NMS;
soft-NMS ignores NaN-scored boxes, and ``multiclass_nms`` never selects them (NaN is not above
the score threshold). A box with a NaN coordinate has NaN IoU with every box: it never suppresses
another box and is never suppressed (soft-NMS and Matrix NMS read its IoU as 0).

Empty input: ``batched_nms`` returns an empty int64 tensor for empty ``boxes`` whatever the other
arguments are (as torchvision); the others return empty results.

Errors: a bad shape or value raises ``ArgumentError`` (ValueError and RuntimeError, torchvision's
type), a bad dtype ``ArgumentTypeError`` (TypeError and RuntimeError).

Memory: O(N) on the CPU at any N. The CUDA kernels use an N x N bit mask (N^2 / 8 bytes).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._fake import register_fake
from ._jit import script_as, trace_or_type_error
from .errors import as_torch_error

__all__ = [
    "MulticlassNMSOutput",
    "batched_nms",
    "matrix_nms",
    "multiclass_nms",
    "multiclass_nms_to_dicts",
    "nms",
    "soft_nms",
]

# ---- op registration: fake kernels -------------------------------------------------------------
# (No autograd: the outputs are indices, or scores that are not meant to be differentiated.)


def _dynamic_length(boxes: Tensor):
    """The data-dependent number of kept boxes: between 0 and N."""
    n = torch.library.get_ctx().new_dynamic_size()
    torch._check(n <= boxes.shape[0])
    return n


@register_fake("fastops::nms")
def _nms_fake(boxes, scores, idxs, iou_threshold):
    torch._check(boxes.dim() == 2 and boxes.shape[-1] == 4, lambda: "nms: boxes must have shape [N, 4]")
    torch._check(scores.dim() == 1 and scores.shape[0] == boxes.shape[0], lambda: "nms: scores must be [N]")
    return boxes.new_empty(_dynamic_length(boxes), dtype=torch.int64)


@register_fake("fastops::soft_nms")
def _soft_nms_fake(boxes, scores, idxs, iou_threshold, sigma, score_threshold, method):
    n = _dynamic_length(boxes)
    return boxes.new_empty(n, dtype=torch.int64), scores.new_empty(n)


@register_fake("fastops::matrix_nms")
def _matrix_nms_fake(boxes, scores, idxs, kernel, sigma, score_threshold):
    n = _dynamic_length(boxes)
    return boxes.new_empty(n, dtype=torch.int64), scores.new_empty(n)


@register_fake("fastops::multiclass_nms")
def _multiclass_nms_fake(boxes, scores, score_threshold, iou_threshold, topk, max_detections, class_agnostic):
    b = scores.shape[0]
    return (
        boxes.new_empty(b, max_detections, 4),
        scores.new_empty(b, max_detections),
        scores.new_empty(b, max_detections, dtype=torch.int64),
        scores.new_empty(b, dtype=torch.int64),
    )


# ---- public API ----------------------------------------------------------------------------------
# Each public function is written for eager Python; the `_..._script` function named in its
# @script_as is what TorchScript compiles for it (see fastops/ops/_jit.py).


def _nms_script(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    return torch.ops.fastops.nms(boxes, scores, None, iou_threshold)


@script_as(_nms_script)
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``.

    Args:
        boxes: Tensor[N, 4], (x1, y1, x2, y2), float16/bfloat16/float32/float64 or quantized.
        scores: Tensor[N], floating point or quantized.
        iou_threshold: discard boxes with IoU > iou_threshold with a kept box of higher score (>= 0).

    Returns:
        int64 Tensor[K]: indices of the kept boxes, in decreasing score order.
    """
    if not isinstance(boxes, Tensor):
        return trace_or_type_error(nms, (boxes, scores, iou_threshold), "boxes", boxes)
    try:
        return torch.ops.fastops.nms(boxes, scores, None, float(iou_threshold))
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


def _batched_nms_script(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    return torch.ops.fastops.nms(boxes, scores, idxs, iou_threshold)


@script_as(_batched_nms_script)
def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category, as ``torchvision.ops.batched_nms``: boxes of different ``idxs``
    never suppress each other. One kernel for all categories (no coordinate offsets, no loop).

    Args:
        boxes: Tensor[N, 4]; scores: Tensor[N]; idxs: integer Tensor[N], the category of each box.
            Empty ``boxes`` give an empty result whatever the other arguments are.

    Returns:
        int64 Tensor[K]: indices of the kept boxes, in decreasing score order.
    """
    if not isinstance(boxes, Tensor):
        return trace_or_type_error(batched_nms, (boxes, scores, idxs, iou_threshold), "boxes", boxes)
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    try:
        return torch.ops.fastops.nms(boxes, scores, idxs, float(iou_threshold))
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


def _soft_nms_script(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 1e-3,
    method: str = "linear",
    idxs: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    return torch.ops.fastops.soft_nms(boxes, scores, idxs, iou_threshold, sigma, score_threshold, method)


@script_as(_soft_nms_script)
def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 1e-3,
    method: str = "linear",
    idxs: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al., 2017), with mmcv's ``soft_nms`` rules.

    Repeatedly selects the box of highest current score (ties: the lowest index) and decays the
    scores of the others: ``method="linear"`` multiplies by (1 - IoU) where IoU >= iou_threshold,
    ``"gaussian"`` by exp(-IoU^2 / sigma). After each round, boxes below ``score_threshold`` are
    dropped. With ``idxs``, only boxes of the selected box's category decay.

    Returns:
        (keep, scores): int64 Tensor[K], the selected indices in selection order, and their
        scores when selected (in ``scores``' dtype).
    """
    if not isinstance(boxes, Tensor):
        args = (boxes, scores, iou_threshold, sigma, score_threshold, method, idxs)
        return trace_or_type_error(soft_nms, args, "boxes", boxes)
    try:
        return torch.ops.fastops.soft_nms(
            boxes, scores, idxs, float(iou_threshold), float(sigma), float(score_threshold), method
        )
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


def _matrix_nms_script(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor | None = None,
    kernel: str = "gaussian",
    sigma: float = 2.0,
    score_threshold: float | None = None,
) -> tuple[Tensor, Tensor]:
    threshold = -math.inf if score_threshold is None else score_threshold
    return torch.ops.fastops.matrix_nms(boxes, scores, idxs, kernel, sigma, threshold)


@script_as(_matrix_nms_script)
def matrix_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor | None = None,
    kernel: str = "gaussian",
    sigma: float = 2.0,
    score_threshold: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Matrix NMS (SOLOv2, Wang et al., 2020) on boxes: every box's score decays in parallel by
    min over higher-scored boxes i of its category of f(IoU_ij) / f(compensate_i), where
    compensate_i is box i's own largest IoU with a higher-scored box; f(x) = exp(-sigma x^2)
    (``kernel="gaussian"``) or 1 - x (``"linear"``), as in mmdet's ``mask_matrix_nms``.

    Returns:
        (keep, scores): int64 indices of the boxes whose decayed score is >= score_threshold
        (all, when None), sorted by decayed score, and those decayed scores.
    """
    if not isinstance(boxes, Tensor):
        args = (boxes, scores, idxs, kernel, sigma, score_threshold)
        return trace_or_type_error(matrix_nms, args, "boxes", boxes)
    threshold = -math.inf if score_threshold is None else float(score_threshold)
    try:
        return torch.ops.fastops.matrix_nms(boxes, scores, idxs, kernel, float(sigma), threshold)
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


class MulticlassNMSOutput(NamedTuple):
    """Fixed-size results of ``multiclass_nms`` (B images, D = max_detections)."""

    boxes: Tensor  # [B, D, 4], zeros past num_detections
    scores: Tensor  # [B, D], zeros past num_detections
    labels: Tensor  # [B, D] int64, -1 past num_detections
    num_detections: Tensor  # [B] int64


def _multiclass_nms_script(
    boxes: Tensor,
    scores: Tensor,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    topk: int = 1000,
    max_detections: int = 100,
    class_agnostic: bool = False,
) -> MulticlassNMSOutput:
    if boxes.dtype != scores.dtype:
        dtype = torch.promote_types(boxes.dtype, scores.dtype)
        boxes, scores = boxes.to(dtype), scores.to(dtype)
    out = torch.ops.fastops.multiclass_nms(
        boxes, scores, score_threshold, iou_threshold, topk, max_detections, class_agnostic
    )
    return MulticlassNMSOutput(out[0], out[1], out[2], out[3])


@script_as(_multiclass_nms_script)
def multiclass_nms(
    boxes: Tensor,
    scores: Tensor,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    topk: int = 1000,
    max_detections: int = 100,
    class_agnostic: bool = False,
) -> MulticlassNMSOutput:
    """Detector-head post-processing for a batch, in one op (as RetinaNet's, per image):
    candidates (anchor, class) with score > score_threshold; the ``topk`` best; NMS per class (or
    across classes with ``class_agnostic``); at most ``max_detections`` kept, by decreasing score.

    Args:
        boxes: Tensor[B, N, 4] (one box per anchor) or Tensor[B, N, C, 4] (one per class), xyxy.
        scores: Tensor[B, N, C], probabilities (not logits), same dtype as boxes.

    Returns:
        MulticlassNMSOutput of fixed shapes, so it works under torch.compile and torch.export;
        ``multiclass_nms_to_dicts`` turns it into one dict per image.
    """
    if not isinstance(boxes, Tensor) or not isinstance(scores, Tensor):
        args = (boxes, scores, score_threshold, iou_threshold, topk, max_detections, class_agnostic)
        bad = ("boxes", boxes) if not isinstance(boxes, Tensor) else ("scores", scores)
        return trace_or_type_error(multiclass_nms, args, *bad)
    try:
        return _multiclass_nms_script(
            boxes,
            scores,
            float(score_threshold),
            float(iou_threshold),
            int(topk),
            int(max_detections),
            bool(class_agnostic),
        )
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


def multiclass_nms_to_dicts(output: MulticlassNMSOutput) -> list[dict[str, Tensor]]:
    """One dict per image with "boxes" [K, 4], "scores" [K] and "labels" [K] (torchvision's
    detection format), cut at each image's number of detections."""
    counts: list[int] = output.num_detections.tolist()
    results: list[dict[str, Tensor]] = []
    for i, k in enumerate(counts):
        results.append({"boxes": output.boxes[i, :k], "scores": output.scores[i, :k], "labels": output.labels[i, :k]})
    return results
