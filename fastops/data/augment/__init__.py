"""Augmentation for detection and segmentation that keeps a target consistent with its image:
``RandomErasing`` (Zhong et al. 2020), ``CopyPaste`` / ``copy_paste`` (Ghiasi et al. 2021),
``MixUp`` / ``mixup`` (Zhang et al. 2018) for multi-label batches and ``DetectionMixUp`` /
``mixup_detection`` for detection. The per-sample ones follow the transform contract of
``fastops.data.transforms``: ``t(image, target, generator=None) -> (image, target)``,
deterministic given the generator's seed."""

from .copy_paste import CopyPaste, copy_paste
from .erasing import RandomErasing
from .masks import boxes_from_masks
from .mixup import DetectionMixUp, MixedBatch, MixUp, mixup, mixup_detection

__all__ = [
    "CopyPaste",
    "DetectionMixUp",
    "MixUp",
    "MixedBatch",
    "RandomErasing",
    "boxes_from_masks",
    "copy_paste",
    "mixup",
    "mixup_detection",
]
