"""Decision thresholds for multi-label (or binary) scores, chosen on validation data."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["f1_optimal_thresholds"]


def _best_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) of one label: the cut that maximizes F1 when predicting score >= threshold."""
    total_positives = int(positive.sum())
    if total_positives == 0:
        return float("inf"), float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], positive[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # the last index of each run of equal scores
    tp = np.cumsum(y)[last].astype(np.float64)
    predicted = (last + 1).astype(np.float64)
    f1 = 2 * tp / (predicted + total_positives)
    k = int(np.argmax(f1))  # the first maximum: the highest threshold among ties
    lowest_in = s[last[k]]
    if k + 1 < last.size:
        highest_out = s[last[k + 1]]
        middle = lowest_in / 2 + highest_out / 2
        threshold = middle if highest_out < middle <= lowest_in else lowest_in
    else:
        threshold = lowest_in
    return float(threshold), float(f1[k])


def f1_optimal_thresholds(scores: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """Per label, the threshold that maximizes F1 on (validation) data when a label is predicted
    where ``score >= threshold``.

    Every distinct score is a candidate cut; among cuts with the same best F1 the highest wins
    (fewest predictions). The returned threshold lies halfway between the lowest score kept and the
    highest score left out (the kept score itself where no float lies strictly between, or when
    every sample is kept), so scores near the cut on new data fall on the side of the nearer
    validation score. A label without positives gets threshold +inf (never predicted) and F1 NaN.

    Args:
        scores: float Tensor[N, C] (or [N]: one label), e.g. sigmoid probabilities or logits.
        targets: 0/1 Tensor of the same shape (bool, integer or float).

    Returns:
        {"thresholds": float64 Tensor[C], "f1": float64 Tensor[C] (the F1 reached on this data)}.
    """
    if not isinstance(scores, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("scores and targets must be tensors")
    if scores.shape != targets.shape or scores.dim() not in (1, 2):
        raise ValueError(
            f"scores and targets must have the same shape, [N, C] or [N], got {tuple(scores.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if not scores.is_floating_point():
        raise TypeError(f"scores must be floating point, got {scores.dtype}")
    s = scores.detach().double().cpu().numpy()
    y = targets.detach().cpu().numpy()
    if np.isnan(s).any():
        raise ValueError("scores must not contain NaN")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("targets must be 0 or 1")
    if s.ndim == 1:
        s, y = s[:, None], y[:, None]
    results = [_best_threshold(s[:, c], y[:, c].astype(bool)) for c in range(s.shape[1])]
    thresholds = torch.tensor([r[0] for r in results], dtype=torch.float64)
    f1 = torch.tensor([r[1] for r in results], dtype=torch.float64)
    if scores.dim() == 1:
        return {"thresholds": thresholds[0], "f1": f1[0]}
    return {"thresholds": thresholds, "f1": f1}
