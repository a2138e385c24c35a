"""Transforms that keep an image and its target consistent: ``boxes`` (xyxy), ``masks`` [K, H, W],
``semantic`` [H, W] and the other per-object fields (``labels``, ``difficult``, ``iscrowd``,
``area``, ``weights``) move, scale, crop or drop together; ``tags`` follow the labels that remain.

Every transform is called as ``t(image, target, generator=None)`` and returns (image, target); the
random ones draw from ``generator`` (a ``torch.Generator``) or, without one, from torch's global
generator (which DataLoader seeds differently in each worker). ``Compose(..., seed=s)`` holds its
own generator, so a sequence of calls is reproducible. Images are float [3, H, W]; targets may
lack any field. Hand-written (a few lines each), so the data layer needs no torchvision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PER_OBJECT_KEYS",
    "ColorJitter",
    "Compose",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "Resize",
    "crop",
    "hflip",
    "keep_objects",
    "resize",
    "tags_from_labels",
    "uniform",
]

PER_OBJECT_KEYS = ("boxes", "labels", "masks", "difficult", "iscrowd", "area", "weights")


def uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    """One float drawn uniformly from [lo, hi) (float64 draw) from ``generator`` or torch's global one."""
    return lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))


def keep_objects(target: dict, keep: Tensor) -> dict:
    """Per-object fields restricted to ``keep`` (bool [K]); tags recomputed from the labels left."""
    out = dict(target)
    for key in PER_OBJECT_KEYS:
        if key in out:
            out[key] = out[key][keep]
    if "tags" in out and "labels" in out:
        out["tags"] = tags_from_labels(out["labels"], out["tags"])
    return out


def tags_from_labels(labels: Tensor, like: Tensor) -> Tensor:
    """Multi-hot tags shaped and typed like ``like`` ([C]): 1 at ``labels - 1``, else 0."""
    tags = torch.zeros_like(like)
    tags[labels - 1] = 1
    return tags


def hflip(image: Tensor, target: dict) -> tuple[Tensor, dict]:
    """Mirror left-right: x -> W - x for boxes, the last dimension of image, masks and semantic map."""
    w = image.shape[-1]
    out = dict(target)
    if "boxes" in out:
        b = out["boxes"]
        out["boxes"] = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)
    for key in ("masks", "semantic"):
        if key in out:
            out[key] = out[key].flip(-1)
    return image.flip(-1), out


def resize(image: Tensor, target: dict, size: tuple[int, int]) -> tuple[Tensor, dict]:
    """Resize to ``size`` = (H, W): the image bilinearly (antialiased when shrinking), masks and the
    semantic map by nearest neighbour (the source pixel under each output pixel's centre), boxes
    and areas scaled."""
    h, w = image.shape[-2:]
    nh, nw = int(size[0]), int(size[1])
    if nh < 1 or nw < 1:
        raise ValueError(f"resize: size must be positive, got {size}")
    if (nh, nw) == (h, w):
        return image, dict(target)
    shrink = nh < h or nw < w
    out_image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=shrink)[0]
    sy, sx = nh / h, nw / w
    out = dict(target)
    if "boxes" in out:
        scale = torch.tensor([sx, sy, sx, sy], dtype=out["boxes"].dtype)
        out["boxes"] = out["boxes"] * scale
    if "area" in out:
        out["area"] = out["area"] * (sx * sy)
    for key in ("masks", "semantic"):
        if key in out:
            out[key] = _nearest(out[key], nh, nw)
    return out_image.clamp_(0.0, 1.0) if image.is_floating_point() else out_image, out


def _nearest_index(n_in: int, n_out: int) -> Tensor:
    """Source index of each output pixel, nearest to its centre (``mode="nearest-exact"``)."""
    idx = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out)).floor().to(torch.int64)
    return idx.clamp_(0, n_in - 1)


def _nearest(t: Tensor, nh: int, nw: int) -> Tensor:
    """Nearest-neighbour resize of [..., H, W] in any dtype (labels stay labels; K = 0 allowed)."""
    h, w = t.shape[-2:]
    return t.index_select(-2, _nearest_index(h, nh)).index_select(-1, _nearest_index(w, nw))


def _shorter_side_size(h: int, w: int, min_size: int, max_size: int | None) -> tuple[int, int]:
    scale = min_size / min(h, w)
    if max_size is not None and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


