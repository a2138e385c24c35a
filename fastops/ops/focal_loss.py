"""Losses for imbalanced data: sigmoid focal loss (torchvision's, extended), softmax focal loss,
and class- and sample-weighted binary cross-entropy, each a fused kernel (``csrc/focal_loss/``):
one pass over the logits forward, one backward. Saved for backward: the logits, the targets and the
weights (no intermediate of the forward).

Sigmoid focal loss (Lin et al., 2017), per element, as torchvision:
``loss = alpha_t * (ce * (1 - p_t) ** gamma)`` with ``ce`` the binary cross-entropy with logits,
``p_t = p t + (1 - p)(1 - t)``, ``alpha_t = alpha t + (1 - alpha)(1 - t)`` (alpha < 0: 1).
``ce`` is torch's ``binary_cross_entropy_with_logits``, operation for operation and rounded in the
logits' dtype as torch rounds, except that log1p(exp(-|x|)) is taken up to 2^-20 (relative) below
torch's own value, never above it; the modulating factor ``(1 - p_t) ** gamma`` (1 - p formed as
sigmoid(-x), without cancellation) and alpha_t are at most 1. So the loss never exceeds torch's
cross-entropy of the same element, exactly, in every dtype and for every gamma. Accuracy: at
gamma = 0, alpha < 0 the loss is torch's cross-entropy or below it by at most 2^-19 of it plus two
units in the last place of |x| (tests/test_torchvision_compat.py; measured figures in the README's
compatibility section).

Targets are either dense (the inputs' shape, values in [0, 1], soft labels allowed) or class
indices (int64, the inputs' shape without the last, class dimension), as detector heads produce
them: for the sigmoid losses an index row has a 1 at its class, none at ``background_index``
(default: the number of classes), and a row at ``ignore_index`` contributes nothing.

Weights: ``class_weight`` [C] and ``sample_weight`` (one per row, the inputs' shape without the
class dimension) multiply each term, together with the focal alpha; they get no gradient.
``class_weights`` computes class weights from label counts.

Reductions: "none", "sum", "mean" (the sum over the number of non-ignored terms: elements for the
sigmoid losses, rows for the softmax one; NaN when there are none, as torch's mean of nothing).
Sums are accumulated in double. ``normalizer`` (a number or a tensor, e.g. RetinaNet's number of
foreground anchors) divides the result, as a tensor operation: no host sync.

NaN and Inf: a NaN or infinite logit gives a non-finite loss and gradient (NaN, or Inf where the
loss itself diverges) for its element (sigmoid losses) or its row (softmax loss); the other
elements and rows are unaffected. In the softmax loss a -inf logit is a class of probability 0 (as
in torch's cross-entropy): the row stays finite unless that class is the target.

float16 and bfloat16 logits are computed in float32 (float64 for float64) and the loss and
gradient returned in the logits' dtype. Loss and gradient stay finite for any finite logit
(tested to +-1e4) and any gamma >= 0; torchvision's gradient is NaN at saturated logits when
gamma < 1.

TorchScript and FX: the functions script, and ``torch.fx.symbolic_trace`` records each call as one
node. Errors: an unknown reduction or an alpha above 1 raise ``ArgumentError`` with torchvision's
wording ("Invalid ..."), a ValueError; see ``fastops.ops.errors`` for the rest.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._fake import register_fake
from ._jit import script_as, trace_or_type_error
from .errors import ArgumentError, as_torch_error
from .reduction import reduction_code

__all__ = [
    "class_weights",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "weighted_bce_with_logits",
]

# ---- op registration: fake kernels and autograd ------------------------------------------------


@register_fake("fastops::sigmoid_focal_loss")
def _sigmoid_fake(
    inputs, targets, class_weight, pos_weight, sample_weight, alpha, gamma, reduction, background_index, ignore_index
):
    return torch.empty_like(inputs) if reduction == 0 else inputs.new_empty(())


@register_fake("fastops::sigmoid_focal_loss_backward")
def _sigmoid_backward_fake(grad, inputs, *args):
    return torch.empty_like(inputs)


@register_fake("fastops::softmax_focal_loss")
def _softmax_fake(inputs, targets, class_weight, sample_weight, alpha, gamma, reduction, ignore_index):
    return inputs.new_empty(targets.shape) if reduction == 0 else inputs.new_empty(())


@register_fake("fastops::softmax_focal_loss_backward")
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
# Each public function is written for eager Python; the `_..._script` function named in its
# @script_as is what TorchScript compiles for it (see fastops/ops/_jit.py).


def _targets(inputs: Tensor, targets: Tensor) -> Tensor:
    """Class indices as int64; dense targets (float or bool) in the inputs' dtype."""
    if targets.dtype == torch.bool or targets.is_floating_point():
        return targets.to(inputs.dtype)
    return targets.long()


def _normalize(loss: Tensor, normalizer: float | Tensor | None) -> Tensor:
    if normalizer is None:
        return loss
    if isinstance(normalizer, Tensor):
        return loss / normalizer
    return loss / float(normalizer)


def _sigmoid(
    inputs: Tensor,
    targets: Tensor,
    alpha: float,
    gamma: float,
    reduction: str,
    class_weight: Tensor | None,
    pos_weight: Tensor | None,
    sample_weight: Tensor | None,
    normalizer: float | Tensor | None,
    background_index: int | None,
    ignore_index: int,
) -> Tensor:
    code = reduction_code(reduction)
    if not alpha <= 1.0:  # NaN too
        raise ArgumentError(
            "Invalid alpha value: " + str(alpha) + ". alpha must be in the range [0, 1], or negative for none"
        )
    classes = inputs.shape[-1] if inputs.dim() > 0 else 1
    background = classes if background_index is None else background_index
    loss = torch.ops.fastops.sigmoid_focal_loss(
        inputs,
        _targets(inputs, targets),
        class_weight,
        pos_weight,
        sample_weight,
        alpha,
        gamma,
        code,
        background,
        ignore_index,
    )
    return _normalize(loss, normalizer)


