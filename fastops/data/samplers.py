"""Samplers for imbalanced data, sharded across processes like ``DistributedSampler``.

Both samplers take the per-image label lists (``fastops.data.image_labels(dataset)``), draw one
epoch's order as a pure function of (seed, epoch), pad it by wrapping around to a multiple of
``num_replicas`` and give rank r the positions r, r + num_replicas, ... (disjoint shards covering
the epoch). ``set_epoch`` picks the epoch; ``state_dict`` / ``load_state_dict`` save and restore
{seed, epoch}.

- ``ClassBalancedSampler``: images drawn with probabilities that make every class about equally
  frequent (or, with ``undersample=True``, an epoch as long as the rarest class allows, without
  repeats).
- ``RepeatFactorSampler``: LVIS repeat-factor sampling (Gupta et al. 2019): image i appears
  r_i = max over its classes of max(1, sqrt(t / f_c)) times per epoch, stochastically rounded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from ..ops import class_weights
from .batching import image_labels

__all__ = ["ClassBalancedSampler", "RepeatFactorSampler", "class_weights", "image_class_counts", "repeat_factors"]


def _distributed_defaults(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    dist = torch.distributed
    initialized = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas} and {rank}")
    return int(num_replicas), int(rank)


def _check_labels(labels, num_classes: int | None) -> tuple[list[list[int]], int]:
    """Distinct sorted labels per image, from label lists or a dataset (``image_labels``)."""
    if not isinstance(labels, (list, tuple)):
        num_classes = num_classes if num_classes is not None else getattr(labels, "num_classes", None)
        labels = image_labels(labels)
    rows = [sorted({int(c) for c in row}) for row in labels]
    top = max((row[-1] for row in rows if row), default=0)
    num_classes = top if num_classes is None else int(num_classes)
    for i, row in enumerate(rows):
        if row and (row[0] < 1 or row[-1] > num_classes):
            raise ValueError(f"image {i}: labels must be in [1, {num_classes}], got {row}")
    return rows, num_classes


def image_class_counts(labels: Sequence[Sequence[int]], num_classes: int | None = None) -> Tensor:
    """Images containing each class, int64 Tensor[C] (an image with two objects of a class counts once)."""
    rows, num_classes = _check_labels(labels, num_classes)
    counts = torch.zeros(num_classes, dtype=torch.int64)
    for row in rows:
        counts[[c - 1 for c in row]] += 1
    return counts


class _ShardedEpochSampler(torch.utils.data.Sampler):
    """The shared part: (seed, epoch) -> one epoch's order (``_epoch_indices``), padded and sharded."""

    def __init__(self, num_replicas: int | None, rank: int | None, seed: int, drop_last: bool):
        self.num_replicas, self.rank = _distributed_defaults(num_replicas, rank)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._cache: tuple[tuple[int, int], list[int]] | None = None

    def _epoch_indices(self, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def _shard(self) -> list[int]:
        key = (self.seed, self.epoch)
        if self._cache is None or self._cache[0] != key:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = self._epoch_indices(g)
            n = order.numel()
            if self.drop_last:
                total = (n // self.num_replicas) * self.num_replicas
                order = order[:total]
            else:
                total = math.ceil(n / self.num_replicas) * self.num_replicas
                if n and total > n:
                    order = torch.cat([order, order.repeat(math.ceil((total - n) / n))[: total - n]])
            self._cache = (key, order[self.rank : total : self.num_replicas].tolist())
        return self._cache[1]

    def __iter__(self) -> Iterator[int]:
        return iter(self._shard())

    def __len__(self) -> int:
        return len(self._shard())

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration gives (call before each epoch)."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])


class ClassBalancedSampler(_ShardedEpochSampler):
    """Draws images so that classes are seen about equally often.

    Class c gets weight w_c = ``class_weights(n, method)`` of the image counts n_c (images
    containing c; "inverse" balances exactly for single-label data). An image's weight is, by
    ``multilabel``:

    - "mean" (default): the mean of w_c over its distinct classes, so an image of a rare and a
      common class is drawn more often than one of the common class alone, and less often than one
      of the rare class alone;
    - "rarest": the weight of its rarest class (max over its classes of w_c), the choice that
      raises rare classes the most, at the price of more repeats of the common classes they share
      images with.

    Images without labels form one more group, weighted like a class of their count (drawn as
    often as one class), unless ``background_weight`` gives their weight relative to that.

    Args:
        labels: per-image label lists (repeats allowed), or a dataset (its ``image_labels``).
        num_classes: C (default: the dataset's, else the largest label).
        num_samples: images per epoch over all replicas (default: the dataset's length).
        replacement: draw with replacement (default); without it an image appears at most once.
        undersample: draw without replacement an epoch of (number of groups) x (images of the
            rarest class) images: the common classes are undersampled instead of the rare ones
            repeated. Sets ``replacement=False`` and, unless given, ``num_samples``.
        method: "inverse", "inverse_sqrt" or "effective_number" (``fastops.class_weights``).
        num_replicas, rank: the shard (default: from torch.distributed when initialized, else 1, 0).
        seed: with the epoch, fixes the order.
        drop_last: drop the tail that does not divide evenly instead of padding by wrapping around.
    """

    def __init__(
        self,
        labels: Sequence[Sequence[int]],
        *,
        num_classes: int | None = None,
        num_samples: int | None = None,
        replacement: bool = True,
        undersample: bool = False,
        method: str = "inverse",
        beta: float = 0.999,
        multilabel: str = "mean",
        background_weight: float = 1.0,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
        drop_last: bool = False,
    ):
        super().__init__(num_replicas, rank, seed, drop_last)
        if multilabel not in ("mean", "rarest"):
            raise ValueError(f"multilabel must be 'mean' or 'rarest', got {multilabel!r}")
        rows, self.num_classes = _check_labels(labels, num_classes)
        if not rows:
            raise ValueError("ClassBalancedSampler: no images")
        counts = image_class_counts(rows, self.num_classes)
        empty = sum(1 for row in rows if not row)
        # the label-less images are one more group, weighted by the same rule
        group_w = class_weights(torch.cat([counts, torch.tensor([empty])]).double(), method, beta)
        w_class, w_empty = group_w[:-1], float(group_w[-1]) * float(background_weight)
        weights = torch.empty(len(rows), dtype=torch.float64)
        for i, row in enumerate(rows):
            if not row:
                weights[i] = w_empty
            elif multilabel == "mean":
                weights[i] = w_class[[c - 1 for c in row]].mean()
            else:
                weights[i] = w_class[[c - 1 for c in row]].max()
        if not bool((weights > 0).any()):
            raise ValueError("ClassBalancedSampler: every image has weight 0")
        self.weights = weights
        self.undersample = bool(undersample)
        if undersample:
            replacement = False
            if num_samples is None:
                sizes = [int(n) for n in counts if n > 0] + ([empty] if empty and background_weight > 0 else [])
                num_samples = len(sizes) * min(sizes)
        self.replacement = bool(replacement)
        self.num_samples = len(rows) if num_samples is None else int(num_samples)
        positive = int((weights > 0).sum())
        if not self.replacement and self.num_samples > positive:
            raise ValueError(
                f"num_samples={self.num_samples} without replacement exceeds the {positive} images of positive weight"
            )
        if self.num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {self.num_samples}")

    def _epoch_indices(self, generator: torch.Generator) -> Tensor:
        if self.num_samples == 0:
            return torch.zeros(0, dtype=torch.int64)
        return torch.multinomial(self.weights, self.num_samples, self.replacement, generator=generator)


def repeat_factors(labels: Sequence[Sequence[int]], repeat_thresh: float, num_classes: int | None = None) -> Tensor:
    """LVIS repeat factors, float64 Tensor[N]: f_c = fraction of images containing class c,
    r_c = max(1, sqrt(t / f_c)), r_i = max over the image's classes of r_c (1 for an image
    without labels)."""
    rows, num_classes = _check_labels(labels, num_classes)
    if not rows:
        return torch.zeros(0, dtype=torch.float64)
    freq = image_class_counts(rows, num_classes).double() / len(rows)
    r_class = torch.clamp(torch.sqrt(repeat_thresh / freq.clamp_min(1e-300)), min=1.0)
    return torch.tensor([max((float(r_class[c - 1]) for c in row), default=1.0) for row in rows], dtype=torch.float64)


class RepeatFactorSampler(_ShardedEpochSampler):
    """LVIS repeat-factor sampling (Gupta et al. 2019, as detectron2's RepeatFactorTrainingSampler).

    Image i appears floor(r_i) + Bernoulli(frac(r_i)) times in an epoch (stochastic rounding,
    drawn again each epoch), r_i from ``repeat_factors``; the epoch is then shuffled (or kept in
    index order with ``shuffle=False``). Its length varies around sum_i r_i from epoch to epoch.

    Args:
        labels: per-image label lists, or a dataset (its ``image_labels``).
        repeat_thresh: t, the image frequency below which a class is oversampled (LVIS: 0.001).
        num_classes, num_replicas, rank, seed, drop_last: as ``ClassBalancedSampler``.
    """

    def __init__(
        self,
        labels: Sequence[Sequence[int]],
        *,
        repeat_thresh: float = 0.001,
        num_classes: int | None = None,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
        drop_last: bool = False,
    ):
        super().__init__(num_replicas, rank, seed, drop_last)
        if not (math.isfinite(repeat_thresh) and repeat_thresh >= 0):
            raise ValueError(f"repeat_thresh must be a finite number >= 0, got {repeat_thresh}")
        self.repeat_factors = repeat_factors(labels, repeat_thresh, num_classes)
        self.shuffle = bool(shuffle)

    def _epoch_indices(self, generator: torch.Generator) -> Tensor:
        r = self.repeat_factors
        whole = torch.floor(r)
        extra = torch.rand(r.shape, generator=generator, dtype=torch.float64) < (r - whole)
        reps = (whole + extra.double()).to(torch.int64)
        order = torch.repeat_interleave(torch.arange(r.numel()), reps)
        if self.shuffle:
            order = order[torch.randperm(order.numel(), generator=generator)]
        return order
