"""``RandomErasing`` (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020): replace a
random rectangle of the image by a constant or by random pixels, in the whole image (the paper's
image-aware variant), inside each object's box (object-aware) or both."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..transforms import keep_objects, uniform
from .masks import binary_masks

__all__ = ["RandomErasing"]

MODES = ("image", "object", "image_and_object")
SEMANTIC_CHOICES = ("keep", "ignore")


class RandomErasing:
    """Erase rectangles of an image; the target's boxes, masks and labels stay (an erased object is
    still there, occluded), unless ``drop_erased``.

    Args:
        p: probability of erasing: once per image in ``"image"`` mode, once per object in
            ``"object"`` mode (each drawn independently).
        scale: (low, high), the erased area as a fraction of the image's (or the box's) area; the
            rectangle's whole-pixel area lies in [low, high] times it.
        ratio: (low, high), the rectangle's height / width, drawn log-uniformly.
        value: the fill: a float (every channel), a sequence of one float per channel, or
            ``"random"`` (each pixel and channel uniform in [0, 1), the paper's choice).
        mode: ``"image"`` (one rectangle anywhere), ``"object"`` (one rectangle inside each box)
            or ``"image_and_object"`` (both).
        semantic: what the semantic map says under the erased pixels: ``"keep"`` (the classes
            stay: the model learns to see through occlusion, as the paper keeps labels) or
            ``"ignore"`` (255, so no loss is taken where the evidence is gone).
        drop_erased: drop the objects whose every mask pixel (or, without masks, whose whole box)
            is erased, with all their per-object fields; their semantic pixels become background
            (in ``"keep"`` mode) and tags follow the labels left.
        max_tries: draws of (area, ratio) before giving up on a rectangle that does not fit; a
            region where none fits is left unerased.

    Called as ``t(image, target, generator=None)`` on a float image [C, H, W]; returns a new image
    and target (the inputs are not modified).
    """

    def __init__(
        self,
        p: float = 0.5,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: float | str | tuple[float, ...] = "random",
        *,
        mode: str = "image",
        semantic: str = "keep",
        drop_erased: bool = False,
        max_tries: int = 10,
    ):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomErasing: p must be in [0, 1], got {p}")
        lo, hi = (float(s) for s in scale)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"RandomErasing: scale must satisfy 0 < low <= high <= 1, got {scale}")
        rlo, rhi = (float(r) for r in ratio)
        if not (0.0 < rlo <= rhi and math.isfinite(rhi)):
            raise ValueError(f"RandomErasing: ratio must satisfy 0 < low <= high (finite), got {ratio}")
        if isinstance(value, str):
            if value != "random":
                raise ValueError(
                    f"RandomErasing: value must be a number, a per-channel sequence or 'random', got {value!r}"
                )
        elif isinstance(value, (int, float)):
            value = float(value)
        else:
            value = tuple(float(v) for v in value)
            if len(value) == 0:
                raise ValueError("RandomErasing: value must not be an empty sequence")
        if mode not in MODES:
            raise ValueError(f"RandomErasing: mode must be one of {MODES}, got {mode!r}")
        if semantic not in SEMANTIC_CHOICES:
            raise ValueError(f"RandomErasing: semantic must be one of {SEMANTIC_CHOICES}, got {semantic!r}")
        if int(max_tries) < 1:
            raise ValueError(f"RandomErasing: max_tries must be >= 1, got {max_tries}")
        self.p, self.scale, self.ratio, self.value = float(p), (lo, hi), (rlo, rhi), value
        self.mode, self.semantic, self.drop_erased, self.max_tries = mode, semantic, bool(drop_erased), int(max_tries)

    def get_params(self, height: int, width: int, generator: torch.Generator | None = None):
        """(top, left, h, w) of a rectangle inside a ``height`` x ``width`` region whose area h * w
        is in ``scale`` times the region's and whose h / w is near a log-uniform draw from
        ``ratio``; None when no draw fits within ``max_tries``."""
        region = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(self.max_tries):
            area = region * uniform(*self.scale, generator)
            aspect = math.exp(uniform(log_lo, log_hi, generator))
            h = round(math.sqrt(area * aspect))
            w = round(math.sqrt(area / aspect))
            if 1 <= h <= height and 1 <= w <= width and self.scale[0] * region <= h * w <= self.scale[1] * region:
                top = int(torch.randint(0, height - h + 1, (), generator=generator))
                left = int(torch.randint(0, width - w + 1, (), generator=generator))
                return top, left, h, w
        return None

    def rectangles(self, image: Tensor, target: dict, generator=None) -> list[tuple[int, int, int, int]]:
        """The rectangles (top, left, h, w) one call erases, in image pixels."""
        height, width = image.shape[-2:]
        rects = []
        if self.mode != "object" and uniform(0.0, 1.0, generator) < self.p:
            rect = self.get_params(height, width, generator)
            if rect is not None:
                rects.append(rect)
        if self.mode != "image" and "boxes" in target:
            for x0, y0, x1, y1 in target["boxes"].tolist():
                # the pixels the box covers, clipped to the image
                r0, c0 = max(0, math.floor(y0)), max(0, math.floor(x0))
                r1, c1 = min(height, math.ceil(y1)), min(width, math.ceil(x1))
                if uniform(0.0, 1.0, generator) >= self.p or r1 <= r0 or c1 <= c0:
                    continue
                rect = self.get_params(r1 - r0, c1 - c0, generator)
                if rect is not None:
                    rects.append((r0 + rect[0], c0 + rect[1], rect[2], rect[3]))
        return rects

    def __call__(self, image: Tensor, target: dict, generator: torch.Generator | None = None):
        if not isinstance(image, Tensor) or image.dim() != 3 or not image.is_floating_point():
            what = f"{list(image.shape)} {image.dtype}" if isinstance(image, Tensor) else type(image).__name__
            raise TypeError(f"RandomErasing: image must be a floating Tensor [C, H, W], got {what}")
        channels = image.shape[0]
        if isinstance(self.value, tuple) and len(self.value) != channels:
            raise ValueError(f"RandomErasing: value has {len(self.value)} entries for an image of {channels} channels")
        rects = self.rectangles(image, target, generator)
        out = dict(target)
        if not rects:
            return image, out
        image = image.clone()
        erased = torch.zeros(image.shape[-2:], dtype=torch.bool)
        for top, left, h, w in rects:
            window = (slice(None), slice(top, top + h), slice(left, left + w))
            if self.value == "random":
                fill = torch.rand((channels, h, w), generator=generator, dtype=image.dtype)
            else:
                fill = torch.tensor(self.value, dtype=image.dtype).reshape(-1, 1, 1)
            image[window] = fill
            erased[window[1:]] = True
        if self.semantic == "ignore" and "semantic" in out:
            out["semantic"] = out["semantic"].masked_fill(erased, 255)
        if self.drop_erased:
            out = self._drop_erased(out, erased)
        return image, out

    def _drop_erased(self, target: dict, erased: Tensor) -> dict:
        if "masks" in target:
            masks = binary_masks(target["masks"])
            hidden = (masks & (erased ^ True).to(torch.uint8)).flatten(1).amax(1) == 0
        elif "boxes" in target:
            covered = erased.cumsum(0).cumsum(1)  # summed-area table: erased pixels inside each box
            hidden = torch.tensor([_box_covered(covered, b) for b in target["boxes"].tolist()], dtype=torch.bool)
        else:
            return target
        if not bool(hidden.any()):
            return target
        if "semantic" in target and "masks" in target and "labels" in target:
            semantic = target["semantic"].clone()
            for j in torch.nonzero(hidden).flatten().tolist():
                semantic[masks[j].bool() & (semantic == target["labels"][j])] = 0
            target = {**target, "semantic": semantic}
        return keep_objects(target, ~hidden)

    def __repr__(self) -> str:
        return (
            f"RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value!r}, "
            f"mode={self.mode!r}, semantic={self.semantic!r}, drop_erased={self.drop_erased})"
        )


def _box_covered(table: Tensor, box: list[float]) -> bool:
    """Whether every pixel a box covers is erased (``table``: the erased map's summed-area table)."""
    height, width = table.shape
    r0, c0 = max(0, math.floor(box[1])), max(0, math.floor(box[0]))
    r1, c1 = min(height, math.ceil(box[3])), min(width, math.ceil(box[2]))
    if r1 <= r0 or c1 <= c0:
        return False
    total = int(table[r1 - 1, c1 - 1])
    total -= int(table[r0 - 1, c1 - 1]) if r0 > 0 else 0
    total -= int(table[r1 - 1, c0 - 1]) if c0 > 0 else 0
    total += int(table[r0 - 1, c0 - 1]) if r0 > 0 and c0 > 0 else 0
    return total == (r1 - r0) * (c1 - c0)
