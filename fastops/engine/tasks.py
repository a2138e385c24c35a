"""What differs between the tasks, in one place: how a collated batch becomes the model's inputs
and targets, the loss, the predictions, and the metric (``fastops.metrics``).

- detection: images as a list (any sizes), targets as dicts; COCO mAP (``MeanAveragePrecision``,
  bbox, and segm for models with masks) and per-class VOC precision-recall curves. Objects flagged
  ``iscrowd`` (COCO) or ``difficult`` (VOC) are trained on and, in evaluation, neither count as
  misses nor make a detection of them a false positive (COCO's crowd rule, VOC's difficult rule).
- segmentation: images stacked [N, 3, H, W], targets the semantic maps [N, H, W] (0 background,
  255 ignored); mIoU and pixel accuracy (``SegmentationMetrics``).
- multilabel: images stacked, targets the tags [N, C]; mAP over labels
  (``multilabel_average_precision``).
- panoptic: as detection, the dataset's classes the things and its background the one stuff
  category (C + 1), the semantic map's background relabelled to it; panoptic quality
  (``panoptic_quality``) of the fused maps; flagged objects' pixels are void in the ground truth.

Evaluators accumulate on each process and synchronize in ``compute()`` under torch.distributed
(segmentation all-reduces its confusion matrix; the others gather their predictions), so every
process returns the same numbers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..data import stack_images
from ..metrics import (
    MeanAveragePrecision,
    SegmentationMetrics,
    multilabel_average_precision,
    panoptic_quality,
    voc_evaluate,
)
from ..models.components import panoptic_labels
from . import distributed

__all__ = ["DetectionTask", "MultiLabelTask", "PanopticTask", "SegmentationTask", "make_task"]

IGNORE_INDEX = 255
IGNORE_FLAGS = ("iscrowd", "difficult")  # per-object flags of objects the evaluation does not require
LABEL_DIVISOR = 1000  # panoptic maps as category * LABEL_DIVISOR + instance


def _cpu(x):
    if isinstance(x, Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _cpu(v) for k, v in x.items()}
    return x


class DetectionTask:
    """Detectors: ``model.loss(images, targets)`` (summed), ``model.predict(images)``."""

    name = "detection"
    headline = "map"

    def __init__(self, num_classes: int, masks: bool = False):
        self.num_classes = num_classes
        self.masks = masks

    def inputs(self, batch, device: torch.device):
        images, targets = batch
        keys = ("boxes", "labels", "masks") if self.masks else ("boxes", "labels")
        images = [img.to(device, non_blocking=True) for img in images]
        targets = [{k: t[k].to(device, non_blocking=True) for k in (*keys, *IGNORE_FLAGS) if k in t} for t in targets]
        return images, targets

    def loss(self, model: nn.Module, images, targets) -> dict[str, Tensor]:
        losses = model.loss(images, targets)
        return {"loss": sum(losses.values()), **losses}

    def predict(self, model: nn.Module, images) -> list[dict[str, Tensor]]:
        preds = model.predict(images)
        for p in preds:
            if "masks" in p:
                p["masks"] = p["masks"][:, 0] > 0.5  # probabilities [K, 1, H, W] -> bool [K, H, W]
        return preds

    def evaluator(self) -> DetectionEvaluator:
        return DetectionEvaluator(self.masks)


class DetectionEvaluator:
    """COCO mAP (bbox; and segm with masks) and the per-class VOC curves at IoU 0.5 of a dataset."""

    def __init__(self, masks: bool):
        self.masks = masks
        self.preds: list[dict] = []
        self.targets: list[dict] = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        keep = ("boxes", "scores", "labels", "masks") if self.masks else ("boxes", "scores", "labels")
        self.preds += [{k: _cpu(p[k]) for k in keep if k in p} for p in preds]
        keys = ("boxes", "labels", "masks") if self.masks else ("boxes", "labels")
        for t in targets:
            kept = {k: _cpu(t[k]) for k in keys}
            flags = [t[k].bool().cpu() for k in IGNORE_FLAGS if k in t]
            kept["ignore"] = flags[0] if flags else torch.zeros(len(kept["labels"]), dtype=torch.bool)
            self.targets.append(kept)

    def compute(self) -> dict:
        preds = [p for part in distributed.all_gather_objects(self.preds) for p in part]
        targets = [t for part in distributed.all_gather_objects(self.targets) for t in part]
        metric = MeanAveragePrecision(iou_type=("bbox", "segm") if self.masks else "bbox", dist_sync=False)
        coco_targets = []
        for t in targets:
            coco = {"boxes": t["boxes"], "labels": t["labels"], "iscrowd": t["ignore"].long()}
            if self.masks:
                coco["masks"] = t["masks"].bool()
            coco_targets.append(coco)
        metric.update(preds, coco_targets)
        result = metric.compute()
        prefix = "bbox_" if self.masks else ""
        out = {"map": float(result[f"{prefix}map"]), "map_50": float(result[f"{prefix}map_50"])}
        out["map_75"] = float(result[f"{prefix}map_75"])
        if self.masks:
            out["segm_map"] = float(result["segm_map"])
        voc_targets = [{"boxes": t["boxes"], "labels": t["labels"], "difficult": t["ignore"]} for t in targets]
        voc = voc_evaluate(preds, voc_targets, pixel_plus_one=False)
        self.curves = voc["curves"]
        return out


class SegmentationTask:
    """Segmenters: ``model.loss(images, semantic)``, ``model.predict(images)`` class maps."""

    name = "segmentation"
    headline = "miou"

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def inputs(self, batch, device: torch.device):
        images, targets = batch
        return stack_images(images).to(device), stack_images([t["semantic"] for t in targets], pad_value=255).to(device)

    def loss(self, model: nn.Module, images, masks) -> dict[str, Tensor]:
        return model.loss(images, masks)

    def predict(self, model: nn.Module, images) -> Tensor:
        return model.predict(images)

    def evaluator(self) -> SegmentationEvaluator:
        return SegmentationEvaluator(self.num_classes + 1)


class SegmentationEvaluator:
    """mIoU, pixel accuracy and per-class IoU from one confusion matrix, summed over processes."""

    def __init__(self, num_classes: int):
        self.metric = SegmentationMetrics(num_classes=num_classes, ignore_index=IGNORE_INDEX)

    def update(self, preds: Tensor, masks: Tensor) -> None:
        self.metric.update(preds.cpu(), masks.cpu())

    def compute(self) -> dict:
        distributed.all_reduce_sum(self.metric.confmat)
        scores = self.metric.compute()
        return {"miou": float(scores["miou"]), "pixel_accuracy": float(scores["pixel_accuracy"])}


class MultiLabelTask:
    """The multi-label classifier: ``model.loss(images, tags)``, ``model.predict(images)``."""

    name = "multilabel"
    headline = "macro_map"

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def inputs(self, batch, device: torch.device):
        images, targets = batch
        return stack_images(images).to(device), torch.stack([t["tags"] for t in targets]).to(device)

    def loss(self, model: nn.Module, images, tags) -> dict[str, Tensor]:
        return model.loss(images, tags)

    def predict(self, model: nn.Module, images) -> dict[str, Tensor]:
        return model.predict(images)

    def evaluator(self) -> MultiLabelEvaluator:
        return MultiLabelEvaluator()


class MultiLabelEvaluator:
    """Per-label AP, its mean (macro) and the pooled (micro) AP over every process's images."""

    def __init__(self):
        self.scores: list[Tensor] = []
        self.tags: list[Tensor] = []

    def update(self, preds: dict[str, Tensor], tags: Tensor) -> None:
        self.scores.append(preds["scores"].detach().cpu())
        self.tags.append(tags.detach().cpu())

    def compute(self) -> dict:
        scores = torch.cat([s for part in distributed.all_gather_objects(self.scores) for s in part])
        tags = torch.cat([t for part in distributed.all_gather_objects(self.tags) for t in part])
        ap = multilabel_average_precision(scores, tags)
        macro, micro = float(ap["macro_map"]), float(ap["micro_map"])
        return {"macro_map": macro if not math.isnan(macro) else 0.0, "micro_map": micro}


