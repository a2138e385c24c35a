"""U-Net (Ronneberger et al., 2015): an encoder of double 3x3 convolutions and 2x2 max pools, a
decoder that upsamples, concatenates the encoder's map of the same scale (the skip) and applies
another double convolution, and a 1x1 classifier.

Any input size at least ``2 ** depth``: the convolutions are padded ("same"), so only the pools
change sizes, rounding down; the up path then produces exactly the skip's size, without padding or
cropping: the transposed convolution (kernel 2, stride 2: 2h or, with output_padding 1, 2h + 1
pixels) is given the skip's size as ``output_size``, and bilinear upsampling resizes to it. An odd
row or column dropped by a pool is therefore still predicted (from the skip and the upsampled
neighbour) and the logits have the input's size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...nn import Conv2d, ConvTranspose2d
from .base import DEFAULT_IGNORE_INDEX, Segmenter

__all__ = ["DoubleConv", "UNet", "UpBlock", "unet"]


class DoubleConv(nn.Sequential):
    """(3x3 convolution, normalization, ReLU) twice, padded: the size is kept."""

    def __init__(self, in_channels: int, out_channels: int, norm_layer: Callable[[int], nn.Module], path: str):
        super().__init__(
            Conv2d(in_channels, out_channels, 3, padding=1, bias=False, path=path),
            norm_layer(out_channels),
            nn.ReLU(inplace=True),
            Conv2d(out_channels, out_channels, 3, padding=1, bias=False, path=path),
            norm_layer(out_channels),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """Upsample ``x`` to the skip's size, concatenate [skip, upsampled], double convolution.

    ``bilinear=False``: a learned 2x2 stride-2 transposed convolution halving the channels
    (fastops' ``ConvTranspose2d``); ``True``: bilinear resizing, then a 1x1 convolution halving them."""

    def __init__(
        self, in_channels: int, out_channels: int, *, bilinear: bool, norm_layer: Callable[[int], nn.Module], path: str
    ):
        super().__init__()
        half = in_channels // 2
        self.bilinear = bilinear
        if bilinear:
            self.up = Conv2d(in_channels, half, 1, path=path)
        else:
            self.up = ConvTranspose2d(in_channels, half, 2, stride=2, path=path)
        self.conv = DoubleConv(half + out_channels, out_channels, norm_layer, path)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        size = skip.shape[-2:]
        if self.bilinear:
            up = self.up(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        else:
            up = self.up(x, output_size=list(size))
        return self.conv(torch.cat([skip, up], 1))


class UNet(Segmenter):
    """U-Net; ``forward(images)`` returns logits Tensor[N, num_classes, H, W] (the input's size).

    Args (keyword-only; ``unet`` builds it):
        in_channels, num_classes: input channels and classes (1: binary, through a sigmoid).
        depth: the number of 2x pools (the input must be at least 2 ** depth on each side).
        base_channels: the first level's width; each level doubles it.
        bilinear: upsample bilinearly (then a 1x1 convolution) instead of by transposed convolution.
        norm_layer: a callable channels -> module (default ``nn.BatchNorm2d``).
        path: the convolutions' ``path`` ("auto", "fastops", "torch"; ``fastops.nn.Conv2d``).
        criterion, ignore_index: the loss (``Segmenter``).
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 2,
        depth: int = 4,
        base_channels: int = 64,
        bilinear: bool = False,
        norm_layer: Callable[[int], nn.Module] | None = None,
        path: str = "auto",
        criterion: nn.Module | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
    ):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("depth", depth)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if base_channels < 2:
            raise ValueError(f"base_channels must be at least 2, got {base_channels}")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.in_channels, self.num_classes, self.depth = in_channels, num_classes, depth
        self.min_size = 2**depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, widths[0], norm_layer, path)
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1], norm_layer, path) for i in range(depth))
        self.up = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], bilinear=bilinear, norm_layer=norm_layer, path=path)
            for i in reversed(range(depth))
        )
        self.classifier = Conv2d(widths[0], num_classes, 1, path=path)
        self.init_loss(criterion, ignore_index)

    def forward(self, images: Tensor) -> Tensor:
        x = self.inc(images)
        skips = [x]
        for block in self.down:
            x = block(F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.classifier(x)


def unet(
    in_channels: int = 3,
    num_classes: int = 2,
    depth: int = 4,
    base_channels: int = 64,
    *,
    bilinear: bool = False,
    **kwargs,
) -> UNet:
    """U-Net (the paper's: depth 4, base_channels 64, 1024 channels at the bottom); other keyword
    arguments: ``UNet``'s."""
    return UNet(
        in_channels=in_channels,
        num_classes=num_classes,
        depth=depth,
        base_channels=base_channels,
        bilinear=bilinear,
        **kwargs,
    )
