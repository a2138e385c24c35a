"""The DarkNet feature extractor of YOLO v1 (Redmon et al., 2016, figure 3): the first 20
convolutional layers (1x1 reductions between 3x3 convolutions, leaky ReLU of slope 0.1, 2x2 max
pools), in five stages split at the pools. At 448 x 448 its last stage is 14 x 14 x 1024; the
YOLO head adds four convolutions (one of stride 2) to reach the 7 x 7 grid.

The paper's network has no normalization; ``norm_layer`` adds one after every convolution (the
convolutions then have no bias), which lets it train from scratch at small batch sizes.
``width`` scales every channel count (the small configurations use 1/8).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

from torch import Tensor, nn

from ...nn import Conv2dNormActivation
from ..weights import Weights, load_weights

__all__ = ["DARKNET_STAGES", "DarkNet", "darknet"]

# (kernel, channels) per convolution; "M" a 2x2 max pool of stride 2. Stage 1 starts with the 7x7
# convolution of stride 2.
DARKNET_STAGES: tuple[tuple, ...] = (
    ((7, 64), "M"),
    ((3, 192), "M"),
    ((1, 128), (3, 256), (1, 256), (3, 512), "M"),
    (*((1, 256), (3, 512)) * 4, (1, 512), (3, 1024), "M"),
    (*((1, 512), (3, 1024)) * 2,),
)
_STAGE_NAMES = tuple(f"stage{i + 1}" for i in range(len(DARKNET_STAGES)))


class DarkNet(nn.Module):
    """DarkNet returning the outputs of chosen stages ("stage1".."stage5", strides 4, 8, 16, 32,
    32). ``return_layers``: a mapping stage -> name or a sequence of stages (default: stage5).
    Reports ``out_channels`` and ``strides`` per output name."""

    def __init__(
        self,
        *,
        width: float = 1.0,
        norm_layer: Callable[[int], nn.Module] | None = None,
        return_layers: Mapping[str, str] | Sequence[str] | None = None,
    ):
        super().__init__()
        if return_layers is None:
            return_layers = ("stage5",)
        if not isinstance(return_layers, Mapping):
            return_layers = {k: k for k in return_layers}
        for name in return_layers:
            if name not in _STAGE_NAMES:
                raise ValueError(f"return_layers: {name!r} is not one of {_STAGE_NAMES}")
        self.return_layers = dict(return_layers)
        activation = partial(nn.LeakyReLU, 0.1)
        channels, stride = 3, 1
        channels_at, strides_at = {}, {}
        for stage_name, spec in zip(_STAGE_NAMES, DARKNET_STAGES):
            layers = []
            for item in spec:
                if item == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                    stride *= 2
                    continue
                kernel, out = item
                out = max(1, round(out * width))
                step = 2 if kernel == 7 else 1
                layers.append(
                    Conv2dNormActivation(
                        channels, out, kernel, step, norm_layer=norm_layer, activation_layer=activation
                    )
                )
                stride *= step
                channels = out
            setattr(self, stage_name, nn.Sequential(*layers))
            channels_at[stage_name], strides_at[stage_name] = channels, stride
            if all(_STAGE_NAMES.index(k) <= _STAGE_NAMES.index(stage_name) for k in self.return_layers):
                break
        self._stages = tuple(n for n in _STAGE_NAMES if hasattr(self, n))
        self.out_channels = {v: channels_at[k] for k, v in self.return_layers.items()}
        self.strides = {v: strides_at[k] for k, v in self.return_layers.items()}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = {}
        for name in self._stages:
            x = getattr(self, name)(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out


def darknet(*, weights: Weights | None = None, **kwargs) -> DarkNet:
    """YOLO v1's DarkNet (keyword arguments: ``DarkNet``'s); ``weights``: a path or a state_dict."""
    model = DarkNet(**kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model
