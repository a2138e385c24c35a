"""``SyntheticShapes``: coloured shapes on textured backgrounds, generated on the fly.

Each class is one shape kind (rectangle, ellipse, triangle, ...) with its own hue, so a small
detector or segmenter learns it in minutes. Objects sit in distinct cells of a grid over the
image (never overlapping, never tiny), so every box is tight around a fully visible mask.

Labels come from a counter-based hash of (seed, index, slot): ``image_labels(i)`` and
``label_counts()`` need no rendering, and image i is the same whatever the dataset's length.
The pixels come from a numpy generator seeded by (seed, index) and a bank of pixel noise seeded
by the seed alone (each image adds a window of it).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["SHAPE_KINDS", "SyntheticShapes"]

SHAPE_KINDS = ("rectangle", "ellipse", "triangle", "diamond", "cross", "ring", "hexagon", "frame", "ell")

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) & _MASK64


def _uniform(seed: int, index, slot) -> np.ndarray:
    """Uniform float64 in [0, 1), a pure function of (seed, index, slot) (arrays broadcast)."""
    with np.errstate(over="ignore"):
        h = _splitmix64(np.asarray(seed % 2**64, dtype=np.uint64))
        h = _splitmix64(h ^ np.asarray(index, dtype=np.uint64))
        h = _splitmix64(h ^ np.asarray(slot, dtype=np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _shape_mask(kind: str, h: int, w: int) -> np.ndarray:
    """Boolean [h, w] mask of a shape filling an h x w box (coordinates of pixel centres in [-1, 1])."""
    v = ((np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1)[:, None]
    u = ((np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1)[None, :]
    au, av = np.abs(u), np.abs(v)
    if kind == "rectangle":
        m = np.ones((h, w), dtype=bool)
    elif kind == "ellipse":
        m = u * u + v * v <= 1.0
    elif kind == "triangle":
        m = au <= (v + 1) * 0.5
    elif kind == "diamond":
        m = au + av <= 1.0
    elif kind == "cross":
        m = (au <= 0.34) | (av <= 0.34)
    elif kind == "ring":
        r2 = u * u + v * v
        m = (r2 <= 1.0) & (r2 >= 0.36)
    elif kind == "hexagon":
        m = (au <= 0.87) & (av + 0.577 * au <= 1.0)
    elif kind == "frame":
        m = np.maximum(au, av) >= 0.5
    else:  # "ell"
        m = (u <= -0.3) | (v >= 0.3)
    m = np.broadcast_to(m, (h, w))
    if not m.any():  # a box too small for the shape's pixel centres: keep one pixel
        m = np.zeros((h, w), dtype=bool)
        m[h // 2, w // 2] = True
    return m


_COARSE = 6  # the background texture's grid, upsampled bilinearly


def _interpolation_matrix(n: int) -> np.ndarray:
    """float32 [n, _COARSE]: bilinear interpolation from _COARSE samples to n pixels (half-pixel centres)."""
    x = np.clip((np.arange(n) + 0.5) * _COARSE / n - 0.5, 0, _COARSE - 1)
    lo = np.minimum(np.floor(x).astype(np.int64), _COARSE - 2)
    frac = (x - lo).astype(np.float32)
    m = np.zeros((n, _COARSE), dtype=np.float32)
    m[np.arange(n), lo] = 1 - frac
    m[np.arange(n), lo + 1] += frac
    return m


class SyntheticShapes(torch.utils.data.Dataset):
    """Shapes on textured, noisy backgrounds with boxes, instance masks, semantic maps and tags.

    Args:
        num_images: dataset length.
        image_size: int or (H, W).
        num_classes: C; class c is shape kind ``SHAPE_KINDS[(c - 1) % 9]`` with hue (c - 1) / C.
        min_objects, max_objects: objects per image, uniform in [min_objects, max_objects]; they
            sit in distinct cells of a ceil(sqrt(max_objects))-square grid, each filling 45-95% of
            its cell's height and width.
        imbalance: ratio of the most to the least frequent class (1 = balanced). Each object's class
            is drawn with P(c) proportional to imbalance^(-(c - 1) / (C - 1)): class 1 is the most
            frequent, class C the rarest, expected object counts fall geometrically in between.
        seed: with the index, fixes every image.
        single_object: exactly one object per image, 30-80% of the image's size (for localizers).
        transforms: optional callable (image, target) -> (image, target) applied last.

    ``dataset[i]`` is (image float32 [3, H, W] in [0, 1], target) with ``boxes`` (float32 [K, 4],
    xyxy, edges on pixel boundaries: the smallest box holding the mask), ``labels`` (int64 [K] in
    [1, C]), ``masks`` (uint8 [K, H, W]), ``semantic`` (int64 [H, W], 0 background), ``tags``
    (float32 [C], multi-hot), ``image_id`` (i).
    """

    has_masks = True
    has_semantic = True

    def __init__(
        self,
        num_images: int,
        image_size: int | tuple[int, int] = 128,
        *,
        num_classes: int = 5,
        min_objects: int = 1,
        max_objects: int = 4,
        imbalance: float = 1.0,
        seed: int = 0,
        single_object: bool = False,
        transforms: Callable | None = None,
    ):
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        h, w = (int(s) for s in image_size)
        if int(num_images) < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        if h < 8 or w < 8:
            raise ValueError(f"image_size must be at least 8 x 8, got {image_size}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if single_object:
            min_objects = max_objects = 1
        if not 1 <= int(min_objects) <= int(max_objects):
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects} and {max_objects}")
        grid = math.ceil(math.sqrt(max_objects))
        if min(h, w) / grid < 6:
            raise ValueError(f"image_size {image_size} is too small for {max_objects} objects (cells under 6 pixels)")
        if not (math.isfinite(imbalance) and imbalance >= 1.0):
            raise ValueError(f"imbalance must be a finite ratio >= 1, got {imbalance}")
        self.num_images = int(num_images)
        self.image_size = (h, w)
        self.num_classes = int(num_classes)
        self.min_objects, self.max_objects = int(min_objects), int(max_objects)
        self.imbalance = float(imbalance)
        self.seed = int(seed)
        self.single_object = bool(single_object)
        self.transforms = transforms
        self.grid = grid
        self.class_names = [
            SHAPE_KINDS[c % len(SHAPE_KINDS)] + ("" if c < len(SHAPE_KINDS) else f"_{c // len(SHAPE_KINDS) + 1}")
            for c in range(self.num_classes)
        ]
        c = np.arange(self.num_classes, dtype=np.float64)
        p = self.imbalance ** (-c / max(self.num_classes - 1, 1))
        self.class_probabilities = p / p.sum()
        self._cdf = np.cumsum(self.class_probabilities)
        self._cdf[-1] = 1.0
        self._counts: Tensor | None = None
        self._interp_y, self._interp_x = _interpolation_matrix(h), _interpolation_matrix(w)
        # pixel noise: each image adds a window of one bank at a random offset (drawing fresh
        # normals per image would take most of an image's time)
        bank = np.random.Generator(np.random.PCG64([self.seed % 2**63, 2**62]))
        self._noise = 0.03 * bank.standard_normal((3, 2 * h, 2 * w), dtype=np.float32)

    def __len__(self) -> int:
        return self.num_images

    def _labels(self, index) -> list[np.ndarray]:
        """Labels of images ``index`` (int array), one int64 array each."""
        index = np.asarray(index, dtype=np.uint64)
        span = self.max_objects - self.min_objects + 1
        n = self.min_objects + np.minimum((_uniform(self.seed, index, 0) * span).astype(np.int64), span - 1)
        slots = np.arange(1, self.max_objects + 1, dtype=np.uint64)
        u = _uniform(self.seed, index[:, None], slots[None, :])
        cls = np.searchsorted(self._cdf, u, side="right") + 1
        cls = np.minimum(cls, self.num_classes)
        return [row[:k] for row, k in zip(cls, n)]

    def _check_index(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.num_images:
            raise IndexError(f"image index {i} out of range for {self.num_images} images")
        return i

    def image_labels(self, i: int) -> list[int]:
        """Labels of image i, one per object, without rendering it."""
        return self._labels([self._check_index(i)])[0].tolist()

    def label_counts(self) -> Tensor:
        """Objects per class over the dataset, int64 Tensor[C]."""
        if self._counts is None:
            counts = np.zeros(self.num_classes, dtype=np.int64)
            for start in range(0, self.num_images, 65536):
                rows = self._labels(np.arange(start, min(start + 65536, self.num_images)))
                if rows:
                    counts += np.bincount(np.concatenate(rows) - 1, minlength=self.num_classes)
            self._counts = torch.from_numpy(counts)
        return self._counts.clone()

    def _colour(self, c: int, rng: np.random.Generator) -> np.ndarray:
        hue = (c - 1) / self.num_classes
        value = 0.85 + rng.uniform(-0.1, 0.1)
        return np.array(colorsys.hsv_to_rgb(hue, 0.85, value), dtype=np.float32)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        grey = rng.uniform(0.3, 0.7)
        base = (grey + rng.uniform(-0.06, 0.06, 3)).astype(np.float32)
        coarse = rng.normal(0.0, 0.09, (3, _COARSE, _COARSE)).astype(np.float32)
        texture = self._interp_y @ coarse @ self._interp_x.T  # bilinear upsampling, [3, H, W]
        return base[:, None, None] + texture

    def __getitem__(self, i: int):
        i = self._check_index(i)
        labels = self._labels([i])[0]
        h, w = self.image_size
        rng = np.random.Generator(np.random.PCG64([self.seed % 2**63, i]))
        image = self._background(rng)
        k = len(labels)
        masks = np.zeros((k, h, w), dtype=np.uint8)
        boxes = np.zeros((k, 4), dtype=np.float32)
        semantic = np.zeros((h, w), dtype=np.int64)
        if self.single_object:
            cells, cell_h, cell_w, lo, hi = [0], h, w, 0.3, 0.8
        else:
            cells = rng.permutation(self.grid * self.grid)[:k]
            cell_h, cell_w, lo, hi = h / self.grid, w / self.grid, 0.45, 0.95
        for j, c in enumerate(labels.tolist()):
            gy, gx = divmod(int(cells[j]), self.grid)
            oh = max(3, int(cell_h * rng.uniform(lo, hi)))
            ow = max(3, int(cell_w * rng.uniform(lo, hi)))
            y0 = int(gy * cell_h + rng.uniform(0, cell_h - oh))
            x0 = int(gx * cell_w + rng.uniform(0, cell_w - ow))
            y0, x0 = min(max(y0, 0), h - oh), min(max(x0, 0), w - ow)
            m = _shape_mask(SHAPE_KINDS[(c - 1) % len(SHAPE_KINDS)], oh, ow)
            colour = self._colour(c, rng)
            patch = image[:, y0 : y0 + oh, x0 : x0 + ow]
            shade = colour[:, None, None] + rng.uniform(-0.05, 0.05, (3, 1, 1)).astype(np.float32)
            image[:, y0 : y0 + oh, x0 : x0 + ow] = np.where(m[None], shade, patch)
            masks[j, y0 : y0 + oh, x0 : x0 + ow] = m
            semantic[y0 : y0 + oh, x0 : x0 + ow][m] = c
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            boxes[j] = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)
        oy, ox = int(rng.integers(0, h)), int(rng.integers(0, w))
        image += self._noise[:, oy : oy + h, ox : ox + w]
        np.clip(image, 0.0, 1.0, out=image)
        tags = np.zeros(self.num_classes, dtype=np.float32)
        tags[labels - 1] = 1.0
        target = {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.from_numpy(labels.astype(np.int64)),
            "masks": torch.from_numpy(masks),
            "semantic": torch.from_numpy(semantic),
            "tags": torch.from_numpy(tags),
            "image_id": i,
        }
        image = torch.from_numpy(image)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def __repr__(self) -> str:
        return (
            f"SyntheticShapes(num_images={self.num_images}, image_size={self.image_size}, "
            f"num_classes={self.num_classes}, objects={self.min_objects}..{self.max_objects}, "
            f"imbalance={self.imbalance}, seed={self.seed}, single_object={self.single_object})"
        )
