"""Precision, recall, F1 and IoU as functions; semantic segmentation (confusion matrix, per-class
IoU, mIoU, pixel accuracy, with an ignore index); multi-label classification (per-class AP,
macro/micro mAP, precision/recall/F1 at a threshold). Vectorized torch/numpy, float64 results.

Conventions: a ratio whose denominator is 0 is NaN for that class (no support) and left out of the
macro means (nanmean); "micro" pools the counts of all classes first.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SegmentationMetrics",
    "average_precision",
    "confusion_matrix",
    "multilabel_average_precision",
    "multilabel_precision_recall_f1",
    "precision_recall_f1",
    "segmentation_scores",
]


def _div(a: Tensor, b: Tensor) -> Tensor:
    a, b = a.double(), b.double()
    return torch.where(b > 0, a / torch.where(b > 0, b, torch.ones_like(b)), torch.full_like(a, float("nan")))


def confusion_matrix(preds: Tensor, target: Tensor, num_classes: int, *, ignore_index: int | None = None) -> Tensor:
    """int64 [num_classes, num_classes]: rows the true class, columns the predicted one. preds and
    target: integer tensors of the same shape (class indices); positions where target ==
    ignore_index are skipped; any other value outside [0, num_classes) raises ValueError."""
    if preds.shape != target.shape:
        raise ValueError(f"confusion_matrix: preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
    if preds.is_floating_point() or target.is_floating_point():
        raise TypeError("confusion_matrix: preds and target must be integer class indices")
    p, t = preds.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    if p.numel() and (min(p.min(), t.min()) < 0 or max(p.max(), t.max()) >= num_classes):
        raise ValueError(f"confusion_matrix: class indices must be in [0, {num_classes}) (or the ignore_index)")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _prf_from_counts(tp: Tensor, fp: Tensor, fn: Tensor, average: str) -> dict:
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    f1 = _div(2 * tp, 2 * tp + fp + fn)
    iou = _div(tp, tp + fp + fn)
    out = {"precision": precision, "recall": recall, "f1": f1, "iou": iou}
    if average == "macro":
        out = {k: torch.nanmean(v) for k, v in out.items()}
    elif average not in ("micro", "none"):
        raise ValueError(f"average must be 'macro', 'micro' or 'none', got {average!r}")
    return out


def precision_recall_f1(
    preds: Tensor,
    target: Tensor,
    *,
    num_classes: int | None = None,
    threshold: float = 0.5,
    average: str = "macro",
    ignore_index: int | None = None,
) -> dict:
    """Precision, recall, F1 and IoU (Jaccard) of class predictions, float64.

    Binary (num_classes None): preds are scores or 0/1 (positive where preds >= threshold for float
    preds), target 0/1. Multiclass: preds and target integer class indices of the same shape.
    average: "macro" (nanmean over classes), "micro" (pooled counts) or "none" (per class [C]).
    """
    if num_classes is None:
        p = (preds >= threshold) if preds.is_floating_point() else preds.bool()
        t = target.bool()
        if p.shape != t.shape:
            raise ValueError("precision_recall_f1: preds and target must have the same shape")
        tp = (p & t).sum().reshape(1)
        fp = (p & ~t).sum().reshape(1)
        fn = (~p & t).sum().reshape(1)
        out = _prf_from_counts(tp, fp, fn, "none")
        return {k: v[0] for k, v in out.items()}
    cm = confusion_matrix(preds, target, num_classes, ignore_index=ignore_index)
    tp = cm.diagonal()
    return _prf_from_counts(tp, cm.sum(0) - tp, cm.sum(1) - tp, average)


def segmentation_scores(cm: Tensor) -> dict:
    """From a confusion matrix (rows true, columns predicted): per-class IoU (NaN where the class
    is neither present nor predicted), mIoU (nanmean), pixel accuracy, mean class accuracy, and the
    frequency-weighted IoU; float64."""
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = _div(tp, union)
    acc_cls = _div(tp, cm.sum(1))
    total = cm.sum()
    freq = cm.sum(1) / total if total > 0 else torch.zeros_like(tp)
    valid = ~torch.isnan(iou)
    return {
        "iou": iou,
        "miou": torch.nanmean(iou),
        "pixel_accuracy": tp.sum() / total if total > 0 else torch.tensor(float("nan"), dtype=torch.float64),
        "mean_accuracy": torch.nanmean(acc_cls),
        "fwiou": (freq[valid] * iou[valid]).sum(),
    }


class SegmentationMetrics:
    """Dataset-level semantic segmentation metrics: update() adds a batch's confusion matrix
    (int64 counts, exact), compute() returns segmentation_scores of the total.

    Args (keyword-only): num_classes; ignore_index (a target value to skip, e.g. 255)."""

    def __init__(self, *, num_classes: int, ignore_index: int | None = None):
        self.num_classes, self.ignore_index = int(num_classes), ignore_index
        self.reset()

    def reset(self) -> None:
        self.confmat = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds: class indices [B, H, W] (or logits [B, C, H, W], argmax over C); target [B, H, W]."""
        if preds.is_floating_point() and preds.dim() == target.dim() + 1:
            preds = preds.argmax(1)
        self.confmat += confusion_matrix(preds.cpu(), target.cpu(), self.num_classes, ignore_index=self.ignore_index)

    def compute(self) -> dict:
        out = segmentation_scores(self.confmat)
        out["confusion_matrix"] = self.confmat.clone()
        return out


