"""Modules: each wraps a fastops op with its hyper-parameters fixed at construction
(keyword-only), the tensors of the call (inputs, targets, per-call weights) in ``forward``.
The RoI modules (``RoIAlign``, ``RoIPool``, ``MultiScaleRoIAlign``) keep torchvision's
constructors instead, so they replace torchvision's with one import line."""

from ..ops.roi_align import MultiScaleRoIAlign, RoIAlign, RoIPool
from .losses import SigmoidFocalLoss, SoftmaxFocalLoss, WeightedBCEWithLogitsLoss

__all__ = ["MultiScaleRoIAlign", "RoIAlign", "RoIPool", "SigmoidFocalLoss", "SoftmaxFocalLoss", "WeightedBCEWithLogitsLoss"]