def _eager(public, args: tuple, impl, impl_args: tuple) -> Tensor:
    """The losses' eager body: ``impl(*impl_args)`` with FX's node (``args``: the public
    function's arguments, inputs and targets first) and torch's error types."""
    inputs, targets = args[0], args[1]
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        bad = ("inputs", inputs) if not isinstance(inputs, Tensor) else ("targets", targets)
        return trace_or_type_error(public, args, *bad)
    try:
        return impl(*impl_args)
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


def _sigmoid_focal_loss_script(
    inputs: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalizer: float | Tensor | None = None,
    background_index: int | None = None,
    ignore_index: int = -100,
) -> Tensor:
    return _sigmoid(
        inputs,
        targets,
        alpha,
        gamma,
        reduction,
        class_weight,
        None,
        sample_weight,
        normalizer,
        background_index,
        ignore_index,
    )


@script_as(_sigmoid_focal_loss_script)
def sigmoid_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    normalizer: float | Tensor | None = None,
    background_index: int | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Focal loss of Lin et al. (2017), as ``torchvision.ops.sigmoid_focal_loss`` (its values and
    gradients; never above torch's cross-entropy, see the module docstring), fused, with index
    targets and weights.

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

    The arguments after ``reduction`` (fastops' extensions) are best passed by keyword.
    """
    args = (inputs, targets, alpha, gamma, reduction, class_weight, sample_weight, normalizer)
    impl_args = (
        inputs,
        targets,
        float(alpha),
        float(gamma),
        reduction,
        class_weight,
        None,
        sample_weight,
        normalizer,
        None if background_index is None else int(background_index),
        int(ignore_index),
    )
    return _eager(sigmoid_focal_loss, (*args, background_index, ignore_index), _sigmoid, impl_args)


def _weighted_bce_with_logits_script(
    inputs: Tensor,
    targets: Tensor,
    pos_weight: Tensor | None = None,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    reduction: str = "mean",
    normalizer: float | Tensor | None = None,
    background_index: int | None = None,
    ignore_index: int = -100,
) -> Tensor:
    return _sigmoid(
        inputs,
        targets,
        -1.0,
        0.0,
        reduction,
        class_weight,
        pos_weight,
        sample_weight,
        normalizer,
        background_index,
        ignore_index,
    )


@script_as(_weighted_bce_with_logits_script)
def weighted_bce_with_logits(
    inputs: Tensor,
    targets: Tensor,
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

    Args: as ``sigmoid_focal_loss`` (best passed by keyword); pos_weight: Tensor[C], the weight of
    each class's positives.
    """
    args = (inputs, targets, pos_weight, class_weight, sample_weight, reduction, normalizer)
    impl_args = (
        inputs,
        targets,
        -1.0,
        0.0,
        reduction,
        class_weight,
        pos_weight,
        sample_weight,
        normalizer,
        None if background_index is None else int(background_index),
        int(ignore_index),
    )
    return _eager(weighted_bce_with_logits, (*args, background_index, ignore_index), _sigmoid, impl_args)


def _softmax_focal_loss_script(
    inputs: Tensor,
    targets: Tensor,
    gamma: float = 2.0,
    alpha: float | None = None,
    class_weight: Tensor | None = None,
    sample_weight: Tensor | None = None,
    reduction: str = "mean",
    normalizer: float | Tensor | None = None,
    ignore_index: int = -100,
) -> Tensor:
    loss = torch.ops.fastops.softmax_focal_loss(
        inputs,
        _targets(inputs, targets),
        class_weight,
        sample_weight,
        1.0 if alpha is None else alpha,
        gamma,
        reduction_code(reduction),
        ignore_index,
    )
    return _normalize(loss, normalizer)


@script_as(_softmax_focal_loss_script)
def softmax_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    gamma: float = 2.0,
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

    The arguments after ``gamma`` are best passed by keyword.
    """
    args = (inputs, targets, gamma, alpha, class_weight, sample_weight, reduction, normalizer, ignore_index)
    impl_args = (
        inputs,
        targets,
        float(gamma),
        None if alpha is None else float(alpha),
        class_weight,
        sample_weight,
        reduction,
        normalizer,
        int(ignore_index),
    )
    return _eager(softmax_focal_loss, args, _softmax_focal_loss_script, impl_args)


def class_weights(counts: Tensor, method: str = "inverse", beta: float = 0.999) -> Tensor:
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
        raise ArgumentError("counts must be a 1-D tensor of label frequencies, got shape " + str(list(counts.shape)))
    n = counts.to(torch.float64 if counts.dtype == torch.float64 else torch.float32)
    if bool((n < 0).any()) or not bool(torch.isfinite(n).all()):
        raise ArgumentError("counts must be finite and >= 0")
    present = n > 0
    safe = torch.where(present, n, torch.ones_like(n))
    if method == "inverse":
        raw = 1.0 / safe
    elif method == "inverse_sqrt":
        raw = safe.rsqrt()
    elif method == "effective_number":
        if not 0.0 <= beta < 1.0:
            raise ArgumentError("beta must be in [0, 1), got " + str(beta))
        raw = (1.0 - beta) / -torch.expm1(safe * math.log(beta)) if beta > 0 else torch.ones_like(n)
    else:
        raise ArgumentError("method must be 'inverse', 'inverse_sqrt' or 'effective_number', got '" + method + "'")
    raw = torch.where(present, raw, torch.zeros_like(raw))
    total = n.sum()
    return raw * (total / (raw * n).sum()) if bool(total > 0) else raw