def average_precision(scores, labels) -> float:
    """Average precision of one binary problem, as sklearn's average_precision_score: the sum over
    the distinct score thresholds (decreasing) of (R_n - R_{n-1}) * P_n. NaN without positives.
    scores and labels (0 / 1) must have the same length; NaN scores raise ValueError."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y_in = np.asarray(labels).reshape(-1)
    if s.size != y_in.size:
        raise ValueError(f"average_precision: {s.size} scores but {y_in.size} labels")
    if np.isnan(s).any():
        raise ValueError("average_precision: scores contain NaN")
    if y_in.dtype.kind not in "biuf" or not np.isin(y_in, (0, 1)).all():
        raise ValueError("average_precision: labels must be 0 / 1 (or bool)")
    y = y_in.astype(bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.where(np.diff(s))[0]
    last = np.r_[distinct, y.size - 1]  # the last index of each run of equal scores
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (1 + last - tps).astype(np.float64)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    # sklearn: recall from 0, precision reversed so that recall increases; here in score order
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_average_precision(scores: Tensor, target: Tensor) -> dict:
    """Multi-label AP: scores float [N, C], target 0/1 [N, C]. Returns "ap" (float64 [C], NaN for a
    class without positives), "macro_map" (nanmean) and "micro_map" (AP of all pairs pooled)."""
    s = scores.detach().double().cpu().numpy()
    y = target.detach().cpu().numpy().astype(bool)
    if s.shape != y.shape or s.ndim != 2:
        raise ValueError(f"multilabel_average_precision: scores and target must be [N, C], got {s.shape}, {y.shape}")
    ap = np.array([average_precision(s[:, c], y[:, c]) for c in range(s.shape[1])])
    return {
        "ap": torch.from_numpy(ap),
        "macro_map": torch.tensor(np.nanmean(ap) if (~np.isnan(ap)).any() else np.nan, dtype=torch.float64),
        "micro_map": torch.tensor(average_precision(s.ravel(), y.ravel()), dtype=torch.float64),
    }


def multilabel_precision_recall_f1(
    scores: Tensor, target: Tensor, *, threshold: float = 0.5, average: str = "macro"
) -> dict:
    """Precision/recall/F1/IoU of multi-label predictions (positive where scores >= threshold):
    per class ("none"), nanmean over classes ("macro") or pooled ("micro")."""
    p = scores >= threshold
    t = target.bool()
    if p.shape != t.shape or p.dim() != 2:
        raise ValueError("multilabel_precision_recall_f1: scores and target must be [N, C] of the same shape")
    tp = (p & t).sum(0)
    fp = (p & ~t).sum(0)
    fn = (~p & t).sum(0)
    return _prf_from_counts(tp, fp, fn, average)
