"""MixUp (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018) for multi-label
classification, on a batch: each image is blended with another of the batch (a random
permutation) by one weight lam ~ Beta(alpha, alpha), and so are their multi-hot tags, which
become soft targets for a per-class binary cross-entropy."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["MixUp", "MixedBatch", "mixup", "sample_beta"]


class MixedBatch(NamedTuple):
    """``images`` [N, C, H, W] = lam * images + (1 - lam) * images[index], ``tags`` [N, K] the same
    blend of the tags, ``lam`` the weight, ``index`` (int64 [N]) each sample's partner."""

    images: Tensor
    tags: Tensor
    lam: float
    index: Tensor


def sample_beta(alpha: float, generator: torch.Generator | None = None) -> float:
    """One draw from Beta(alpha, alpha), a pure function of ``generator``'s state (torch has no
    seeded Beta sampler: numpy's draws it from a seed taken from the generator)."""
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"mixup: alpha must be a finite number > 0, got {alpha}")
    return alpha


def mixup(images: Tensor, tags: Tensor, *, alpha: float = 0.2, generator: torch.Generator | None = None) -> MixedBatch:
    """Blend a batch with a random permutation of itself (one lam for the batch, as the paper's
    code does). ``images``: floating [N, ...]; ``tags``: floating [N, K] (multi-hot or already
    soft). The tags are computed in float64 and rounded once to their dtype; the images in their
    own dtype (within its rounding of the float64 formula). N = 0 gives empty outputs with lam 1."""
    alpha = _check_alpha(alpha)
    for name, t in (("images", images), ("tags", tags)):
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.dim() < 1:
            what = f"{list(t.shape)} {t.dtype}" if isinstance(t, Tensor) else type(t).__name__
            raise TypeError(f"mixup: {name} must be a floating Tensor with a batch dimension, got {what}")
    if tags.dim() != 2 or tags.shape[0] != images.shape[0]:
        raise ValueError(
            f"mixup: tags must be [N, K] with N = {images.shape[0]} (images' batch), got {list(tags.shape)}"
        )
    n = images.shape[0]
    if n == 0:
        return MixedBatch(images.clone(), tags.clone(), 1.0, torch.zeros(0, dtype=torch.int64))
    lam = sample_beta(alpha, generator)
    index = torch.randperm(n, generator=generator).to(images.device)
    mixed_images = images * lam + images[index] * (1.0 - lam)
    t64 = tags.to(torch.float64)
    mixed_tags = (lam * t64 + (1.0 - lam) * t64[index.to(tags.device)]).to(tags.dtype)
    return MixedBatch(mixed_images, mixed_tags, lam, index)


class MixUp:
    """``mixup`` as a batch step: ``MixUp(alpha, seed=None)(images, tags, generator=None) ->
    (images, tags)``. With ``seed`` it holds a generator of its own (each call advances it); a
    ``generator`` passed to the call takes precedence; without either, torch's global one."""

    def __init__(self, alpha: float = 0.2, seed: int | None = None):
        self.alpha = _check_alpha(alpha)
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def __call__(self, images: Tensor, tags: Tensor, generator: torch.Generator | None = None):
        mixed = mixup(images, tags, alpha=self.alpha, generator=generator if generator is not None else self.generator)
        return mixed.images, mixed.tags

    def __repr__(self) -> str:
        return f"MixUp(alpha={self.alpha})"
