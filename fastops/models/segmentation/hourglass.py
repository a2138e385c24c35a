"""Stacked hourglass networks (Newell et al., 2016) with intermediate supervision.

A stem (7x7 stride-2 convolution, residual blocks, a 2x2 pool) brings the image to a quarter of its
size. Each stack is a recursive hourglass (a residual branch at this scale, plus pool -> residual ->
the next-smaller hourglass (a residual at the bottom) -> residual -> nearest upsampling, summed),
then a residual block, a 1x1 convolution with normalization and ReLU, and a 1x1 classifier that
predicts the map. Every stack but the last feeds the next: its features and its prediction, each
through a 1x1 convolution, are added to its input, so the next stack refines the previous
prediction. Predictions are upsampled bilinearly to the input's size.

``forward`` returns a dict: ``"out"`` (the last stack's prediction, what ``predict`` uses) and
``"stack<i>"`` for each earlier stack; ``loss`` sums every stack's term (``Segmenter``; each
weight 1 unless ``loss_weights`` says otherwise).

Any input size at least ``4 * 2 ** depth``: the pools round down and each upsampling goes to the
exact size of the branch it is added to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from ...nn import Conv2d
from .base import DEFAULT_IGNORE_INDEX, Segmenter

__all__ = ["Hourglass", "Residual", "StackedHourglass", "stacked_hourglass"]

Norm = Callable[[int], nn.Module]


class Residual(nn.Module):
    """The hourglass paper's residual block: normalization, ReLU, 1x1 (half the output channels),
    3x3, 1x1 (pre-activation bottleneck), plus the input (through a 1x1 convolution when the
    channel count changes)."""

    def __init__(self, in_channels: int, out_channels: int, norm_layer: Norm, path: str):
        super().__init__()
        mid = max(out_channels // 2, 1)
        self.body = nn.Sequential(
            norm_layer(in_channels),
            nn.ReLU(inplace=False),
            Conv2d(in_channels, mid, 1, path=path),
            norm_layer(mid),
            nn.ReLU(inplace=True),
            Conv2d(mid, mid, 3, padding=1, path=path),
            norm_layer(mid),
            nn.ReLU(inplace=True),
            Conv2d(mid, out_channels, 1, path=path),
        )
        self.skip = None if in_channels == out_channels else Conv2d(in_channels, out_channels, 1, path=path)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + (x if self.skip is None else self.skip(x))


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels at ``channels`` (module docstring); the size is kept."""

    def __init__(self, depth: int, channels: int, norm_layer: Norm, path: str):
        super().__init__()
        self.up1 = Residual(channels, channels, norm_layer, path)
        self.low1 = Residual(channels, channels, norm_layer, path)
        self.low2 = (
            Hourglass(depth - 1, channels, norm_layer, path)
            if depth > 1
            else Residual(channels, channels, norm_layer, path)
        )
        self.low3 = Residual(channels, channels, norm_layer, path)

    def forward(self, x: Tensor) -> Tensor:
        up = self.up1(x)
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2))))
        return up + F.interpolate(low, size=up.shape[-2:], mode="nearest")


class StackedHourglass(Segmenter):
    """Stacked hourglass network (module docstring; ``stacked_hourglass`` builds it).

    Args (keyword-only):
        num_stacks: hourglasses in sequence, each supervised.
        in_channels, num_classes: input channels, predicted maps.
        depth: levels of each hourglass (pools below the stem's quarter resolution).
        channels: the hourglasses' width (the paper: 256).
        norm_layer: channels -> module (default ``nn.BatchNorm2d``); path: the convolutions' path.
        criterion, ignore_index, loss_weights: the loss (``Segmenter``).
    """

    def __init__(
        self,
        *,
        num_stacks: int = 2,
        in_channels: int = 3,
        num_classes: int = 2,
        depth: int = 4,
        channels: int = 256,
        norm_layer: Norm | None = None,
        path: str = "auto",
        criterion: nn.Module | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        loss_weights: Mapping[str, float] | None = None,
    ):
        super().__init__()
        for name, value in (
            ("num_stacks", num_stacks),
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("depth", depth),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if channels < 4:
            raise ValueError(f"channels must be at least 4, got {channels}")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.in_channels, self.num_classes, self.num_stacks = in_channels, num_classes, num_stacks
        self.min_size = 4 * 2**depth
        quarter = max(channels // 4, 1)
        half = max(channels // 2, 1)
        self.stem = nn.Sequential(
            Conv2d(in_channels, quarter, 7, stride=2, padding=3, bias=False, path=path),
            norm_layer(quarter),
            nn.ReLU(inplace=True),
            Residual(quarter, half, norm_layer, path),
            nn.MaxPool2d(2),
            Residual(half, half, norm_layer, path),
            Residual(half, channels, norm_layer, path),
        )
        self.hourglasses = nn.ModuleList(Hourglass(depth, channels, norm_layer, path) for _ in range(num_stacks))
        self.features = nn.ModuleList(
            nn.Sequential(
                Residual(channels, channels, norm_layer, path),
                Conv2d(channels, channels, 1, bias=False, path=path),
                norm_layer(channels),
                nn.ReLU(inplace=True),
            )
            for _ in range(num_stacks)
        )
        self.classifiers = nn.ModuleList(Conv2d(channels, num_classes, 1, path=path) for _ in range(num_stacks))
        self.merge_features = nn.ModuleList(Conv2d(channels, channels, 1, path=path) for _ in range(num_stacks - 1))
        self.merge_predictions = nn.ModuleList(
            Conv2d(num_classes, channels, 1, path=path) for _ in range(num_stacks - 1)
        )
        self.init_loss(criterion, ignore_index, loss_weights)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        size = images.shape[-2:]
        x = self.stem(images)
        out = {}
        for i in range(self.num_stacks):
            features = self.features[i](self.hourglasses[i](x))
            prediction = self.classifiers[i](features)
            name = "out" if i == self.num_stacks - 1 else f"stack{i}"
            out[name] = F.interpolate(prediction, size=size, mode="bilinear", align_corners=False)
            if i < self.num_stacks - 1:
                x = x + self.merge_features[i](features) + self.merge_predictions[i](prediction)
        return out


def stacked_hourglass(num_stacks: int = 2, *, num_classes: int = 2, **kwargs) -> StackedHourglass:
    """A stacked hourglass network (the paper: 8 stacks of depth 4 at 256 channels; 2 stacks by
    default here); other keyword arguments: ``StackedHourglass``'s."""
    return StackedHourglass(num_stacks=num_stacks, num_classes=num_classes, **kwargs)
