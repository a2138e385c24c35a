"""Losses for imbalanced data: sigmoid focal loss (torchvision's, extended), softmax focal loss,
and class- and sample-weighted binary cross-entropy, each a fused kernel (``csrc/focal_loss/``):
one pass over the logits forward, one backward, saving only the inputs, targets and weights.

Targets are either dense (the inputs' shape, values in [0, 1], soft labels allowed) or class
indices (int64, the inputs' shape without the last, class dimension), as detector heads produce
them: for the sigmoid losses an index row has a 1 at its class, none at ``background_index``
(default: the number of classes), and a row at ``ignore_index`` contributes nothing.

Weights: ``class_weight`` [C] and ``sample_weight`` (one per row, the inputs' shape without the
class dimension) multiply each term, together with the focal alpha; they get no gradient.
``class_weights`` computes class weights from label counts.

Reductions: "none", "sum", "mean" (the sum over the number of non-ignored terms: elements for the
sigmoid losses, rows for the softmax one; NaN when there are none, as torch's mean of nothing).
``normalizer`` (a number or a tensor, e.g. RetinaNet's number of foreground anchors) divides the
result, as a tensor operation: no host sync.

NaN and Inf: a NaN or infinite logit gives a non-finite loss and gradient (NaN, or Inf where the
loss itself diverges) for its element (sigmoid losses) or its row (softmax loss); the other
elements and rows are unaffected. In the softmax loss a -inf logit is a class of probability 0 (as
in torch's cross-entropy): the row stays finite unless that class is the target.

float16 and bfloat16 logits are computed in float32 (float64 for float64) and the loss and
gradient returned in the logits' dtype. Loss and gradient stay finite for any finite logit
(tested to +-1e4) and any gamma >= 0; torchvision's gradient is NaN at saturated logits when
gamma < 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "class_weights",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "weighted_bce_with_logits",
]

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}

# ---- op registration: fake kernels and autograd ------------------------------------------------


@torch.library.register_fake("fastops::sigmoid_focal_loss")
def _sigmoid_fake(
    inputs, targets, class_weight, pos_weight, sample_weight, alpha, gamma, reduction, background_index, ignore_index
):
    return torch.empty_like(inputs) if reduction == 0 else inputs.new_empty(())


@torch.library.register_fake("fastops::sigmoid_focal_loss_backward")
def _sigmoid_backward_fake(grad, inputs, *args):
    return torch.empty_like(inputs)


@torch.library.register_fake("fastops::softmax_focal_loss")
def _softmax_fake(inputs, targets, class_weight, sample_weight, alpha, gamma, reduction, ignore_index):
    return inputs.new_empty(targets.shape) if reduction == 0 else inputs.new_empty(())


@torch.library.register_fake("fastops::softmax_focal_loss_backward")
def _softmax_backward_fake(grad, inputs, *args):
    return torch.empty_like(inputs)


def _register_autograd(name: str, n_tensors: int) -> None:
    """Autograd for an op whose first n_tensors arguments are tensors (or None): the gradient goes
    to the logits only; the backward op takes the upstream gradient then the same arguments."""

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:n_tensors])
        ctx.args = inputs[n_tensors:]

    backward_op = getattr(torch.ops.fastops, f"{name}_backward")

    def backward(ctx, grad):
        grad_inputs = backward_op(grad, *ctx.saved_tensors, *ctx.args)
        return (grad_inputs if ctx.needs_input_grad[0] else None,) + (None,) * (n_tensors - 1 + len(ctx.args))

    torch.library.register_autograd(f"fastops::{name}", backward, setup_context=setup_context)


_register_autograd("sigmoid_focal_loss", 5)  # inputs, targets, class_weight, pos_weight, sample_weight
_register_autograd("softmax_focal_loss", 4)  # inputs, targets, class_weight, sample_weight

# ---- public API ----------------------------------------------------------------------------------


def reduction_code(reduction: str) -> int:
    """The ops' code for a reduction name ("none", "mean", "sum"); ValueError for another."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Invalid Value for arg 'reduction': {reduction!r}; supported: 'none', 'mean', 'sum'")
    return _REDUCTIONS[reduction]


