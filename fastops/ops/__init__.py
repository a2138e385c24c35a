"""Detection ops, named and called as in ``torchvision.ops`` where torchvision has them."""

from .box_iou import (
    box_iou,
    box_overlap,
    complete_box_iou,
    complete_box_iou_loss,
    distance_box_iou,
    distance_box_iou_loss,
    generalized_box_iou,
    generalized_box_iou_loss,
)

__all__ = [
    "box_iou",
    "box_overlap",
    "complete_box_iou",
    "complete_box_iou_loss",
    "distance_box_iou",
    "distance_box_iou_loss",
    "generalized_box_iou",
    "generalized_box_iou_loss",
]