class PanopticTask:
    """Panoptic FPN: ``model.loss(images, targets)`` (summed), ``model.predict(images)``; the
    dataset's background is the stuff category ``num_classes + 1``."""

    name = "panoptic"
    headline = "pq"

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def inputs(self, batch, device: torch.device):
        images, targets = batch
        stuff = self.num_classes + 1
        keys = ("boxes", "labels", "masks", *IGNORE_FLAGS)
        moved = []
        for t in targets:
            target = {k: t[k].to(device, non_blocking=True) for k in keys if k in t}
            semantic = t["semantic"].to(device, non_blocking=True)
            target["semantic"] = torch.where(semantic == 0, stuff, semantic)
            moved.append(target)
        return [img.to(device, non_blocking=True) for img in images], moved

    def loss(self, model: nn.Module, images, targets) -> dict[str, Tensor]:
        losses = model.loss(images, targets)
        return {"loss": sum(losses.values()), **losses}

    def predict(self, model: nn.Module, images) -> list[dict]:
        preds = model.predict(images)
        for p in preds:
            p["masks"] = p["masks"][:, 0] > 0.5  # probabilities [K, 1, H, W] -> bool [K, H, W]
        return preds

    def evaluator(self) -> PanopticEvaluator:
        return PanopticEvaluator(self.num_classes)


