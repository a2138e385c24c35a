"""Per-pixel losses for semantic segmentation, over logits [N, C, *spatial] (one or more spatial
dimensions): cross-entropy and the focal loss (both run on the fused kernels of
``fastops.ops.focal_loss``), the soft Dice loss, and a weighted sum of any of them.

Targets:

- class indices: int64 [N, *spatial] in [0, C), or ``ignore_index`` for a pixel that contributes
  nothing (VOC's 255 "void" boundary, the default); softmax over the class dimension.
- dense masks (``pixel_focal_loss`` and ``soft_dice_loss``): float or bool [N, C, *spatial] in
  [0, 1]; each channel is a binary problem through a sigmoid (binary or multi-label masks).

Any other label, a target whose shape does not match the logits, or integer targets of another
dtype raise ValueError / TypeError naming ``target``. The label range is checked on the host (one
min/max), except while torch.compile traces, where the fused kernels still check it.

Weights: ``class_weight`` [C] (e.g. ``fastops.class_weights`` of the pixel counts per class) and
``pixel_weight`` [N, *spatial] (a weight map, as U-Net's border weights) multiply each pixel's
term. Reduction "mean" is the weighted mean over the non-ignored pixels, sum(w l) / sum(w) with
w = class_weight[y] * pixel_weight, as ``torch.nn.functional.cross_entropy`` with ``weight``
(so the focal loss at gamma 0 is the cross-entropy); NaN when every pixel is ignored, as torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import focal_loss as focal

__all__ = [
    "PixelCrossEntropyLoss",
    "PixelFocalLoss",
    "SoftDiceLoss",
    "WeightedSumLoss",
    "check_segmentation_target",
    "pixel_cross_entropy",
    "pixel_focal_loss",
    "soft_dice_loss",
]

DEFAULT_IGNORE_INDEX = 255


def check_segmentation_target(logits: Tensor, target: Tensor, *, ignore_index: int | None = None) -> bool:
    """Checks that ``target`` fits ``logits`` [N, C, *spatial]: class indices (int64 [N, *spatial]
    in [0, C) or ``ignore_index``) or dense masks (float/bool [N, C, *spatial]). Returns True for
    class indices. Raises TypeError for a wrong type or dtype, ValueError for a wrong shape or label."""
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"logits and target must be tensors, got {type(logits).__name__}, {type(target).__name__}")
    if logits.dim() < 3 or not logits.is_floating_point():
        raise ValueError(
            f"logits must be a float tensor [N, C, *spatial] with at least one spatial dimension, got "
            f"{logits.dtype} {list(logits.shape)}"
        )
    if target.device != logits.device:
        raise ValueError(f"target must be on the logits' device {logits.device}, got {target.device}")
    if target.is_floating_point() or target.dtype == torch.bool:
        if target.shape != logits.shape:
            raise ValueError(
                f"dense target masks must have the logits' shape {list(logits.shape)}, got {list(target.shape)}"
            )
        return False
    if target.dtype != torch.int64:
        raise TypeError(f"class-index target must be int64, got {target.dtype}")
    expected = [logits.shape[0], *logits.shape[2:]]
    if list(target.shape) != expected:
        raise ValueError(
            f"class-index target must have shape {expected} (the logits' {list(logits.shape)} without the class "
            f"dimension), got {list(target.shape)}"
        )
    if target.numel() and not torch.compiler.is_compiling():
        valid = target if ignore_index is None else target[target != ignore_index]
        if valid.numel():
            lo, hi = int(valid.min()), int(valid.max())
            if lo < 0 or hi >= logits.shape[1]:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"target holds label {bad}, not a class in [0, {logits.shape[1]}) nor the ignore_index "
                    f"{ignore_index}"
                )
    return True


def _check_weights(logits: Tensor, class_weight: Tensor | None, pixel_weight: Tensor | None) -> None:
    if class_weight is not None and (class_weight.dim() != 1 or class_weight.shape[0] != logits.shape[1]):
        raise ValueError(f"class_weight must have shape [{logits.shape[1]}], got {list(class_weight.shape)}")
    expected = [logits.shape[0], *logits.shape[2:]]
    if pixel_weight is not None and list(pixel_weight.shape) != expected:
        raise ValueError(f"pixel_weight must have shape {expected}, got {list(pixel_weight.shape)}")


def _channels_last(x: Tensor) -> Tensor:
    """[N, C, *spatial] -> [N, *spatial, C]: the class dimension last, as the fused kernels read it."""
    return x.movedim(1, -1)


def _weight_sum(target: Tensor, ignore_index: int, class_weight: Tensor | None, pixel_weight: Tensor | None) -> Tensor:
    """sum over the non-ignored pixels of class_weight[y] * pixel_weight (the "mean" denominator)."""
    valid = target != ignore_index
    if class_weight is None and pixel_weight is None:
        return valid.sum()
    w = torch.ones(target.shape, dtype=torch.float64, device=target.device) if pixel_weight is None else pixel_weight
    if class_weight is not None:
        w = w * class_weight[torch.where(valid, target, 0)]
    return torch.where(valid, w, 0).sum()


def _softmax_pixels(logits, target, *, gamma, alpha, class_weight, pixel_weight, ignore_index, reduction) -> Tensor:
    _check_weights(logits, class_weight, pixel_weight)
    focal.reduction_code(reduction)
    rows = _channels_last(logits)
    if gamma == 0 and alpha is None and not rows.is_contiguous():
        # Class-major logits (NCHW): torch's cross-entropy reads them in place, where the fused
        # kernel would first copy them to pixel-major rows (channels_last logits need no copy).
        weight = None if class_weight is None else class_weight.to(logits.dtype)
        loss = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none")
        if pixel_weight is not None:
            loss = loss * pixel_weight
        if reduction == "none":
            return loss
        total = loss.sum()
        if reduction == "sum":
            return total
        return total / _weight_sum(target, ignore_index, class_weight, pixel_weight).to(total.dtype)
    loss = focal.softmax_focal_loss(
        rows,
        target,
        gamma,
        alpha=alpha,
        class_weight=class_weight,
        sample_weight=pixel_weight,
        reduction="sum" if reduction == "mean" else reduction,
        ignore_index=ignore_index,
    )
    if reduction != "mean":
        return loss
    return loss / _weight_sum(target, ignore_index, class_weight, pixel_weight).to(loss.dtype)


def pixel_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    class_weight: Tensor | None = None,
    pixel_weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Per-pixel softmax cross-entropy, ``F.cross_entropy(logits, target, weight=class_weight,
    ignore_index=ignore_index, reduction=reduction)`` with a per-pixel weight map (module
    docstring: targets, weights, the weighted mean). Logits in channels_last memory (pixel-major,
    as fastops' FCN and DeepLab produce them) run on the fused softmax kernel in place; class-major
    (NCHW) logits on torch's cross-entropy, which reads that layout in place.

    Args:
        logits: [N, C, *spatial], float16/bfloat16/float32/float64.
        target: int64 [N, *spatial], classes in [0, C) or ignore_index.
        class_weight: [C] or None; pixel_weight: [N, *spatial] or None.
        reduction: "mean" (weighted mean), "sum" or "none" ([N, *spatial], 0 at ignored pixels).
    """
    check_segmentation_target(logits, target, ignore_index=ignore_index)
    return _softmax_pixels(
        logits,
        target,
        gamma=0.0,
        alpha=None,
        class_weight=class_weight,
        pixel_weight=pixel_weight,
        ignore_index=ignore_index,
        reduction=reduction,
    )


