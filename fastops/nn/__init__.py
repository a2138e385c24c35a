"""Modules: each wraps a fastops op with its hyper-parameters fixed at construction
(keyword-only), the tensors of the call (inputs, targets, per-call weights) in ``forward``.
The drop-ins keep their originals' constructors instead, so they replace them with one import
line: ``RoIAlign``, ``RoIPool``, ``MultiScaleRoIAlign``, ``FrozenBatchNorm2d``,
``Conv2dNormActivation`` (torchvision's), ``DropPath`` (timm's), ``PositionEmbeddingSine``
(DETR's), ``Conv2d`` and ``ConvTranspose2d`` (torch's, and their state_dict keys)."""

from .aspp import ASPP
from .blocks import Conv2dNormActivation
from .conv import Conv2d, ConvTranspose2d
from .conv_autotune import (
    autotune_choices,
    clear_autotune_choices,
    conv_autotune_enabled,
    load_autotune_choices,
    set_conv_autotune,
)
from .drop_path import DropPath, drop_path
from .losses import SigmoidFocalLoss, SoftmaxFocalLoss, WeightedBCEWithLogitsLoss
from .norm import FrozenBatchNorm2d
from .positional_encoding import PositionEmbeddingSine
from .roi import MultiScaleRoIAlign, RoIAlign, RoIPool
from .segmentation_losses import (
    PixelCrossEntropyLoss,
    PixelFocalLoss,
    SoftDiceLoss,
    WeightedSumLoss,
    pixel_cross_entropy,
    pixel_focal_loss,
    soft_dice_loss,
)

__all__ = [
    "ASPP",
    "Conv2d",
    "Conv2dNormActivation",
    "ConvTranspose2d",
    "DropPath",
    "FrozenBatchNorm2d",
    "MultiScaleRoIAlign",
    "PixelCrossEntropyLoss",
    "PixelFocalLoss",
    "PositionEmbeddingSine",
    "RoIAlign",
    "RoIPool",
    "SigmoidFocalLoss",
    "SoftDiceLoss",
    "SoftmaxFocalLoss",
    "WeightedBCEWithLogitsLoss",
    "WeightedSumLoss",
    "autotune_choices",
    "clear_autotune_choices",
    "conv_autotune_enabled",
    "drop_path",
    "load_autotune_choices",
    "pixel_cross_entropy",
    "pixel_focal_loss",
    "set_conv_autotune",
    "soft_dice_loss",
]