def panoptic_ground_truth(target: dict[str, Tensor]) -> Tensor:
    """A panoptic task's target as ``category * LABEL_DIVISOR + instance`` (int32 [H, W]): stuff
    from ``semantic`` (instance 0), each object's mask its own instance (1, 2, ...), ignored
    pixels and flagged objects void (-1)."""
    semantic = target["semantic"].cpu()
    gt = torch.where(semantic == IGNORE_INDEX, -1, semantic * LABEL_DIVISOR)
    flags = [target[k].bool().cpu() for k in IGNORE_FLAGS if k in target]
    for k, (mask, label) in enumerate(zip(target["masks"].cpu().bool(), target["labels"].tolist())):
        gt[mask] = -1 if any(bool(f[k]) for f in flags) else label * LABEL_DIVISOR + k + 1
    return gt.to(torch.int32)


class PanopticEvaluator:
    """PQ, SQ, RQ over all categories, and PQ over things and over stuff, of every process's images."""

    def __init__(self, num_classes: int):
        self.categories = {c: c <= num_classes for c in range(1, num_classes + 2)}
        self.preds: list[Tensor] = []
        self.targets: list[Tensor] = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        for p, t in zip(preds, targets):
            fused = panoptic_labels(p["panoptic"].cpu(), p["segments_info"], LABEL_DIVISOR)
            self.preds.append(fused.to(torch.int32))
            self.targets.append(panoptic_ground_truth(t))

    def compute(self) -> dict:
        preds = [p for part in distributed.all_gather_objects(self.preds) for p in part]
        targets = [t for part in distributed.all_gather_objects(self.targets) for t in part]
        result = panoptic_quality(preds, targets, self.categories, label_divisor=LABEL_DIVISOR)

        def number(x: float) -> float:  # NaN where no category was seen
            return 0.0 if math.isnan(x) else x

        out = {k: number(result["All"][k]) for k in ("pq", "sq", "rq")}
        out["pq_things"], out["pq_stuff"] = number(result["Things"]["pq"]), number(result["Stuff"]["pq"])
        return out


def make_task(task: str, num_classes: int, masks: bool = False):
    """The task object for a model spec's ``task`` name."""
    if task == "detection":
        return DetectionTask(num_classes, masks)
    if task == "panoptic":
        return PanopticTask(num_classes)
    if task == "segmentation":
        return SegmentationTask(num_classes)
    return MultiLabelTask(num_classes)
