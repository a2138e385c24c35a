"""Detectors with one surface (``base.Detector``): RetinaNet, Faster R-CNN, Mask R-CNN (torchvision's
builders, arguments and state_dicts) and YOLO v1."""

from .base import Detector
from .builders import fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn, overwrite_eps, retinanet_resnet50_fpn
from .faster_rcnn import FasterRCNN
from .mask_rcnn import MaskRCNN
from .retinanet import RetinaNet

__all__ = [
    "Detector",
    "FasterRCNN",
    "MaskRCNN",
    "RetinaNet",
    "fasterrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
    "overwrite_eps",
    "retinanet_resnet50_fpn",
]
