"""Evaluation metrics.

- COCO detection evaluation: pycocotools-compatible ``COCO``/``COCOeval`` (bit-exact ``stats`` and
  ``eval`` arrays, bbox, segm and keypoints; files read by C++), its RLE mask API
  (``fastops.metrics.mask``), and ``MeanAveragePrecision`` for training loops (torchmetrics'
  interface, bbox and segm together, torch.distributed sync).
- PASCAL VOC: ``voc_evaluate`` (11-point / all-point AP, difficult flag), ``voc_ap``,
  ``plot_pr_curves``, ``detection_confusion_matrix``.
- Classification and segmentation: ``precision_recall_f1``, ``confusion_matrix``,
  ``segmentation_scores``/``SegmentationMetrics`` (IoU, mIoU, pixel accuracy, ignore index),
  ``average_precision``, ``multilabel_average_precision``, ``multilabel_precision_recall_f1``.
- Panoptic segmentation: ``panoptic_quality`` (PQ, SQ, RQ as the COCO panoptic API's ``pq_compute``).
"""

from .. import _library  # noqa: F401  (loads the compiled ops before their Python sides register)
from . import _ops, mask  # noqa: F401  (_ops registers the fake kernels)
from .classification import (
    SegmentationMetrics,
    average_precision,
    confusion_matrix,
    multilabel_average_precision,
    multilabel_precision_recall_f1,
    precision_recall_f1,
    segmentation_scores,
)
from .coco import COCO
from .cocoeval import COCOeval, Params
from .detection import MeanAveragePrecision
from .panoptic import panoptic_quality
from .thresholds import f1_optimal_thresholds
from .voc import detection_confusion_matrix, plot_pr_curves, voc_ap, voc_evaluate

__all__ = [
    "COCO",
    "COCOeval",
    "MeanAveragePrecision",
    "Params",
    "SegmentationMetrics",
    "average_precision",
    "confusion_matrix",
    "detection_confusion_matrix",
    "f1_optimal_thresholds",
    "mask",
    "multilabel_average_precision",
    "multilabel_precision_recall_f1",
    "panoptic_quality",
    "plot_pr_curves",
    "precision_recall_f1",
    "segmentation_scores",
    "voc_ap",
    "voc_evaluate",
]
