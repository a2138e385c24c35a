"""Feature extractors: each returns ``dict[str, Tensor]`` and reports ``out_channels`` and
``strides`` per output name."""

from .darknet import DarkNet, darknet
from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101, small_resnet
from .vgg import VGG, vgg16

__all__ = [
    "VGG",
    "DarkNet",
    "ResNet",
    "darknet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "small_resnet",
    "vgg16",
]
