"""Panoptic FPN's semantic segmentation head (Kirillov et al. 2019; detectron2's
``SemSegFPNHead``): on each FPN level, 3x3 convolution + group norm + ReLU stages, each followed by
a 2x bilinear upsampling until the level reaches 1/4 of the input (one stage at 1/4, none
upsampled); the levels are summed, a 1x1 convolution gives the class logits, upsampled x4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from ...nn import Conv2d, Conv2dNormActivation

__all__ = ["SemanticFPNHead"]


class SemanticFPNHead(nn.Module):
    """Semantic logits from FPN levels.

    Args:
        in_channels: the channels of every level.
        num_classes: the logits' channels.
        strides: name -> stride of the levels used (finest first; each a power of two of at least
            ``common_stride``), e.g. ``{"0": 4, "1": 8, "2": 16, "3": 32}``.
        conv_dims: the channels of the stages.
        num_groups: the group norm's groups.
        common_stride: the stride at which the levels are summed.

    forward(features): a dict holding the named levels, Tensor[N, in_channels, H / s, W / s]
    -> logits Tensor[N, num_classes, H, W] (H, W = common_stride times the finest level's size).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        strides: Mapping[str, int],
        conv_dims: int = 128,
        num_groups: int = 32,
        common_stride: int = 4,
    ):
        super().__init__()
        self.in_features = list(strides)
        self.common_stride = common_stride
        self.scale_heads = nn.ModuleList()
        for name, stride in strides.items():
            if stride < common_stride or stride & (stride - 1):
                raise ValueError(f"strides[{name!r}]: expected a power of two >= {common_stride}, got {stride}")
            stages, channels = [], in_channels
            for _ in range(max(1, int(math.log2(stride // common_stride)))):
                stages.append(
                    Conv2dNormActivation(
                        channels, conv_dims, 3, norm_layer=lambda c: nn.GroupNorm(num_groups, c), bias=False
                    )
                )
                if stride != common_stride:
                    stages.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
                channels = conv_dims
            self.scale_heads.append(nn.Sequential(*stages))
        self.predictor = Conv2d(conv_dims, num_classes, 1)
        for m in self.modules():  # detectron2's "MSRA fill", the predictor included
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        x = None
        for name, head in zip(self.in_features, self.scale_heads):
            y = head(features[name])
            if x is not None and y.shape[-2:] != x.shape[-2:]:
                raise ValueError(
                    f"SemanticFPNHead: level {name!r} reaches {list(y.shape[-2:])} at 1/{self.common_stride}, the "
                    f"first level {list(x.shape[-2:])}; the input's sides must be multiples of the largest stride"
                )
            x = y if x is None else x + y
        logits = self.predictor(x)
        return F.interpolate(logits, scale_factor=self.common_stride, mode="bilinear", align_corners=False)
