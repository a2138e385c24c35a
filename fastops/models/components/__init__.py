"""Reusable detection parts, one small module each, every one tested on its own against
torchvision's equivalent."""

from .anchors import AnchorGenerator, cell_anchors
from .box_coder import BoxCoder
from .default_boxes import DefaultBoxGenerator
from .hungarian_matcher import HungarianMatcher
from .masks import project_masks_on_boxes
from .matcher import Matcher, SSDMatcher
from .panoptic_fusion import combine_semantic_and_instances, panoptic_labels
from .postprocess import clip_boxes_per_image, clip_boxes_to_image, nms_per_image, remove_small_boxes, topk_per_level
from .sampler import BalancedPositiveNegativeSampler
from .set_criterion import SetCriterion
from .transform import GeneralizedRCNNTransform, ImageBatch, resize_boxes

__all__ = [
    "AnchorGenerator",
    "BalancedPositiveNegativeSampler",
    "BoxCoder",
    "DefaultBoxGenerator",
    "GeneralizedRCNNTransform",
    "HungarianMatcher",
    "ImageBatch",
    "Matcher",
    "SSDMatcher",
    "SetCriterion",
    "cell_anchors",
    "clip_boxes_per_image",
    "clip_boxes_to_image",
    "combine_semantic_and_instances",
    "nms_per_image",
    "panoptic_labels",
    "project_masks_on_boxes",
    "remove_small_boxes",
    "resize_boxes",
    "topk_per_level",
]
