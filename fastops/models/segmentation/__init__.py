"""Segmenters (``Segmenter``'s surface: ``forward`` returns logits, a dict for several outputs;
``loss`` and ``predict`` in either mode): torchvision's FCN and DeepLab v3 (same builders, outputs
and state_dicts), DeepLab v2, the original FCN-32s/16s/8s on VGG-16, U-Net, stacked hourglass."""

from .base import Segmenter, check_images, check_masks
from .deeplab import DeepLabV3, deeplabv2_resnet101, deeplabv3_resnet50, deeplabv3_resnet101
from .fcn import FCN, fcn_resnet50, fcn_resnet101
from .fcn_skip import FCNVGG, fcn8s_vgg16, fcn16s_vgg16, fcn32s_vgg16
from .heads import DeepLabHead, DeepLabV2Head, FCNHead
from .hourglass import StackedHourglass, stacked_hourglass
from .simple import SimpleSegmentationModel
from .unet import UNet, unet

__all__ = [
    "FCN",
    "FCNVGG",
    "DeepLabHead",
    "DeepLabV2Head",
    "DeepLabV3",
    "FCNHead",
    "Segmenter",
    "SimpleSegmentationModel",
    "StackedHourglass",
    "UNet",
    "check_images",
    "check_masks",
    "deeplabv2_resnet101",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "fcn8s_vgg16",
    "fcn16s_vgg16",
    "fcn32s_vgg16",
    "fcn_resnet50",
    "fcn_resnet101",
    "stacked_hourglass",
    "unet",
]
