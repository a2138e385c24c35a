"""Where the augmentations that mix two samples draw their second one from."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SampleSource"]


class SampleSource:
    """A dataset (indexable, with ``len``: each draw takes a uniformly drawn index) or a callable
    ``source(generator) -> (image, target)``; ``owner`` names the transform in error messages."""

    def __init__(self, source, owner: str):
        self.is_dataset = hasattr(source, "__getitem__") and hasattr(source, "__len__")
        if not self.is_dataset and not callable(source):
            raise TypeError(f"{owner}: source must be a dataset or a callable, got {type(source).__name__}")
        if self.is_dataset and len(source) == 0:
            raise ValueError(f"{owner}: the source dataset is empty")
        self.source = source

    def draw(self, generator: torch.Generator | None = None) -> tuple[Tensor, dict]:
        if self.is_dataset:
            return self.source[int(torch.randint(0, len(self.source), (), generator=generator))]
        return self.source(generator)

    def __repr__(self) -> str:
        return type(self.source).__name__