def _targets(inputs: Tensor, targets: Tensor) -> Tensor:
    """Class indices as int64; dense targets (float or bool) in the inputs' dtype."""
    if not isinstance(targets, Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if targets.dtype == torch.bool or targets.is_floating_point():
        return targets.to(inputs.dtype)
    return targets.long()


def _normalize(loss: Tensor, normalizer) -> Tensor:
    return loss if normalizer is None else loss / normalizer


def _sigmoid(
    inputs,
    targets,
    *,
    alpha,
    gamma,
    reduction,
    class_weight,
    pos_weight,
    sample_weight,
    normalizer,
    background_index,
    ignore_index,
) -> Tensor:
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    classes = inputs.shape[-1] if inputs.dim() > 0 else 1
    background = classes if background_index is None else int(background_index)
    loss = torch.ops.fastops.sigmoid_focal_loss(
        inputs,
        _targets(inputs, targets),
        class_weight,
        pos_weight,
        sample_weight,
        float(alpha),
        float(gamma),
        reduction_code(reduction),
        background,
        int(ignore_index),
    )
    return _normalize(loss, normalizer)


def sigmoid_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2,
    reduction: str = "none",
    *,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalizer: float | Tensor | None = None,
    background_index: int | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Focal loss of Lin et al. (2017), as ``torchvision.ops.sigmoid_focal_loss`` (same values and
    gradients), fused, with index targets and weights.

    Args:
        inputs: logits, Tensor[..., C], float16/bfloat16/float32/float64.
        targets: dense Tensor[..., C] in [0, 1], or int64 class indices Tensor[...].
        alpha: weight of the positives in [0, 1] (negatives get 1 - alpha); negative: none.
        gamma: focusing exponent, >= 0.
        reduction: "none" (Tensor[..., C]), "mean" or "sum" (scalars).
        class_weight: Tensor[C]; sample_weight: Tensor[...] (one per row).
        normalizer: divides the (reduced) loss; a tensor stays on its device.
        background_index: the index target meaning "no class" (default C).
        ignore_index: the index target whose row is ignored.
    """
    return _sigmoid(
        inputs,
        targets,
        alpha=alpha,
        gamma=gamma,
        reduction=reduction,
        class_weight=class_weight,
        pos_weight=None,
        sample_weight=sample_weight,
        normalizer=normalizer,
        background_index=background_index,
        ignore_index=ignore_index,
    )


def weighted_bce_with_logits(
    inputs: Tensor,
    targets: Tensor,
    *,
    pos_weight: Tensor | None = None,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    reduction: str = "mean",
    normalizer: float | Tensor | None = None,
    background_index: int | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Binary cross-entropy with logits for multi-label classification, weighted per class and
    per sample: ``F.binary_cross_entropy_with_logits(inputs, targets, weight=class_weight *
    sample_weight, pos_weight=pos_weight)``, fused, and with index targets as the focal loss.

    Args: as ``sigmoid_focal_loss``; pos_weight: Tensor[C], the weight of each class's positives.
    """
    return _sigmoid(
        inputs,
        targets,
        alpha=-1.0,
        gamma=0.0,
        reduction=reduction,
        class_weight=class_weight,
        pos_weight=pos_weight,
        sample_weight=sample_weight,
        normalizer=normalizer,
        background_index=background_index,
        ignore_index=ignore_index,
    )


def softmax_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    gamma: float = 2.0,
    *,
    alpha: float | None = None,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    reduction: str = "mean",
    normalizer: float | Tensor | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Multi-class focal loss: -alpha w_y (1 - p_y)^gamma log p_y with p = softmax over the last
    dimension, fused (gamma = 0 is cross-entropy).

    Args:
        inputs: logits Tensor[..., C]; targets: int64 class indices Tensor[...].
        alpha: a constant factor (mmcv's), None for 1. class_weight: Tensor[C]; sample_weight: Tensor[...].
        reduction: "none" (Tensor[...]), "mean" (over non-ignored rows) or "sum".
    """
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    loss = torch.ops.fastops.softmax_focal_loss(
        inputs,
        _targets(inputs, targets),
        class_weight,
        sample_weight,
        1.0 if alpha is None else float(alpha),
        float(gamma),
        reduction_code(reduction),
        int(ignore_index),
    )
    return _normalize(loss, normalizer)


def class_weights(counts: Tensor, method: str = "inverse", *, beta: float = 0.999) -> Tensor:
    """Per-class weights from label counts, scaled so that the counted examples keep their total
    weight (sum_c w_c n_c = sum_c n_c); classes with no examples get weight 0.

    Args:
        counts: Tensor[C] of label frequencies (any number type).
        method: "inverse" (w ~ 1 / n), "inverse_sqrt" (w ~ 1 / sqrt(n)), or "effective_number"
            (Cui et al. 2019: w ~ (1 - beta) / (1 - beta^n)).
        beta: for "effective_number", in [0, 1).

    Returns:
        float32 Tensor[C] (float64 for float64 counts).
    """
    if not isinstance(counts, Tensor) or counts.dim() != 1:
        raise ValueError(f"counts must be a 1-D tensor of label frequencies, got {counts!r}")
    n = counts.to(torch.float64 if counts.dtype == torch.float64 else torch.float32)
    if (n < 0).any() or not torch.isfinite(n).all():
        raise ValueError("counts must be finite and >= 0")
    present = n > 0
    safe = torch.where(present, n, torch.ones_like(n))
    if method == "inverse":
        raw = 1.0 / safe
    elif method == "inverse_sqrt":
        raw = safe.rsqrt()
    elif method == "effective_number":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        raw = (1.0 - beta) / -torch.expm1(safe * math.log(beta)) if beta > 0 else torch.ones_like(n)
    else:
        raise ValueError(f"method must be 'inverse', 'inverse_sqrt' or 'effective_number', got {method!r}")
    raw = torch.where(present, raw, torch.zeros_like(raw))
    total = n.sum()
    return raw * (total / (raw * n).sum()) if total > 0 else raw
