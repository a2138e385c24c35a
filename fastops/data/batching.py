"""Batching samples: ``collate`` for detectors (lists of any sizes), ``stack_images`` for models
that take one tensor, and the label lists samplers and ``class_weights`` read."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["collate", "image_labels", "label_counts", "stack_images"]


def collate(batch: Sequence[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """A DataLoader ``collate_fn``: [(image, target), ...] -> (list of images, list of targets),
    nothing stacked (detectors take images of any sizes)."""
    images, targets = [], []
    for i, sample in enumerate(batch):
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise TypeError(f"collate: sample {i} must be an (image, target) pair, got {type(sample).__name__}")
        images.append(sample[0])
        targets.append(sample[1])
    return images, targets


def stack_images(tensors: Sequence[Tensor], pad_value: float = 0.0) -> Tensor:
    """Tensors [..., H_i, W_i] (images [3, H, W], masks or semantic maps [H, W]) -> one tensor
    [N, ..., H, W]: stacked when the sizes are equal, else each padded at the bottom and right to
    the largest H and W with ``pad_value`` (use 255, the ignore index, for semantic maps). Tensors
    with one dimension (tags [C]) are stacked as they are."""
    if len(tensors) == 0:
        raise ValueError("stack_images: no tensors to stack")
    first = tensors[0]
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"stack_images: item {i} is a {type(t).__name__}, not a Tensor")
        if t.dim() != first.dim() or t.shape[:-2] != first.shape[:-2] or t.dtype != first.dtype:
            raise ValueError(
                f"stack_images: item {i} has shape {list(t.shape)} and dtype {t.dtype}, item 0 has "
                f"{list(first.shape)} and {first.dtype}: only the last two sizes may differ"
            )
    if first.dim() < 2 or all(t.shape == first.shape for t in tensors):
        return torch.stack(list(tensors))
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    out = first.new_full((len(tensors), *first.shape[:-2], h, w), pad_value)
    for i, t in enumerate(tensors):
        out[i, ..., : t.shape[-2], : t.shape[-1]] = t
    return out


def image_labels(dataset) -> list[list[int]]:
    """Every image's labels (one per object, repeats kept) without decoding images where the
    dataset can tell them (``dataset.image_labels(i)``; a ``torch.utils.data.Subset`` is followed
    to its dataset); otherwise each target's ``labels`` is read."""
    if isinstance(dataset, torch.utils.data.Subset):
        inner = _labels_getter(dataset.dataset)
        return [inner(int(i)) for i in dataset.indices]
    get = _labels_getter(dataset)
    return [get(i) for i in range(len(dataset))]


def _labels_getter(dataset):
    """A function i -> labels of image i for ``dataset`` (its ``image_labels`` when it has one)."""
    if hasattr(dataset, "image_labels"):
        return lambda i: [int(c) for c in dataset.image_labels(i)]
    return lambda i: [int(c) for c in dataset[i][1]["labels"].tolist()]


def label_counts(labels, num_classes: int | None = None) -> Tensor:
    """Objects per class, int64 Tensor[C] (class c at index c - 1), from a dataset or from the
    per-image label lists (``image_labels``). ``num_classes`` defaults to the dataset's
    ``num_classes`` or the largest label."""
    if not isinstance(labels, (list, tuple)):
        num_classes = num_classes if num_classes is not None else getattr(labels, "num_classes", None)
        labels = image_labels(labels)
    flat = torch.tensor([c for row in labels for c in row], dtype=torch.int64)
    if num_classes is None:
        num_classes = int(flat.max()) if flat.numel() else 0
    if flat.numel() == 0:
        return torch.zeros(num_classes, dtype=torch.int64)
    lo, hi = int(flat.min()), int(flat.max())
    if lo < 1 or hi > num_classes:
        raise ValueError(f"label_counts: labels must be in [1, {num_classes}], got [{lo}, {hi}]")
    return torch.bincount(flat - 1, minlength=num_classes)
