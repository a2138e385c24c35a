"""Detectors with one surface (``base.Detector``): RetinaNet, Faster R-CNN, Mask R-CNN, SSD
(torchvision's builders, arguments and state_dicts), YOLO v1, DETR, Panoptic FPN and Fast R-CNN on
external proposals."""

from .base import Detector
from .builders import (
    fasterrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn,
    overwrite_eps,
    panoptic_fpn_resnet50_fpn,
    randomize_for_detections,
    retinanet_resnet50_fpn,
    ssd300_vgg16,
)
from .detr import DETR
from .detr_builders import convert_detr_state_dict, detr_resnet50, detr_small
from .detr_transformer import DETRTransformer
from .fast_rcnn import FastRCNN, fast_rcnn_resnet50, fast_rcnn_small
from .faster_rcnn import FasterRCNN
from .mask_rcnn import MaskRCNN
from .panoptic_fpn import PanopticFPN
from .retinanet import RetinaNet
from .semantic_fpn_head import SemanticFPNHead
from .small import fasterrcnn_small, maskrcnn_small, panoptic_fpn_small, retinanet_small, ssd_small
from .ssd import SSD
from .yolo_v1 import YOLOv1, yolo_v1, yolo_v1_small

__all__ = [
    "DETR",
    "SSD",
    "DETRTransformer",
    "Detector",
    "FastRCNN",
    "FasterRCNN",
    "MaskRCNN",
    "PanopticFPN",
    "RetinaNet",
    "SemanticFPNHead",
    "YOLOv1",
    "convert_detr_state_dict",
    "detr_resnet50",
    "detr_small",
    "fast_rcnn_resnet50",
    "fast_rcnn_small",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_small",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_small",
    "overwrite_eps",
    "panoptic_fpn_resnet50_fpn",
    "panoptic_fpn_small",
    "randomize_for_detections",
    "retinanet_resnet50_fpn",
    "retinanet_small",
    "ssd300_vgg16",
    "ssd_small",
    "yolo_v1",
    "yolo_v1_small",
]
