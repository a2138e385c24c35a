"""fastops: fast, tested kernels for object detection and segmentation in PyTorch.

Ops are registered under ``torch.ops.fastops``; the functions here are their Python API. Where
torchvision has an op, ours has the same name, signature and results (``fastops.ops`` mirrors
``torchvision.ops``).
"""

from ._library import build_info, set_cpu_isa  # loads the compiled ops first
from . import ops
from .ops import (
    box_iou,
    box_overlap,
    complete_box_iou,
    complete_box_iou_loss,
    distance_box_iou,
    distance_box_iou_loss,
    generalized_box_iou,
    generalized_box_iou_loss,
)

__version__ = "0.1.0"

__all__ = [
    "box_iou",
    "box_overlap",
    "build_info",
    "complete_box_iou",
    "complete_box_iou_loss",
    "distance_box_iou",
    "distance_box_iou_loss",
    "generalized_box_iou",
    "generalized_box_iou_loss",
    "ops",
    "set_cpu_isa",
]
