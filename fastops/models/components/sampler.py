"""Balanced sampling of positive and negative training examples per image, as torchvision's
``BalancedPositiveNegativeSampler``: the same random draws (one ``torch.randperm`` for the
positives, then one for the negatives, per image), so the same samples under the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["BalancedPositiveNegativeSampler"]


class BalancedPositiveNegativeSampler:
    """Up to ``batch_size_per_image * positive_fraction`` positives (label >= 1) drawn at random,
    then negatives (label 0) to fill ``batch_size_per_image``; label -1 is never drawn."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        if batch_size_per_image < 0 or not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(
                f"batch_size_per_image must be >= 0 and positive_fraction in [0, 1], got "
                f"{batch_size_per_image} and {positive_fraction}"
            )
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, labels: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """labels: per image, Tensor[N_i] of -1 (ignore), 0 (negative) or >= 1 (positive).
        Returns (positive masks, negative masks): per image, bool Tensor[N_i]."""
        pos_masks, neg_masks = [], []
        for labels_per_image in labels:
            positive = torch.where(labels_per_image >= 1)[0]
            negative = torch.where(labels_per_image == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            perm_pos = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
            perm_neg = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
            pos_mask = torch.zeros(labels_per_image.shape, dtype=torch.bool, device=labels_per_image.device)
            neg_mask = torch.zeros_like(pos_mask)
            pos_mask[positive[perm_pos]] = True
            neg_mask[negative[perm_neg]] = True
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks
