"""ResNet-18/34/50/101 (He et al., 2016; torchvision's v1.5: the stride in the 3x3 convolution)
as feature extractors, with torchvision's parameter names: a ``torchvision.models.resnet*``
state_dict loads with ``strict=True`` (``fc`` included when the model has a classifier), and so
does the ``backbone.body`` part of torchvision's detection and segmentation checkpoints.

``forward(x)`` returns a dict of the chosen stages' outputs (``return_layers``, as torchvision's
``IntermediateLayerGetter``); stages after the last chosen one are not built (so their parameters
are not in the state_dict, as in torchvision's detection backbones). ``out_channels`` and
``strides`` give each output's channel count and stride in input pixels.

A frozen batch norm (``norm_layer=FrozenBatchNorm2d``) is folded into the convolution before it
on every call: the same function, computed as one convolution with a bias.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ...nn import Conv2d, DropPath
from ...nn.norm import FrozenBatchNorm2d
from ..weights import Weights, load_weights, read_state_dict

__all__ = [
    "STAGES",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "conv_norm",
    "freeze_layers",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "small_resnet",
]

STAGES = ("layer1", "layer2", "layer3", "layer4")
# torchvision's order for trainable_layers: the last n of these train
_TRAINABLE_ORDER = ("layer4", "layer3", "layer2", "layer1", "conv1")


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor) -> Tensor:
    """norm(conv(x)); a FrozenBatchNorm2d is folded into the convolution's weight and bias."""
    if isinstance(norm, FrozenBatchNorm2d):
        weight, bias = norm.fold_into(conv.weight, conv.bias)
        return conv._conv_forward(x, weight, bias)
    return norm(conv(x))


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return Conv2d(
        in_planes, out_planes, 3, stride=stride, padding=dilation, groups=groups, bias=False, dilation=dilation
    )


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


def _residual(block: nn.Module, out: Tensor) -> Tensor:
    """The residual branch's output, through the block's DropPath when it has one."""
    return out if block.drop_path is None else block.drop_path(out)


def _shortcut(downsample: nn.Sequential | None, x: Tensor) -> Tensor:
    return x if downsample is None else conv_norm(downsample[0], downsample[1], x)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34); torchvision's arguments and names.
    ``drop_path``: the residual branch's stochastic-depth probability (``fastops.nn.DropPath``)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Sequential | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Callable[[int], nn.Module] | None = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu_(conv_norm(self.conv1, self.bn1, x))
        out = _residual(self, conv_norm(self.conv2, self.bn2, out))
        out += _shortcut(self.downsample, x)
        return torch.relu_(out)


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided, dilated, grouped), 1x1 and a shortcut (ResNet-50/101); torchvision's
    arguments and names. ``drop_path``: as ``BasicBlock``'s."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Sequential | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Callable[[int], nn.Module] | None = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = _conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu_(conv_norm(self.conv1, self.bn1, x))
        out = torch.relu_(conv_norm(self.conv2, self.bn2, out))
        out = _residual(self, conv_norm(self.conv3, self.bn3, out))
        out += _shortcut(self.downsample, x)
        return torch.relu_(out)


def _return_layers(return_layers, num_classes) -> dict[str, str]:
    if return_layers is None:
        names = STAGES + (("fc",) if num_classes is not None else ())
        return {name: name for name in names}
    if isinstance(return_layers, Mapping):
        mapping = {str(k): str(v) for k, v in return_layers.items()}
    else:
        mapping = {str(k): str(k) for k in return_layers}
    allowed = (*STAGES, "fc")
    for name in mapping:
        if name not in allowed:
            raise ValueError(f"return_layers: {name!r} is not one of {allowed}")
    if not mapping:
        raise ValueError("return_layers: choose at least one stage")
    if "fc" in mapping and num_classes is None:
        raise ValueError("return_layers: 'fc' needs a classifier (num_classes)")
    if num_classes is not None and "fc" not in mapping:
        raise ValueError("num_classes: the classifier's output must be returned (add 'fc' to return_layers)")
    return mapping


def freeze_layers(model: nn.Module, trainable_layers: int, max_layers: int = 5) -> None:
    """torchvision's rule: only the parameters of the last ``trainable_layers`` of
    (conv1, layer1, layer2, layer3, layer4) train (with 5, ``bn1`` too); the rest stop taking
    gradients."""
    if not 0 <= trainable_layers <= max_layers:
        raise ValueError(f"trainable_layers must be in [0, {max_layers}], got {trainable_layers}")
    train = list(_TRAINABLE_ORDER[:trainable_layers])
    if trainable_layers == 5:
        train.append("bn1")
    for name, parameter in model.named_parameters():
        if not name.startswith(tuple(train)):
            parameter.requires_grad_(False)