class Compose:
    """Apply transforms in order. With ``seed``, draws come from a generator of its own (each call
    advances it); a ``generator`` passed to the call takes precedence."""

    def __init__(self, transforms: Sequence[Callable], seed: int | None = None):
        self.transforms = list(transforms)
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def __call__(self, image: Tensor, target: dict, generator: torch.Generator | None = None):
        generator = generator if generator is not None else self.generator
        for t in self.transforms:
            image, target = t(image, target, generator)
        return image, target

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, image, target, generator=None):
        if uniform(0.0, 1.0, generator) < self.p:
            return hflip(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Resize:
    """Resize to a fixed ``size`` (H, W), or so the shorter side is ``min_size`` (the longer one at
    most ``max_size``), keeping the aspect ratio."""

    def __init__(self, size: int | tuple[int, int] | None = None, *, min_size: int | None = None, max_size=None):
        if (size is None) == (min_size is None):
            raise ValueError("Resize: give either size (H, W) or min_size")
        self.size = (size, size) if isinstance(size, int) else size
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, image, target, generator=None):
        h, w = image.shape[-2:]
        size = self.size if self.size is not None else _shorter_side_size(h, w, self.min_size, self.max_size)
        return resize(image, target, size)

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, min_size={self.min_size}, max_size={self.max_size})"


class RandomScale:
    """Scale jitter: resize by a factor drawn uniformly from ``scale_range``."""

    def __init__(self, scale_range: tuple[float, float] = (0.8, 1.25)):
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.scale_range = (float(lo), float(hi))

    def __call__(self, image, target, generator=None):
        s = uniform(*self.scale_range, generator)
        h, w = image.shape[-2:]
        return resize(image, target, (max(1, round(h * s)), max(1, round(w * s))))

    def __repr__(self) -> str:
        return f"RandomScale(scale_range={self.scale_range})"


class RandomCrop:
    """Crop a random window of ``size`` (H, W; clamped to the image). Boxes are shifted and
    clipped to the window; objects whose clipped box has no area, or whose mask is left empty,
    are dropped (with all their per-object fields); areas become the visible mask (else box) area."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if min(self.size) < 1:
            raise ValueError(f"RandomCrop: size must be positive, got {size}")

    def __call__(self, image, target, generator=None):
        h, w = image.shape[-2:]
        ch, cw = min(self.size[0], h), min(self.size[1], w)
        top = int(torch.randint(0, h - ch + 1, (), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (), generator=generator))
        return crop(image, target, top, left, ch, cw)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size})"


def crop(image: Tensor, target: dict, top: int, left: int, height: int, width: int) -> tuple[Tensor, dict]:
    """The window [top, top + height) x [left, left + width) of the image and target (see RandomCrop)."""
    out = dict(target)
    window = (slice(top, top + height), slice(left, left + width))
    for key in ("masks", "semantic"):
        if key in out:
            out[key] = out[key][..., window[0], window[1]]
    keep = None
    if "boxes" in out:
        b = out["boxes"] - torch.tensor([left, top, left, top], dtype=out["boxes"].dtype)
        b[:, 0::2] = b[:, 0::2].clamp(0, width)
        b[:, 1::2] = b[:, 1::2].clamp(0, height)
        out["boxes"] = b
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    if "masks" in out:
        # summed by rows in int32 first: several times faster than one int64 sum over each mask
        visible = out["masks"].sum(2, dtype=torch.int32).sum(1, dtype=torch.int64)
        keep = visible > 0 if keep is None else keep & (visible > 0)
        if "area" in out:
            out["area"] = visible.to(out["area"].dtype)
    elif "area" in out and "boxes" in out:
        b = out["boxes"]
        out["area"] = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).to(out["area"].dtype)
    if keep is not None:
        out = keep_objects(out, keep)
    return image[..., window[0], window[1]], out


class ColorJitter:
    """Photometric jitter of the image only: brightness, contrast and saturation factors drawn
    uniformly from [1 - x, 1 + x], applied in that order, result clipped to [0, 1]."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2):
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= v < 1.0:
                raise ValueError(f"ColorJitter: {name} must be in [0, 1), got {v}")
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def __call__(self, image, target, generator=None):
        b = uniform(1 - self.brightness, 1 + self.brightness, generator)
        c = uniform(1 - self.contrast, 1 + self.contrast, generator)
        s = uniform(1 - self.saturation, 1 + self.saturation, generator)
        out = image * b
        mean = out.mean()
        out = (out - mean) * c + mean
        grey = (0.299 * out[0] + 0.587 * out[1] + 0.114 * out[2])[None]
        out = (out - grey) * s + grey
        return out.clamp_(0.0, 1.0), target

    def __repr__(self) -> str:
        return f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation})"
