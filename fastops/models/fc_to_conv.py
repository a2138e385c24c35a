"""Fully connected layers as convolutions (Long et al., 2015, section 3.1): a Linear layer on
flattened C x k x k features is a k x k convolution with the same weights (reshaped), and a Linear
on a vector (1 x 1 features) a 1x1 convolution. The converted network slides its classifier over
larger inputs, giving a map of scores: FCN's starting point."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..nn import Conv2d

__all__ = ["convert_fc_to_conv", "linear_to_conv"]


def linear_to_conv(linear: nn.Linear, in_channels: int, kernel_size: Sequence[int] = (1, 1), **conv_kwargs) -> Conv2d:
    """The convolution computing ``linear`` on features [N, in_channels, kh, kw] flattened in
    torch's order (channel-major): weight [out, in_channels, kh, kw], the same bias."""
    kh, kw = (int(k) for k in kernel_size)
    if linear.in_features != in_channels * kh * kw:
        raise ValueError(
            f"a Linear with in_features={linear.in_features} cannot read {in_channels} x {kh} x {kw} features"
        )
    conv = Conv2d(in_channels, linear.out_features, (kh, kw), bias=linear.bias is not None, **conv_kwargs)
    conv = conv.to(device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, in_channels, kh, kw))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


def _convert_sequence(layers: nn.Module, input_shape: Sequence[int]) -> nn.Sequential:
    """A chain of Linear layers (with element-wise modules between them) as convolutions: the first
    Linear reads [C, kh, kw], the next ones 1x1 maps. A leading ``nn.Flatten`` is dropped."""
    channels, kh, kw = (int(v) for v in input_shape)
    converted = OrderedDict()
    first = True
    for name, layer in layers.named_children() if isinstance(layers, nn.Sequential) else [("0", layers)]:
        if isinstance(layer, nn.Flatten):
            continue
        if isinstance(layer, nn.Linear):
            converted[name] = linear_to_conv(layer, channels, (kh, kw) if first else (1, 1))
            channels, first = layer.out_features, False
        elif isinstance(layer, (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Dropout, nn.Identity)):
            converted[name] = layer
        else:
            raise TypeError(
                f"cannot convert layer {name!r} ({type(layer).__name__}): only Linear and element-wise layers"
            )
    if first:
        raise ValueError("found no Linear layer to convert")
    return nn.Sequential(converted)


def convert_fc_to_conv(model: nn.Module, *, input_shape: Sequence[int] | None = None) -> nn.Sequential:
    """A fully convolutional copy of a classifier's fully connected part, keeping its weights.

    - A torchvision-style classifier with ``features``, ``avgpool`` (adaptive, to k x k) and a
      ``classifier`` Sequential (VGG, AlexNet, ``fastops.models.backbones.VGG`` with
      ``num_classes``): returns Sequential(features=the same features, classifier=the converted
      classifier); the pooling is dropped. On an input whose features are k x k (VGG: 224 x 224) the
      output [N, classes, 1, 1] equals the classifier's logits; a larger input gives a score map.
    - A Linear or a Sequential of Linear and element-wise layers (an optional leading Flatten):
      ``input_shape`` (C, kh, kw) gives the features the first Linear reads (default: its
      in_features as C x 1 x 1).

    Element-wise layers (ReLU, Dropout, ...) are kept as they are (a Dropout then drops elements of
    the map). The returned convolutions are ``fastops.nn.Conv2d`` (path "auto").
    """
    if all(hasattr(model, name) for name in ("features", "avgpool", "classifier")):
        pooled = model.avgpool.output_size if isinstance(model.avgpool, nn.AdaptiveAvgPool2d) else None
        if pooled is None:
            raise TypeError(f"avgpool must be nn.AdaptiveAvgPool2d, got {type(model.avgpool).__name__}")
        kh, kw = (pooled, pooled) if isinstance(pooled, int) else pooled
        first = next((m for m in model.classifier.modules() if isinstance(m, nn.Linear)), None)
        if first is None or first.in_features % (kh * kw):
            raise ValueError("classifier: its first Linear must read the avgpool's C x k x k features")
        classifier = _convert_sequence(model.classifier, (first.in_features // (kh * kw), kh, kw))
        return nn.Sequential(OrderedDict(features=model.features, classifier=classifier))
    if not isinstance(model, (nn.Linear, nn.Sequential)):
        raise TypeError(f"expected a Linear, a Sequential or a features/avgpool/classifier model, got {type(model)}")
    if input_shape is None:
        first = model if isinstance(model, nn.Linear) else next((m for m in model if isinstance(m, nn.Linear)), None)
        if first is None:
            raise ValueError("found no Linear layer to convert")
        input_shape = (first.in_features, 1, 1)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, kh, kw), got {tuple(input_shape)}")
    return _convert_sequence(model, input_shape)
