"""MixUp (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018) for multi-label
classification, on a batch: each image is blended with another of the batch (a random
permutation) by one weight lam ~ Beta(alpha, alpha), and so are their multi-hot tags, which
become soft targets for a per-class binary cross-entropy. For detection, ``mixup_detection`` /
``DetectionMixUp`` blend two samples and keep both sets of objects with per-object weights."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..transforms import PER_OBJECT_KEYS, tags_from_labels, uniform
from .sources import SampleSource

__all__ = ["DetectionMixUp", "MixUp", "MixedBatch", "mixup", "mixup_detection", "sample_beta"]


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


def mixup_detection(image: Tensor, target: dict, other_image: Tensor, other_target: dict, lam: float):
    """Blend two detection samples, keeping both sets of objects (the "visually coherent" mixup of
    Zhang et al. 2019, "Bag of Freebies for Training Object Detection Neural Networks").

    Both images are padded at the bottom and right with 0 to the larger height and width, then
    blended: lam * image + (1 - lam) * other_image. The output has ``target``'s keys: per-object
    fields are ``target``'s objects then ``other_target``'s (masks padded with 0; ``difficult`` and
    ``iscrowd`` False and ``area`` the mask's (else the box's) pixels where the other lacks them),
    ``weights`` (float32 [K], default 1) multiplied by lam and 1 - lam for a loss weighted per
    object, ``tags`` blended like the images (in float64), ``image_id`` the target's. The semantic
    map is dropped: a pixel's class cannot be blended. A transform that drops objects after this
    one recomputes tags as multi-hot, so apply it last.
    """
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"mixup_detection: lam must be in [0, 1], got {lam}")
    for name, t in (("image", image), ("other_image", other_image)):
        if not isinstance(t, Tensor) or t.dim() != 3 or not t.is_floating_point():
            what = f"{list(t.shape)} {t.dtype}" if isinstance(t, Tensor) else type(t).__name__
            raise TypeError(f"mixup_detection: {name} must be a floating Tensor [C, H, W], got {what}")
    if other_image.shape[0] != image.shape[0] or other_image.dtype != image.dtype:
        raise ValueError(
            f"mixup_detection: other_image is {list(other_image.shape)} {other_image.dtype}, image is "
            f"{list(image.shape)} {image.dtype}: channels and dtype must match"
        )
    if "masks" in target and "labels" in other_target and "masks" not in other_target:
        raise ValueError("mixup_detection: target has masks, other_target has none")
    h = max(image.shape[1], other_image.shape[1])
    w = max(image.shape[2], other_image.shape[2])
    out_image = _pad(image, h, w) * lam + _pad(other_image, h, w) * (1.0 - lam)
    out = {key: value for key, value in target.items() if key != "semantic"}
    for key in PER_OBJECT_KEYS:
        if key in out:
            ours, theirs = _objects(target, key, h, w), _objects(other_target, key, h, w)
            if key == "weights":
                ours, theirs = ours * lam, theirs * (1.0 - lam)
            out[key] = torch.cat([ours, theirs.to(ours.dtype)])
    if "weights" not in out:
        k, k_other = (t["labels"].shape[0] if "labels" in t else 0 for t in (target, other_target))
        out["weights"] = torch.cat([torch.full((k,), lam), torch.full((k_other,), 1.0 - lam)])
    if "tags" in out:
        tags = out["tags"]
        other = other_target.get("tags")
        if other is None:
            other = tags_from_labels(other_target["labels"], tags)
        out["tags"] = (lam * tags.to(torch.float64) + (1.0 - lam) * other.to(torch.float64)).to(tags.dtype)
    return out_image, out


def _pad(t: Tensor, h: int, w: int) -> Tensor:
    """[..., H', W'] padded at the bottom and right with 0 to [..., h, w]."""
    return F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]))


def _objects(target: dict, key: str, h: int, w: int) -> Tensor:
    """A per-object field of ``target`` in the mixed frame (masks padded), or its default."""
    k = target["labels"].shape[0] if "labels" in target else 0
    if key in target:
        value = target[key]
        return _pad(value, h, w) if key == "masks" else value
    if key == "area" and "masks" in target:
        return target["masks"].flatten(1).sum(1).to(torch.float32)
    if key == "area" and "boxes" in target:
        b = target["boxes"]
        return ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).to(torch.float32)
    if key in ("difficult", "iscrowd"):
        return torch.zeros(k, dtype=torch.bool)
    if key == "weights":
        return torch.ones(k, dtype=torch.float32)
    raise ValueError(f"mixup_detection: target has {key!r} and other_target has none")


class DetectionMixUp:
    """``mixup_detection`` as a transform: with probability ``p``, blend the sample with one drawn
    from ``source`` (a dataset or a callable, as ``CopyPaste``'s) by lam ~ Beta(alpha, alpha)
    (the Bag of Freebies paper's alpha is 1.5)."""

    def __init__(self, source, *, alpha: float = 1.5, p: float = 1.0):
        self.source = SampleSource(source, "DetectionMixUp")
        self.alpha = _check_alpha(alpha)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"DetectionMixUp: p must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, image: Tensor, target: dict, generator: torch.Generator | None = None):
        if uniform(0.0, 1.0, generator) >= self.p:
            return image, target
        lam = sample_beta(self.alpha, generator)
        other_image, other_target = self.source.draw(generator)
        return mixup_detection(image, target, other_image, other_target, lam)

    def __repr__(self) -> str:
        return f"DetectionMixUp(source={self.source!r}, alpha={self.alpha}, p={self.p})"