def pixel_focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
    class_weight: Tensor | None = None,
    pixel_weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss (Lin et al., 2017) per pixel, on the fused kernels.

    Class-index targets: the softmax focal loss -alpha w (1 - p_y)^gamma log p_y (gamma 0 is
    ``pixel_cross_entropy``); "mean" is the weighted mean over non-ignored pixels.
    Dense masks [N, C, *spatial]: the sigmoid focal loss per element (torchvision's
    ``sigmoid_focal_loss``; alpha weights the positives, 1 - alpha the negatives; None for no
    alpha); "mean" is over elements (pixel_weight: the weight of every channel of a pixel);
    ignore_index does not apply.

    Args:
        logits: [N, C, *spatial]; target: int64 [N, *spatial] or float/bool [N, C, *spatial].
        gamma: focusing exponent >= 0; alpha: a factor (see above) or None.
        class_weight: [C] or None; pixel_weight: [N, *spatial] or None.
        reduction: "mean", "sum" or "none" (per pixel for index targets, per element for masks).
    """
    if check_segmentation_target(logits, target, ignore_index=ignore_index):
        return _softmax_pixels(
            logits,
            target,
            gamma=gamma,
            alpha=alpha,
            class_weight=class_weight,
            pixel_weight=pixel_weight,
            ignore_index=ignore_index,
            reduction=reduction,
        )
    _check_weights(logits, class_weight, pixel_weight)
    loss = focal.sigmoid_focal_loss(
        _channels_last(logits),
        _channels_last(target),
        -1.0 if alpha is None else alpha,
        gamma,
        reduction,
        class_weight=class_weight,
        sample_weight=pixel_weight,
    )
    return loss.movedim(-1, 1) if reduction == "none" else loss


def soft_dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth: float = 1.0,
    per_image: bool = False,
    class_weight: Tensor | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    reduction: str = "mean",
) -> Tensor:
    """Soft Dice loss (Milletari et al., 2016, without squares), per class:
    ``1 - (2 sum(p g) + smooth) / (sum(p) + sum(g) + smooth)``, the sums over the non-ignored
    pixels of the batch (``per_image``: of each image). p is the softmax over classes for
    class-index targets (g their one-hot) and the sigmoid of each channel for dense masks (g the
    mask). A class absent from target and prediction has loss 0 (with smooth > 0).

    Args:
        logits: [N, C, *spatial]; target: int64 [N, *spatial] or float/bool [N, C, *spatial].
        smooth: added to numerator and denominator, >= 0 (0 gives NaN for an absent class).
        per_image: one Dice per (image, class) instead of per class over the batch.
        class_weight: [C] or None: the classes' weights in the mean.
        ignore_index: for class-index targets, pixels that count in no sum.
        reduction: "mean" (the class_weight-weighted mean over classes, and images), "sum", or
            "none" ([C], or [N, C] with per_image).
    """
    index_targets = check_segmentation_target(logits, target, ignore_index=ignore_index)
    _check_weights(logits, class_weight, None)
    focal.reduction_code(reduction)
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    n, c = logits.shape[:2]
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    x = logits.to(acc).reshape(n, c, -1)
    if index_targets:
        t = target.reshape(n, 1, -1)
        valid = t != ignore_index
        # a comparison, not a scatter: deterministic on every device
        g = (t == torch.arange(c, device=t.device).view(1, c, 1)) & valid
        p = torch.softmax(x, 1) * valid
        intersection, prob_sum, target_sum = (p * g).sum(2), p.sum(2), g.sum(2).to(acc)
    else:
        g = target.to(acc).reshape(n, c, -1)
        p = torch.sigmoid(x)
        intersection, prob_sum, target_sum = (p * g).sum(2), p.sum(2), g.sum(2)
    if not per_image:
        intersection, prob_sum, target_sum = intersection.sum(0), prob_sum.sum(0), target_sum.sum(0)
    loss = 1 - (2 * intersection + smooth) / (prob_sum + target_sum + smooth)
    if reduction == "none":
        return loss.to(logits.dtype)
    w = torch.ones(c, dtype=acc, device=x.device) if class_weight is None else class_weight.to(acc)
    weighted = loss * w
    if reduction == "sum":
        return weighted.sum().to(logits.dtype)
    return (weighted.sum(-1) / w.sum()).mean().to(logits.dtype)


# ---- modules -------------------------------------------------------------------------------------


def _weight_buffer(module: nn.Module, name: str, value: Tensor | None) -> None:
    module.register_buffer(name, None if value is None else value.detach().clone())


class PixelCrossEntropyLoss(nn.Module):
    """``pixel_cross_entropy`` as a module; class weights are a buffer (saved, moved by ``.to``),
    pixel weights per call."""

    def __init__(
        self,
        *,
        class_weight: Tensor | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        reduction: str = "mean",
    ):
        super().__init__()
        focal.reduction_code(reduction)
        self.ignore_index, self.reduction = ignore_index, reduction
        _weight_buffer(self, "class_weight", class_weight)

    def forward(self, logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
        return pixel_cross_entropy(
            logits,
            target,
            class_weight=self.class_weight,
            pixel_weight=pixel_weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class PixelFocalLoss(nn.Module):
    """``pixel_focal_loss`` as a module."""

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | None = None,
        class_weight: Tensor | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        reduction: str = "mean",
    ):
        super().__init__()
        focal.reduction_code(reduction)
        self.gamma, self.alpha, self.ignore_index, self.reduction = gamma, alpha, ignore_index, reduction
        _weight_buffer(self, "class_weight", class_weight)

    def forward(self, logits: Tensor, target: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
        return pixel_focal_loss(
            logits,
            target,
            gamma=self.gamma,
            alpha=self.alpha,
            class_weight=self.class_weight,
            pixel_weight=pixel_weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class SoftDiceLoss(nn.Module):
    """``soft_dice_loss`` as a module."""

    def __init__(
        self,
        *,
        smooth: float = 1.0,
        per_image: bool = False,
        class_weight: Tensor | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        reduction: str = "mean",
    ):
        super().__init__()
        focal.reduction_code(reduction)
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.smooth, self.per_image, self.ignore_index, self.reduction = smooth, per_image, ignore_index, reduction
        _weight_buffer(self, "class_weight", class_weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return soft_dice_loss(
            logits,
            target,
            smooth=self.smooth,
            per_image=self.per_image,
            class_weight=self.class_weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, per_image={self.per_image}, ignore_index={self.ignore_index}"


class WeightedSumLoss(nn.Module):
    """A weighted sum of losses that each take ``(logits, target)``, e.g. cross-entropy plus Dice:
    ``WeightedSumLoss({"ce": (1.0, PixelCrossEntropyLoss()), "dice": (0.5, SoftDiceLoss())})``.

    ``forward`` returns the sum, ``terms`` each loss unweighted by name (for logging).
    """

    def __init__(self, terms: Mapping[str, tuple[float, nn.Module]]):
        super().__init__()
        if not terms:
            raise ValueError("terms must name at least one (weight, loss) pair")
        for name, term in terms.items():
            if not (isinstance(term, tuple) and len(term) == 2 and isinstance(term[1], nn.Module)):
                raise TypeError(f"terms[{name!r}] must be a (weight, loss module) pair, got {term!r}")
        self.weights = {name: float(weight) for name, (weight, _) in terms.items()}
        self.losses = nn.ModuleDict({name: loss for name, (_, loss) in terms.items()})

    def terms(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {name: loss(logits, target) for name, loss in self.losses.items()}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        values = self.terms(logits, target)
        return sum(self.weights[name] * value for name, value in values.items())

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
