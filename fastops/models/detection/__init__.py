"""Detectors with one surface (``base.Detector``): RetinaNet, Faster R-CNN, Mask R-CNN, SSD
(torchvision's builders, arguments and state_dicts), YOLO v1 and Fast R-CNN on external proposals."""

from .base import Detector
from .builders import (
    fasterrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn,
    overwrite_eps,
    randomize_for_detections,
    retinanet_resnet50_fpn,
    ssd300_vgg16,
)
from .fast_rcnn import FastRCNN, fast_rcnn_resnet50, fast_rcnn_small
from .faster_rcnn import FasterRCNN
from .mask_rcnn import MaskRCNN
from .retinanet import RetinaNet
from .small import fasterrcnn_small, maskrcnn_small, retinanet_small, ssd_small
from .ssd import SSD
from .yolo_v1 import YOLOv1, yolo_v1, yolo_v1_small

__all__ = [
    "SSD",
    "Detector",
    "FastRCNN",
    "FasterRCNN",
    "MaskRCNN",
    "RetinaNet",
    "YOLOv1",
    "fast_rcnn_resnet50",
    "fast_rcnn_small",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_small",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_small",
    "overwrite_eps",
    "randomize_for_detections",
    "retinanet_resnet50_fpn",
    "retinanet_small",
    "ssd300_vgg16",
    "ssd_small",
    "yolo_v1",
    "yolo_v1_small",
]
