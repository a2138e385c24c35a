"""Assignment of predictions (anchors, proposals) to ground-truth boxes by IoU, as torchvision's
``Matcher`` (same thresholds and the same matches); IoU by ``fastops.box_iou``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...ops import box_iou

__all__ = ["Matcher", "SSDMatcher"]


class Matcher:
    """Each prediction gets the ground truth of highest IoU, when that IoU is >= high_threshold;
    BELOW_LOW_THRESHOLD (-1) when it is < low_threshold, BETWEEN_THRESHOLDS (-2) in between.

    With ``allow_low_quality_matches``, every prediction that is some ground truth's best match
    (ties included) keeps its best ground truth whatever its IoU, so every ground truth gets at
    least one prediction (Faster R-CNN's RPN, RetinaNet).
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False):
        if low_threshold > high_threshold:
            raise ValueError(f"low_threshold ({low_threshold}) should be <= high_threshold ({high_threshold})")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """match_quality_matrix: Tensor[M, N] (ground truth x predictions), M, N > 0. Returns int64
        Tensor[N]: a ground-truth index in [0, M) or a negative code."""
        if match_quality_matrix.numel() == 0:
            which = "ground-truth" if match_quality_matrix.shape[0] == 0 else "proposal"
            raise ValueError(f"Matcher: no {which} boxes to match")
        matched_vals, all_matches = match_quality_matrix.max(dim=0)
        matches = torch.where(matched_vals < self.low_threshold, self.BELOW_LOW_THRESHOLD, all_matches)
        between = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches = torch.where(between, self.BETWEEN_THRESHOLDS, matches)
        if self.allow_low_quality_matches:
            highest_per_gt = match_quality_matrix.max(dim=1).values
            is_best = (match_quality_matrix == highest_per_gt[:, None]).any(dim=0)
            matches = torch.where(is_best, all_matches, matches)
        return matches

    def match_boxes(self, gt_boxes: Tensor, boxes: Tensor) -> Tensor:
        """Matches of ``boxes`` [N, 4] to ``gt_boxes`` [M, 4] (xyxy) by fastops IoU; all
        BELOW_LOW_THRESHOLD when there is no ground truth."""
        if gt_boxes.shape[0] == 0:
            return torch.full((boxes.shape[0],), self.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=boxes.device)
        return self(box_iou(gt_boxes, boxes))


class SSDMatcher(Matcher):
    """SSD's matching (torchvision's ``SSDMatcher``): each prediction gets the ground truth of highest
    IoU when that IoU is >= ``threshold`` (BELOW_LOW_THRESHOLD otherwise), and then each ground
    truth's best prediction is matched to it whatever its IoU (a later ground truth wins a
    prediction that is the best of several)."""

    def __init__(self, threshold: float):
        super().__init__(threshold, threshold, allow_low_quality_matches=False)

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        matches = super().__call__(match_quality_matrix)
        best_prediction = match_quality_matrix.max(dim=1).indices
        matches[best_prediction] = torch.arange(best_prediction.shape[0], dtype=torch.int64, device=matches.device)
        return matches
