"""Evaluation metrics: COCO detection evaluation (pycocotools-compatible ``COCO``/``COCOeval``,
bit-exact) and its RLE mask API."""

from . import _ops, mask  # noqa: F401  (_ops registers the fake kernels)
from .coco import COCO, COCOeval, Params
from .detection import MeanAveragePrecision

__all__ = ["COCO", "COCOeval", "MeanAveragePrecision", "Params", "mask"]
