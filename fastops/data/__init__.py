"""Datasets, transforms and samplers (layout in docs/ARCHITECTURE.md, "Data"): built-in synthetic
datasets, COCO and VOC readers, transforms that keep images, boxes and masks consistent,
augmentations (random erasing, copy-paste, mixup), and the samplers for imbalanced data. Never
imports ``fastops.models``.

A dataset's ``dataset[i]`` is ``(image, target)``: image float32 [3, H, W] in [0, 1]; target a
dict with ``boxes`` (float32 [K, 4] xyxy), ``labels`` (int64 [K] in [1, C]), ``masks`` (uint8
[K, H, W]), ``semantic`` (int64 [H, W], 0 background, 255 ignore), ``tags`` (float32 [C]) and
``image_id``. Datasets also give ``num_classes``, ``class_names``, ``image_labels(i)``,
``label_counts()``, ``has_masks`` and ``has_semantic`` without decoding images.
"""

from . import transforms
from .augment import (
    CopyPaste,
    DetectionMixUp,
    MixedBatch,
    MixUp,
    RandomErasing,
    boxes_from_masks,
    copy_paste,
    mixup,
    mixup_detection,
)
from .batching import collate, image_labels, label_counts, stack_images
from .coco import CocoDetection
from .errors import DatasetError
from .samplers import ClassBalancedSampler, RepeatFactorSampler, class_weights, image_class_counts, repeat_factors
from .synthetic import SHAPE_KINDS, SyntheticShapes
from .voc import VOC_CLASSES, VOCDetection

__all__ = [
    "SHAPE_KINDS",
    "VOC_CLASSES",
    "ClassBalancedSampler",
    "CocoDetection",
    "CopyPaste",
    "DatasetError",
    "DetectionMixUp",
    "MixUp",
    "MixedBatch",
    "RandomErasing",
    "RepeatFactorSampler",
    "SyntheticShapes",
    "VOCDetection",
    "boxes_from_masks",
    "class_weights",
    "collate",
    "copy_paste",
    "image_class_counts",
    "image_labels",
    "label_counts",
    "mixup",
    "mixup_detection",
    "repeat_factors",
    "stack_images",
    "transforms",
]
