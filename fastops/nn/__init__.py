"""Modules: each wraps a fastops op with its hyper-parameters fixed at construction
(keyword-only), the tensors of the call (inputs, targets, per-call weights) in ``forward``."""

from .conv import ASPP, Conv2d, ConvTranspose2d
from .losses import SigmoidFocalLoss, SoftmaxFocalLoss, WeightedBCEWithLogitsLoss

__all__ = ["ASPP", "Conv2d", "ConvTranspose2d", "SigmoidFocalLoss", "SoftmaxFocalLoss", "WeightedBCEWithLogitsLoss"]
