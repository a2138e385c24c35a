"""Modules: each wraps a fastops op with its hyper-parameters fixed at construction
(keyword-only), the tensors of the call (inputs, targets, per-call weights) in ``forward``.
The drop-ins keep their originals' constructors instead, so they replace them with one import
line: ``RoIAlign``, ``RoIPool``, ``MultiScaleRoIAlign``, ``FrozenBatchNorm2d``,
``Conv2dNormActivation`` (torchvision's), ``Conv2d`` and
``ConvTranspose2d`` (torch's, and their state_dict keys)."""

from .aspp import ASPP
from .blocks import Conv2dNormActivation
from .conv import Conv2d, ConvTranspose2d
from .losses import SigmoidFocalLoss, SoftmaxFocalLoss, WeightedBCEWithLogitsLoss
from .norm import FrozenBatchNorm2d
from .roi import MultiScaleRoIAlign, RoIAlign, RoIPool

__all__ = [
    "ASPP",
    "Conv2d",
    "Conv2dNormActivation",
    "ConvTranspose2d",
    "FrozenBatchNorm2d",
    "MultiScaleRoIAlign",
    "RoIAlign",
    "RoIPool",
    "SigmoidFocalLoss",
    "SoftmaxFocalLoss",
    "WeightedBCEWithLogitsLoss",
]
