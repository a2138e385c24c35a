"""SSD's feature extractor on VGG (Liu et al., 2016, Fig. 2), with torchvision's names
(``scale_weight``, ``features.<i>``, ``extra.<k>.<i>``): a torchvision ``ssd300_vgg16``'s backbone
state_dict loads with ``strict=True``.

Outputs, in order: conv4_3 L2-normalized over channels and scaled per channel (``scale_weight``,
20 at the start), then fc7 (VGG's pool5 as a 3x3 stride-1 pool, fc6 as a 3x3 convolution of
dilation 6, fc7 as a 1x1 convolution), then each extra block (a 1x1 convolution that narrows, a 3x3
one that shrinks the map). The third max pool rounds up (ceil mode), so a 300 x 300 input gives
maps of 38, 19, 10, 5, 3 and 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...nn import Conv2d
from .vgg import VGG

__all__ = ["SSD300_EXTRA", "SSDFeatureExtractorVGG", "freeze_vgg_stages"]

# per extra block: (1x1 channels, 3x3 channels, stride, padding): conv8_2 .. conv11_2 of SSD300
SSD300_EXTRA = ((256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 1, 0), (128, 256, 1, 0))


def _xavier_init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _max_pool_positions(features: nn.Sequential) -> list[int]:
    return [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]


def freeze_vgg_stages(vgg: VGG, trainable_layers: int) -> None:
    """torchvision's rule for SSD: VGG's 5 stages (each up to its max pool), only the last
    ``trainable_layers`` train."""
    stage_starts = [0, *_max_pool_positions(vgg.features)[:-1]]
    if not 0 <= trainable_layers <= len(stage_starts):
        raise ValueError(f"trainable_backbone_layers should be in [0, {len(stage_starts)}], got {trainable_layers}")
    freeze_before = len(vgg.features) if trainable_layers == 0 else stage_starts[-trainable_layers]
    for layer in vgg.features[:freeze_before]:
        for parameter in layer.parameters():
            parameter.requires_grad_(False)


class SSDFeatureExtractorVGG(nn.Module):
    """SSD's feature maps from a VGG's ``features`` (module docstring).

    Args:
        vgg: a ``VGG`` with five max pools (its classifier, if any, is not used).
        extra: per extra block (1x1 channels, 3x3 channels, stride, padding), before
            ``width_scale``; ``SSD300_EXTRA`` for SSD300.
        width_scale: divides fc6/fc7's 1024 channels and the extra blocks' (a narrow VGG's).
        path: the new convolutions' path ("auto", "fastops", "torch").

    ``forward(x)`` returns a dict "0", "1", ... of Tensor[N, C_k, H_k, W_k]; ``out_channels`` lists C_k.
    """

    def __init__(
        self,
        vgg: VGG,
        *,
        extra: Sequence[tuple[int, int, int, int]] = SSD300_EXTRA,
        width_scale: int = 1,
        path: str = "auto",
    ):
        super().__init__()
        features = vgg.features
        pools = _max_pool_positions(features)
        if len(pools) != 5:
            raise ValueError(f"vgg: SSD needs VGG's five max pools, got {len(pools)}")
        features[pools[2]].ceil_mode = True
        conv4_channels = _last_conv_channels(features[: pools[3]])
        self.scale_weight = nn.Parameter(torch.ones(conv4_channels) * 20)
        self.features = nn.Sequential(*features[: pools[3]])
        fc_channels = max(1024 // width_scale, 1)
        fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=False),
            Conv2d(_last_conv_channels(features), fc_channels, kernel_size=3, padding=6, dilation=6, path=path),
            nn.ReLU(inplace=True),
            Conv2d(fc_channels, fc_channels, kernel_size=1, path=path),
            nn.ReLU(inplace=True),
        )
        blocks, in_channels = [], fc_channels
        for mid, out, stride, padding in extra:
            mid, out = max(mid // width_scale, 1), max(out // width_scale, 1)
            blocks.append(
                nn.Sequential(
                    Conv2d(in_channels, mid, kernel_size=1, path=path),
                    nn.ReLU(inplace=True),
                    Conv2d(mid, out, kernel_size=3, stride=stride, padding=padding, path=path),
                    nn.ReLU(inplace=True),
                )
            )
            in_channels = out
        _xavier_init(fc)
        for block in blocks:
            _xavier_init(block)
        self.extra = nn.ModuleList([nn.Sequential(*features[pools[3] : -1], fc), *blocks])
        self.out_channels = [conv4_channels, fc_channels, *(max(e[1] // width_scale, 1) for e in extra)]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.features(x)
        outputs = [self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)]
        for block in self.extra:
            x = block(x)
            outputs.append(x)
        return {str(i): v for i, v in enumerate(outputs)}


def _last_conv_channels(layers: nn.Sequential) -> int:
    return [m for m in layers if isinstance(m, nn.Conv2d)][-1].out_channels
