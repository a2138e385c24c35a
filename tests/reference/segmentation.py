"""Per-pixel segmentation losses in float64, written from their definitions and independent of
the kernels (autograd through them gives the reference gradients): softmax focal loss and
cross-entropy over class-index targets with torch's weighted mean, the sigmoid focal loss over
dense masks, and the soft Dice loss looping over classes."""

import torch
import torch.nn.functional as F

from .focal import sigmoid_reference, softmax_reference


def _reduce(terms, reduction, denominator):
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    return terms.sum() / denominator


def pixel_softmax_focal(logits, target, gamma, alpha, class_weight, pixel_weight, ignore_index, reduction):
    """-alpha w (1 - p_y)^gamma log p_y per pixel of logits [N, C, *spatial] (gamma 0, alpha None:
    the cross-entropy); "mean" divides by the sum of w = class_weight[y] * pixel_weight over the
    non-ignored pixels (alpha scales the loss, not the denominator)."""
    rows = logits.double().movedim(1, -1).reshape(-1, logits.shape[1])
    y = target.reshape(-1)
    sample_weight = None if pixel_weight is None else pixel_weight.reshape(-1)
    alpha = 1.0 if alpha is None else alpha
    terms = softmax_reference(rows, y, gamma, alpha, class_weight, sample_weight, ignore_index)
    keep = y != ignore_index
    w = torch.ones_like(terms)
    if class_weight is not None:
        w = w * class_weight.double()[torch.where(keep, y, 0)]
    if sample_weight is not None:
        w = w * sample_weight.double()
    return _reduce(terms.reshape(target.shape), reduction, torch.where(keep, w, 0.0).sum())


def pixel_sigmoid_focal(logits, masks, gamma, alpha, reduction):
    """torchvision's sigmoid focal loss per element of logits and dense masks [N, C, *spatial]
    (alpha None: no alpha weighting); "mean" over elements."""
    terms = sigmoid_reference(logits, masks, -1.0 if alpha is None else alpha, gamma)
    return _reduce(terms, reduction, terms.numel())


def soft_dice(logits, target, smooth, per_image, class_weight, ignore_index):
    """(per-class Dice losses [C] or [N, C], their class_weight-weighted mean) from one-hot
    targets (class indices, softmax) or dense masks (sigmoid)."""
    x = logits.double()
    c = x.shape[1]
    if target.is_floating_point() or target.dtype == torch.bool:
        p, g = torch.sigmoid(x), target.double()
    else:
        keep = (target != ignore_index).unsqueeze(1).double()
        g = F.one_hot(torch.where(target == ignore_index, 0, target), c).movedim(-1, 1).double() * keep
        p = torch.softmax(x, 1) * keep
    dims = tuple(range(2, x.dim())) if per_image else (0, *range(2, x.dim()))
    losses = []
    for k in range(c):
        inter = (p[:, k : k + 1] * g[:, k : k + 1]).sum(dims)
        denom = p[:, k : k + 1].sum(dims) + g[:, k : k + 1].sum(dims)
        losses.append(1 - (2 * inter + smooth) / (denom + smooth))
    loss = torch.cat(losses, -1) if per_image else torch.cat(losses)
    w = torch.ones(c, dtype=torch.float64) if class_weight is None else class_weight.double()
    return loss, (loss * w).sum(-1).div(w.sum()).mean()
