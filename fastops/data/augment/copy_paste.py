"""Copy-paste of instances between images (Ghiasi et al., "Simple Copy-Paste is a Strong Data
Augmentation Method for Instance Segmentation", CVPR 2021): a random subset of a source image's
objects, with their masks, is pasted onto the target image; the objects they cover lose those
pixels, shrink to boxes tight around what is left, and vanish when (almost) nothing is left.

Two forms: ``copy_paste(image, target, source_image, source_target)`` works on two samples (a
batch-level step, e.g. on neighbours in a batch), and ``CopyPaste(source)`` is a transform of the
usual contract that draws its second sample itself, from a dataset (a random index) or from a
callable ``source(generator) -> (image, target)``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..transforms import PER_OBJECT_KEYS, crop, keep_objects, resize, tags_from_labels, uniform
from .masks import binary_masks, boxes_from_masks, paint_semantic, pixel_counts
from .sources import SampleSource

__all__ = ["CopyPaste", "copy_paste"]


def copy_paste(
    image: Tensor,
    target: dict,
    source_image: Tensor,
    source_target: dict,
    *,
    generator: torch.Generator | None = None,
    scale_range: tuple[float, float] | None = None,
    blend_sigma: float = 0.0,
    min_area: int = 1,
) -> tuple[Tensor, dict]:
    """Paste a random non-empty subset of ``source_target``'s objects onto ``image``.

    The source is first resized by a factor drawn from ``scale_range`` (None: not resized; the
    paper's large scale jitter is (0.1, 2.0)), then placed at a random offset: a source larger
    than the image is cropped at a random window, a smaller one lands at a random position. Its
    pixels replace the image's where the union of the pasted masks is 1, blended by that union
    smoothed with a Gaussian of ``blend_sigma`` pixels when it is > 0 (the masks stay binary).

    The target's objects lose the pasted pixels from their masks; those that lost any get boxes
    tight around what is left (and ``area`` = its pixel count), and are dropped when fewer than
    ``min_area`` pixels are left (the semantic map marks those pixels 255, ignore: they show the
    class but no instance is left). Pasted objects come after the target's, with boxes tight
    around their masks, their labels, ``area`` = their masks' pixel counts, and the source's
    ``difficult``, ``iscrowd`` and ``weights`` (False, False, 1 when the source lacks them). The
    output has the target's keys: the semantic map gets the pasted labels (larger masks painted
    first), tags follow the labels. Crowd objects of the source (``iscrowd``) are never pasted.

    Shapes: images float [C, H, W] and [C, H', W'] of one dtype; both targets need ``labels`` and
    ``masks`` ([K, H, W], any K, 0 included). Returns a new (image, target).
    """
    _check_sample("image", image, target)
    _check_sample("source_image", source_image, source_target)
    if source_image.shape[0] != image.shape[0] or source_image.dtype != image.dtype:
        raise ValueError(
            f"copy_paste: source_image is {list(source_image.shape)} {source_image.dtype}, image is "
            f"{list(image.shape)} {image.dtype}: channels and dtype must match"
        )
    if scale_range is not None:
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"copy_paste: scale_range must satisfy 0 < low <= high, got {scale_range}")
    if not (blend_sigma >= 0 and math.isfinite(blend_sigma)):
        raise ValueError(f"copy_paste: blend_sigma must be a finite number >= 0, got {blend_sigma}")
    if int(min_area) < 1:
        raise ValueError(f"copy_paste: min_area must be >= 1 pixel, got {min_area}")

    pasted = _choose(source_target, generator)
    if pasted["labels"].numel() == 0:
        return image, dict(target)
    if scale_range is not None:
        s = uniform(float(scale_range[0]), float(scale_range[1]), generator)
        sh, sw = source_image.shape[-2:]
        source_image, pasted = resize(source_image, pasted, (max(1, round(sh * s)), max(1, round(sw * s))))
    canvas, pasted_masks, pasted = _place(image, source_image, pasted, generator)
    if pasted_masks.shape[0] == 0:
        return image, dict(target)

    union = pasted_masks.amax(0)  # uint8 [H, W]
    if blend_sigma > 0:
        alpha = _gaussian_blur(union.to(image.dtype), blend_sigma)
        out_image = image + alpha * (canvas - image)
    else:
        out_image = torch.where(union.bool(), canvas, image)
    out = _occlude(target, union, int(min_area))
    return out_image, _append(out, pasted, pasted_masks)


def _check_sample(name: str, image: Tensor, target: dict) -> None:
    if not isinstance(image, Tensor) or image.dim() != 3 or not image.is_floating_point():
        what = f"{list(image.shape)} {image.dtype}" if isinstance(image, Tensor) else type(image).__name__
        raise TypeError(f"copy_paste: {name} must be a floating Tensor [C, H, W], got {what}")
    target_name = "target" if name == "image" else "source_target"
    for key in ("labels", "masks"):
        if key not in target:
            raise ValueError(f"copy_paste: {target_name} has no {key!r} (copy-paste needs instance masks)")
    masks, k = target["masks"], target["labels"].shape[0]
    if masks.dim() != 3 or masks.shape[0] != k or masks.shape[1:] != image.shape[1:]:
        raise ValueError(
            f"copy_paste: {target_name}['masks'] is {list(masks.shape)}, expected [{k}, {image.shape[1]}, "
            f"{image.shape[2]}] (one mask per label, the image's size)"
        )


def _choose(source_target: dict, generator) -> dict:
    """The source's per-object fields restricted to a random non-empty subset of its non-crowd
    objects (uniform size, then uniform members); nothing else of the source is kept."""
    fields = {key: source_target[key] for key in PER_OBJECT_KEYS if key in source_target}
    candidates = torch.arange(fields["labels"].shape[0])
    if "iscrowd" in fields:
        candidates = candidates[~fields["iscrowd"].bool()]
    keep = torch.zeros(fields["labels"].shape[0], dtype=torch.bool)
    if candidates.numel() > 0:
        n = int(torch.randint(1, candidates.numel() + 1, (), generator=generator))
        keep[candidates[torch.randperm(candidates.numel(), generator=generator)[:n]]] = True
    return keep_objects(fields, keep)


def _place(image: Tensor, source_image: Tensor, pasted: dict, generator):
    """The source laid on the image's frame at a random offset: (canvas [C, H, W] = the image with
    the source's pixels where it lands, masks [K, H, W] uint8 0/1 of the objects still visible,
    their per-object fields)."""
    h, w = image.shape[-2:]
    sh, sw = source_image.shape[-2:]
    ch, cw = min(sh, h), min(sw, w)
    top = int(torch.randint(0, sh - ch + 1, (), generator=generator))  # window in the source
    left = int(torch.randint(0, sw - cw + 1, (), generator=generator))
    py = int(torch.randint(0, h - ch + 1, (), generator=generator))  # where it lands in the image
    px = int(torch.randint(0, w - cw + 1, (), generator=generator))
    window, pasted = crop(source_image, pasted, top, left, ch, cw)  # drops objects left empty
    canvas = image.clone()
    canvas[:, py : py + ch, px : px + cw] = window
    masks = torch.zeros((pasted["labels"].shape[0], h, w), dtype=torch.uint8)
    masks[:, py : py + ch, px : px + cw] = binary_masks(pasted["masks"])
    return canvas, masks, pasted


def _gaussian_blur(alpha: Tensor, sigma: float) -> Tensor:
    """[H, W] smoothed by a separable Gaussian (radius 3 sigma, edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(alpha.dtype)
    out = F.pad(alpha[None, None], (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.reshape(1, 1, 1, -1))
    out = F.conv2d(out, kernel.reshape(1, 1, -1, 1))
    return out[0, 0].clamp_(0.0, 1.0)


def _occlude(target: dict, union: Tensor, min_area: int) -> dict:
    """The target's objects less the pasted pixels (``union``: uint8 [H, W]); changed ones
    re-boxed, too small ones dropped."""
    out = dict(target)
    masks = target["masks"]
    if masks.shape[0] == 0:
        return out
    inside = binary_masks(masks)
    changed = (inside & union).flatten(1).amax(1) > 0
    if not bool(changed.any()):
        return out
    remaining = inside & (union ^ 1)
    out["masks"] = remaining.to(masks.dtype)
    visible = pixel_counts(remaining)
    if "boxes" in out:
        out["boxes"] = torch.where(changed[:, None], boxes_from_masks(remaining), out["boxes"]).to(out["boxes"].dtype)
    if "area" in out:
        out["area"] = torch.where(changed, visible.to(out["area"].dtype), out["area"])
    dropped = changed & (visible < min_area)
    if "semantic" in out and bool(dropped.any()):
        # what is left of a dropped object shows its class but has no instance: ignored
        semantic = out["semantic"].clone()
        for j in torch.nonzero(dropped).flatten().tolist():
            semantic[remaining[j].bool() & (semantic == int(target["labels"][j]))] = 255
        out["semantic"] = semantic
    return keep_objects(out, ~dropped)


def _append(out: dict, pasted: dict, pasted_masks: Tensor) -> dict:
    """``out`` (the occluded target) with the pasted objects after its own, its keys only."""
    k = pasted_masks.shape[0]
    labels = pasted["labels"].to(out["labels"].dtype)
    boxes = boxes_from_masks(pasted_masks)
    new = {
        "labels": labels,
        "masks": pasted_masks.to(out["masks"].dtype),
        "boxes": boxes,
        "area": pixel_counts(pasted_masks).to(torch.float32),
        "difficult": torch.zeros(k, dtype=torch.bool),
        "iscrowd": torch.zeros(k, dtype=torch.bool),
        "weights": torch.ones(k, dtype=torch.float32),
    }
    for key in ("difficult", "iscrowd", "weights"):
        if key in pasted:
            new[key] = pasted[key]
    for key in PER_OBJECT_KEYS:
        if key in out:
            out[key] = torch.cat([out[key], new[key].to(out[key].dtype)])
    if "semantic" in out:
        out["semantic"] = paint_semantic(out["semantic"], pasted_masks, labels, boxes)
    if "tags" in out:
        out["tags"] = tags_from_labels(out["labels"], out["tags"])
    return out


class CopyPaste:
    """The transform form of ``copy_paste``: with probability ``p``, paste objects of a sample drawn
    from ``source`` onto the image.

    ``source`` is a dataset (indexable, with ``len``: a uniformly drawn index) or a callable
    ``source(generator) -> (image, target)``. A dataset given as its own source must not carry
    this transform in its ``transforms`` (each draw would paste again, without end): pass a second
    instance of it without transforms, or with the geometric ones only (flip, scale). Other
    arguments as ``copy_paste``'s.
    """

    def __init__(
        self,
        source,
        *,
        p: float = 1.0,
        scale_range: tuple[float, float] | None = None,
        blend_sigma: float = 0.0,
        min_area: int = 1,
    ):
        self.source = SampleSource(source, "CopyPaste")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"CopyPaste: p must be in [0, 1], got {p}")
        self.p = float(p)
        self.options = dict(scale_range=scale_range, blend_sigma=blend_sigma, min_area=min_area)
        # argument errors at construction, not at the first sample
        copy_paste(*_empty_pair(), *_empty_pair(), **self.options)

    def __call__(self, image: Tensor, target: dict, generator: torch.Generator | None = None):
        if uniform(0.0, 1.0, generator) >= self.p:
            return image, target
        source_image, source_target = self.source.draw(generator)
        return copy_paste(image, target, source_image, source_target, generator=generator, **self.options)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"CopyPaste(source={self.source!r}, p={self.p}, {options})"


def _empty_pair() -> tuple[Tensor, dict]:
    return torch.zeros(3, 1, 1), {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 1, 1)}
