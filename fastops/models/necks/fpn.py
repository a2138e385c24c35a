"""Feature pyramid network (Lin et al., 2017), as torchvision's ``FeaturePyramidNetwork`` (same
constructor, state_dict keys and outputs), its extra levels (``LastLevelMaxPool``: the R-CNNs'
"pool" level, P6 by max pooling; ``LastLevelP6P7``: RetinaNet's P6 and P7 by strided 3x3
convolutions), and ``BackboneWithFPN``, a backbone and an FPN in one module with torchvision's
``body`` / ``fpn`` names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from ...nn import Conv2d, Conv2dNormActivation

__all__ = ["BackboneWithFPN", "ExtraFPNBlock", "FeaturePyramidNetwork", "LastLevelMaxPool", "LastLevelP6P7"]


class ExtraFPNBlock(nn.Module):
    """Levels added after the top-down pass: ``forward(results, inputs, names)`` gets the FPN
    outputs, the backbone features and the names, and returns the extended (results, names).
    ``relative_strides`` gives each added level's stride relative to the last FPN level."""

    relative_strides: tuple[int, ...] = ()

    def forward(self, results: list[Tensor], x: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        raise NotImplementedError


class LastLevelMaxPool(ExtraFPNBlock):
    """The level "pool": the last output subsampled by 2 (a 1x1 max pool of stride 2)."""

    relative_strides = (2,)

    def forward(self, x: list[Tensor], y: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        names.append("pool")
        x.append(F.max_pool2d(x[-1], kernel_size=1, stride=2, padding=0))
        return x, names


class LastLevelP6P7(ExtraFPNBlock):
    """The levels "p6" and "p7": a 3x3 stride-2 convolution of P5 (when ``in_channels ==
    out_channels``) or of C5, then another after a ReLU."""

    relative_strides = (2, 4)

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.p6 = Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = Conv2d(out_channels, out_channels, 3, 2, 1)
        for module in (self.p6, self.p7):
            nn.init.kaiming_uniform_(module.weight, a=1)
            nn.init.constant_(module.bias, 0)
        self.use_P5 = in_channels == out_channels

    def forward(self, p: list[Tensor], c: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        p6 = self.p6(p[-1] if self.use_P5 else c[-1])
        p7 = self.p7(F.relu(p6))
        p.extend([p6, p7])
        names.extend(["p6", "p7"])
        return p, names


class FeaturePyramidNetwork(nn.Module):
    """Top-down pathway with lateral 1x1 convolutions and 3x3 output convolutions.

    forward(x): an ordered dict name -> Tensor[N, in_channels_list[i], H_i, W_i], finest first;
    returns a dict with the same names (then the extra block's) -> Tensor[N, out_channels, H_i, W_i].
    """

    _version = 2

    def __init__(
        self,
        in_channels_list: list[int],
        out_channels: int,
        extra_blocks: ExtraFPNBlock | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
    ):
        super().__init__()
        self.inner_blocks = nn.ModuleList()
        self.layer_blocks = nn.ModuleList()
        for in_channels in in_channels_list:
            if in_channels == 0:
                raise ValueError("in_channels=0 is currently not supported")
            self.inner_blocks.append(
                Conv2dNormActivation(
                    in_channels, out_channels, kernel_size=1, padding=0, norm_layer=norm_layer, activation_layer=None
                )
            )
            self.layer_blocks.append(
                Conv2dNormActivation(
                    out_channels, out_channels, kernel_size=3, norm_layer=norm_layer, activation_layer=None
                )
            )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        if extra_blocks is not None and not isinstance(extra_blocks, ExtraFPNBlock):
            raise TypeError(f"extra_blocks should be of type ExtraFPNBlock not {type(extra_blocks)}")
        self.extra_blocks = extra_blocks

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        if local_metadata.get("version", None) is None or local_metadata["version"] < 2:
            # torchvision's version-1 names: inner_blocks.{i}.weight (a plain Conv2d, not a Sequential)
            for block in ("inner_blocks", "layer_blocks"):
                for i in range(len(self.inner_blocks)):
                    for kind in ("weight", "bias"):
                        old_key = f"{prefix}{block}.{i}.{kind}"
                        if old_key in state_dict:
                            state_dict[f"{prefix}{block}.{i}.0.{kind}"] = state_dict.pop(old_key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)

    def forward(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        names = list(x.keys())
        features = list(x.values())
        if len(features) != len(self.inner_blocks):
            raise ValueError(
                f"FeaturePyramidNetwork: {len(self.inner_blocks)} input levels expected, got {len(features)}"
            )
        last_inner = self.inner_blocks[-1](features[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(features) - 2, -1, -1):
            inner_lateral = self.inner_blocks[idx](features[idx])
            top_down = F.interpolate(last_inner, size=inner_lateral.shape[-2:], mode="nearest")
            last_inner = inner_lateral + top_down
            results.insert(0, self.layer_blocks[idx](last_inner))
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, features, names)
        return dict(zip(names, results))


class BackboneWithFPN(nn.Module):
    """``body`` (a backbone returning an ordered dict of features and reporting ``out_channels``
    and ``strides`` per name) followed by ``fpn``; torchvision's module names, so a torchvision
    detection checkpoint's ``backbone.*`` entries load.

    Attributes: ``out_channels`` (int, every level), ``strides`` (dict name -> stride, the
    extra levels included).
    """

    def __init__(
        self,
        body: nn.Module,
        out_channels: int,
        extra_blocks: ExtraFPNBlock | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
    ):
        super().__init__()
        if extra_blocks is None:
            extra_blocks = LastLevelMaxPool()
        self.body = body
        in_channels = list(body.out_channels.values())
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra_blocks, norm_layer=norm_layer)
        self.out_channels = out_channels
        strides = dict(body.strides)
        last = list(strides.values())[-1]
        extra_names = ["pool"] if isinstance(extra_blocks, LastLevelMaxPool) else ["p6", "p7"]
        if isinstance(extra_blocks, (LastLevelMaxPool, LastLevelP6P7)):
            strides.update({n: last * s for n, s in zip(extra_names, extra_blocks.relative_strides)})
        self.strides = strides

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.fpn(self.body(x))
