"""Feature extractors: each returns ``dict[str, Tensor]`` and reports ``out_channels`` and
``strides`` per output name."""

from .darknet import DarkNet, darknet
from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101, small_resnet

__all__ = ["DarkNet", "ResNet", "darknet", "resnet18", "resnet34", "resnet50", "resnet101", "small_resnet"]