class ResNet(nn.Module):
    """A ResNet returning the outputs of chosen stages.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage (4 ints).
        return_layers: which stages to return and under which names: a mapping stage -> name or a
            sequence of stages (named as themselves), from "layer1".."layer4" and "fc" (the
            classifier's logits). Default: the four stages, and "fc" with a classifier.
        num_classes: None for no classifier (a backbone); otherwise average pooling and ``fc``.
        replace_stride_with_dilation: 3 bools: layer2..layer4 keep their resolution and dilate
            their 3x3 convolutions instead (DeepLab's output stride 8 or 16).
        norm_layer: a callable num_channels -> module (default ``nn.BatchNorm2d``; pass
            ``FrozenBatchNorm2d`` for a frozen one).
        trainable_layers: None (everything trains) or 0..5 (torchvision's rule, ``freeze_layers``).
        base_channels: the stem's and layer1's width (64 in every torchvision ResNet); each later
            stage doubles it.
        drop_path_rate: stochastic depth of the residual branches, rising linearly from 0 at the
            first block to ``drop_path_rate`` at the last block built (timm's rule); 0 builds none.

    Input Tensor[N, 3, H, W]; output dict name -> Tensor[N, out_channels[name], H/s, W/s] with
    s = strides[name] (rounded up at each stride-2 step), and Tensor[N, num_classes] for "fc".
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        return_layers: Mapping[str, str] | Sequence[str] | None = None,
        num_classes: int | None = None,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        norm_layer: Callable[[int], nn.Module] | None = None,
        trainable_layers: int | None = None,
        base_channels: int = 64,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers: 4 stage depths expected, got {list(layers)}")
        dilate = list(replace_stride_with_dilation or (False, False, False))
        if len(dilate) != 3:
            raise ValueError(f"replace_stride_with_dilation should be None or 3 bools, got {dilate}")
        self.return_layers = _return_layers(return_layers, num_classes)
        last = max(STAGES.index(k) if k in STAGES else len(STAGES) - 1 for k in self.return_layers)
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes = base_channels
        if not 0.0 <= drop_path_rate <= 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1], got {drop_path_rate}")
        num_blocks = sum(layers[: last + 1])
        self._block_drop_paths = [drop_path_rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = Conv2d(3, base_channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels, strides = {}, {}
        stride = 4
        for i in range(last + 1):
            dilated = i > 0 and dilate[i - 1]
            if i > 0 and not dilated:
                stride *= 2
            layer = self._make_layer(block, base_channels * 2**i, layers[i], stride=1 if i == 0 else 2, dilate=dilated)
            setattr(self, STAGES[i], layer)
            channels[STAGES[i]] = self.inplanes
            strides[STAGES[i]] = stride
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(self.inplanes, num_classes)
            channels["fc"] = num_classes
        self.out_channels = {name: channels[k] for k, name in self.return_layers.items()}
        self.strides = {name: strides[k] for k, name in self.return_layers.items() if k in strides}
        self._stages = STAGES[: last + 1]
        del self._block_drop_paths
        self._init_weights(zero_init_residual)
        if trainable_layers is not None:
            freeze_layers(self, trainable_layers)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride), norm_layer(planes * block.expansion)
            )
        first = block(
            self.inplanes,
            planes,
            stride,
            downsample,
            self.groups,
            self.base_width,
            previous_dilation,
            norm_layer,
            drop_path=self._block_drop_paths.pop(0),
        )
        layers = [first]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    groups=self.groups,
                    base_width=self.base_width,
                    dilation=self.dilation,
                    norm_layer=norm_layer,
                    drop_path=self._block_drop_paths.pop(0),
                )
            )
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                last_norm = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
                if last_norm is not None and isinstance(last_norm.weight, nn.Parameter):
                    nn.init.constant_(last_norm.weight, 0)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(torch.relu_(conv_norm(self.conv1, self.bn1, x)))
        out = {}
        for name in self._stages:
            x = getattr(self, name)(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        if "fc" in self.return_layers:
            out[self.return_layers["fc"]] = self.fc(torch.flatten(self.avgpool(x), 1))
        return out


def _missing_prefixes(model: ResNet) -> list[str]:
    """torchvision state_dict prefixes of modules this model does not build."""
    return [f"{name}." for name in (*STAGES, "fc") if not hasattr(model, name)]


def _resnet(block, layers, weights: Weights | None, kwargs) -> ResNet:
    state = None
    if weights is not None:
        state = read_state_dict(weights)
        if "num_classes" not in kwargs and "return_layers" not in kwargs and "fc.weight" in state:
            kwargs["num_classes"] = state["fc.weight"].shape[0]
    model = ResNet(block, layers, **kwargs)
    if state is not None:
        load_weights(model, state, drop_prefixes=_missing_prefixes(model))
    return model


def resnet18(*, weights: Weights | None = None, **kwargs) -> ResNet:
    """ResNet-18. ``weights``: a path or state_dict (torchvision's names); with a classifier's
    ``fc`` in it and neither ``num_classes`` nor ``return_layers`` given, the model keeps the
    classifier. Other keyword arguments: ``ResNet``'s."""
    return _resnet(BasicBlock, (2, 2, 2, 2), weights, kwargs)


def resnet34(*, weights: Weights | None = None, **kwargs) -> ResNet:
    """ResNet-34 (arguments as ``resnet18``)."""
    return _resnet(BasicBlock, (3, 4, 6, 3), weights, kwargs)


def resnet50(*, weights: Weights | None = None, **kwargs) -> ResNet:
    """ResNet-50 (arguments as ``resnet18``)."""
    return _resnet(Bottleneck, (3, 4, 6, 3), weights, kwargs)


def resnet101(*, weights: Weights | None = None, **kwargs) -> ResNet:
    """ResNet-101 (arguments as ``resnet18``)."""
    return _resnet(Bottleneck, (3, 4, 23, 3), weights, kwargs)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


def small_resnet(*, weights: Weights | None = None, base_channels: int = 16, **kwargs) -> ResNet:
    """A narrow ResNet (one BasicBlock per stage, widths 16/32/64/128, group norm) that trains in
    minutes on a laptop CPU: the small configurations' backbone. Group norm rather than batch
    norm, so training on batches of a few images gives the same function in eval mode.
    Same outputs, names and strides as the ResNets (layer1..layer4 at strides 4..32)."""
    kwargs.setdefault("norm_layer", _group_norm)
    return _resnet(BasicBlock, (1, 1, 1, 1), weights, {"base_channels": base_channels, **kwargs})
