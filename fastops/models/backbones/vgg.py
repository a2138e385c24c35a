"""VGG-16 (Simonyan and Zisserman, 2015) with torchvision's parameter names (``features.<i>``,
``classifier.<i>``): a ``torchvision.models.vgg16`` (or ``vgg16_bn``) state_dict loads with
``strict=True``.

As a backbone, ``forward(x)`` returns the outputs of chosen max pools: "pool1".."pool5" at strides
2..32 (FCN's skips read pool3, pool4 and pool5); ``out_channels`` and ``strides`` report them. With
``num_classes`` it also builds torchvision's classifier (``avgpool``: adaptive 7x7; three Linear
layers) and returns its logits under "fc"; ``fastops.models.convert_fc_to_conv`` turns that
classifier into convolutions. The pools round down, so pool5 needs an input of at least 32x32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...nn import Conv2d
from ..weights import Weights, load_weights, read_state_dict

__all__ = ["VGG", "VGG16_CONFIG", "vgg16"]

VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
POOLS = ("pool1", "pool2", "pool3", "pool4", "pool5")


class VGG(nn.Module):
    """VGG features (and optionally its classifier) returning a dict of pool outputs.

    Args (keyword-only after ``config``):
        config: channel counts and "M" (a 2x2 max pool), torchvision's ``cfgs`` layout.
        batch_norm: a BatchNorm2d after each convolution (torchvision's ``vgg16_bn``).
        return_layers: which pools to return (from "pool1".."pool5"), and "fc" for the logits.
        num_classes: None for no classifier; else torchvision's classifier with that many outputs.
        fc_channels: the classifier's hidden width (4096 in torchvision's).
        width_scale: divides every convolution's channel count (a narrow VGG for tests on a CPU).
        dropout: the classifier's dropout.
        path: the convolutions' path ("auto", "fastops", "torch").
    """

    def __init__(
        self,
        config: Sequence[int | str] = VGG16_CONFIG,
        *,
        batch_norm: bool = False,
        return_layers: Sequence[str] | None = None,
        num_classes: int | None = None,
        fc_channels: int = 4096,
        width_scale: int = 1,
        dropout: float = 0.5,
        path: str = "auto",
    ):
        super().__init__()
        if width_scale < 1:
            raise ValueError(f"width_scale must be a positive integer, got {width_scale}")
        layers: list[nn.Module] = []
        self._pool_index: dict[int, str] = {}
        self.out_channels: dict[str, int] = {}
        self.strides: dict[str, int] = {}
        in_channels = 3
        for value in config:
            if value == "M":
                name = POOLS[len(self._pool_index)]
                self._pool_index[len(layers)] = name
                self.out_channels[name], self.strides[name] = in_channels, 2 ** (len(self._pool_index))
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            channels = max(int(value) // width_scale, 1)
            layers.append(Conv2d(in_channels, channels, kernel_size=3, padding=1, path=path))
            if batch_norm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(nn.ReLU(inplace=True))
            in_channels = channels
        self.features = nn.Sequential(*layers)
        names = list(self.out_channels)
        wanted = list(return_layers) if return_layers is not None else [names[-1]] + (["fc"] if num_classes else [])
        for name in wanted:
            if name not in (*names, "fc"):
                raise ValueError(f"return_layers: {name!r} is not one of {[*names, 'fc']}")
        if "fc" in wanted and num_classes is None:
            raise ValueError("return_layers: 'fc' needs a classifier (num_classes)")
        self.return_layers = wanted
        self.out_channels = {k: v for k, v in self.out_channels.items() if k in wanted}
        self.strides = {k: v for k, v in self.strides.items() if k in wanted}
        self.min_size = max((self.strides[k] for k in self.strides), default=1)
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(in_channels * 7 * 7, fc_channels),
                nn.ReLU(True),
                nn.Dropout(p=dropout),
                nn.Linear(fc_channels, fc_channels),
                nn.ReLU(True),
                nn.Dropout(p=dropout),
                nn.Linear(fc_channels, num_classes),
            )
            self.out_channels["fc"] = num_classes
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"images: {x.shape[-2]}x{x.shape[-1]} is too small for VGG's pools; height and width must be at "
                f"least {self.min_size}"
            )
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            name = self._pool_index.get(i)
            if name in self.return_layers:
                out[name] = x
        if "fc" in self.return_layers:
            out["fc"] = self.classifier(torch.flatten(self.avgpool(x), 1))
        return out


def vgg16(*, weights: Weights | None = None, batch_norm: bool = False, **kwargs) -> VGG:
    """VGG-16 (configuration "D"). ``weights``: a path or state_dict with torchvision's names; with
    its classifier in it and no ``num_classes`` given, the classifier is kept (as for the ResNets);
    a model without a classifier drops it. Other keyword arguments: ``VGG``'s."""
    state = None
    if weights is not None:
        state = read_state_dict(weights)
        if "num_classes" not in kwargs and "classifier.6.weight" in state:
            kwargs["num_classes"] = state["classifier.6.weight"].shape[0]
            kwargs.setdefault("fc_channels", state["classifier.0.weight"].shape[0])
    model = VGG(VGG16_CONFIG, batch_norm=batch_norm, **kwargs)
    if state is not None:
        load_weights(model, state, drop_prefixes=() if hasattr(model, "classifier") else ("classifier.",))
    return model
