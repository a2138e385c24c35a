"""``MeanAveragePrecision``: the COCO metric for a training loop, with torchmetrics' interface and
output keys, computed by the same C++ evaluation as ``fastops.metrics.COCOeval`` and therefore equal
to pycocotools in float64 (torchmetrics' defaults build the IoU thresholds with torch.linspace in
float32 and drift by ~1e-5; ours are pycocotools' np.linspace values).

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")   # or "segm", or ("bbox", "segm")
    for images, targets in loader:
        metric.update(model(images), targets)   # lists of dicts, one per image
    result = metric.compute()                   # {"map": ..., "map_50": ..., ...}

With both iou types the keys are prefixed ("bbox_map", "segm_map", ...; "classes" once), as in
torchmetrics, and the areas are torchmetrics': a detection's is its box's for the bbox evaluation
and its mask's for segm; a ground truth's is the given "area" when > 0, else its mask's (for both
evaluations, as torchmetrics builds one ground truth set for both).

Under torch.distributed (any backend; tested with two gloo processes), ``compute()`` gathers every
process's images (in rank order) and all processes return the same result.

Differences, deliberate: with iou_type "segm" alone, images without ground-truth masks still count
(their detections are false positives; torchmetrics leaves such images out of the evaluation).
With both iou types, the bbox per-class metrics use each detection's box area, as the bbox
summary does (torchmetrics rebuilds its detections for them with the mask's area, which changes a
class's numbers only when a box with a negative area, or box and mask areas on both sides of an
area limit, make the two disagree).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from . import rle
from .coco import ArrayCOCO
from .cocoeval import COCOeval
from .columns import AnnotationColumns, sorted_unique
from .rle import RleBatch

__all__ = ["MeanAveragePrecision"]

_BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
_IOU_TYPES = ("bbox", "segm")
_STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")


def _to_xywh(boxes: Tensor, fmt: str) -> Tensor:
    """torchvision.ops.box_convert(boxes, fmt, "xywh") in the boxes' own dtype (torchmetrics
    converts this way before it hands the boxes to pycocotools)."""
    if fmt == "xywh":
        return boxes
    if fmt == "cxcywh":
        cx, cy, w, h = boxes.unbind(-1)
        boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def _iou_types(iou_type) -> tuple:
    types = (iou_type,) if isinstance(iou_type, str) else tuple(iou_type)
    if not types or any(t not in _IOU_TYPES for t in types) or len(set(types)) != len(types):
        raise ValueError(f"MeanAveragePrecision: iou_type must be 'bbox', 'segm' or a tuple of them, got {iou_type!r}")
    return types


def _mask_rles(masks, where: str) -> RleBatch:
    """An image's masks: a bool (or 0 / 1) tensor [N, H, W], or a list of RLE dicts ({"size": [h, w],
    "counts": compressed str / bytes or an uncompressed list})."""
    if isinstance(masks, Tensor):
        if masks.dim() != 3:
            shape = tuple(masks.shape)
            raise ValueError(f"MeanAveragePrecision.update: {where} must be a [N, H, W] tensor, got {shape}")
        m = masks.detach()
        if m.dtype != torch.bool and (m.is_complex() or not bool(((m == 0) | (m == 1)).all())):
            raise ValueError(f"MeanAveragePrecision.update: {where} must be boolean (or 0 / 1) masks")
        m = m.cpu().to(torch.uint8).transpose(1, 2).contiguous()  # [N, W, H]: column-major
        return RleBatch(*torch.ops.fastops.rle_encode(m))
    if isinstance(masks, (list, tuple)) and all(isinstance(r, dict) for r in masks):
        return rle.from_dicts(list(masks))
    raise ValueError(
        f"MeanAveragePrecision.update: {where} must be a [N, H, W] boolean tensor or a list of RLE dicts, "
        f"got {type(masks).__name__}"
    )


class MeanAveragePrecision:
    """COCO mean average precision and recall over a dataset, accumulated image by image.

    Args (keyword-only):
        box_format: "xyxy" (default), "xywh" or "cxcywh", of the boxes given to ``update``.
        iou_type: "bbox" (boxes), "segm" (masks) or ("bbox", "segm") (both, in one pass).
        iou_thresholds: list of floats; default pycocotools' np.linspace(0.5, 0.95, 10).
        rec_thresholds: list of floats; default np.linspace(0, 1, 101).
        max_detection_thresholds: three ints, default [1, 10, 100].
        class_metrics: also return map and mar (at the last maxDet) per class.
        dist_sync: gather the states of all processes in compute() under torch.distributed.
        process_group: the group to gather over (default: the world).

    ``update(preds, target)``: lists with one dict per image. preds: "boxes" [N, 4] float (bbox),
    "masks" (segm: bool [N, H, W], or a list of N RLE dicts), "scores" [N], "labels" [N] int;
    target: "boxes" / "masks", "labels", optional "iscrowd" [M] and "area" [M] (else the box's, or
    the mask's, area).

    ``compute()`` -> dict of float64 scalars: map, map_50, map_75, map_small, map_medium,
    map_large, mar_1, mar_10, mar_100, mar_small, mar_medium, mar_large (named after the maxDets),
    map_per_class and mar_100_per_class (-1 unless class_metrics), and classes (int32).
    """

    def __init__(
        self,
        *,
        box_format: str = "xyxy",
        iou_type="bbox",
        iou_thresholds=None,
        rec_thresholds=None,
        max_detection_thresholds=None,
        class_metrics: bool = False,
        dist_sync: bool = True,
        process_group=None,
    ):
        if box_format not in _BOX_FORMATS:
            raise ValueError(f"MeanAveragePrecision: box_format must be one of {_BOX_FORMATS}, got {box_format!r}")
        self.iou_types = _iou_types(iou_type)
        max_dets = (
            [1, 10, 100] if max_detection_thresholds is None else sorted(int(m) for m in max_detection_thresholds)
        )
        if len(max_dets) != 3:
            raise ValueError(f"MeanAveragePrecision: max_detection_thresholds must have 3 values, got {max_dets}")
        self.box_format = box_format
        self.iou_type = iou_type if isinstance(iou_type, str) else self.iou_types
        self.iou_thresholds = None if iou_thresholds is None else np.asarray(iou_thresholds, dtype=np.float64)
        self.rec_thresholds = None if rec_thresholds is None else np.asarray(rec_thresholds, dtype=np.float64)
        self.max_detection_thresholds = max_dets
        self.class_metrics = bool(class_metrics)
        self.dist_sync = dist_sync
        self.process_group = process_group
        self.reset()

    def reset(self) -> None:
        # one entry per image: ({iou type: xywh float64 [N, 4] or RLEs}, scores, labels) /
        # ({iou type: geometry}, labels, iscrowd, area)
        self._dets: list[tuple] = []
        self._gts: list[tuple] = []

    # ---- update ----------------------------------------------------------------------------------
    def _geometry(self, item: dict, what: str, i: int) -> tuple[dict, int]:
        if not isinstance(item, dict):
            raise ValueError(f"MeanAveragePrecision.update: {what}[{i}] must be a dict, got {type(item).__name__}")
        geo, n = {}, None
        for t in self.iou_types:
            key = "boxes" if t == "bbox" else "masks"
            if key not in item:
                raise ValueError(f"MeanAveragePrecision.update: {what}[{i}] has no {key!r} (iou_type {t!r})")
            if t == "bbox":
                boxes = item["boxes"]
                if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
                    shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
                    raise ValueError(
                        f"MeanAveragePrecision.update: {what}[{i}]['boxes'] must be a [N, 4] tensor, got {shape}"
                    )
                if not boxes.is_floating_point():
                    boxes = boxes.double()
                geo[t] = _to_xywh(boxes.detach(), self.box_format).cpu().double()
                count = geo[t].shape[0]
            else:
                geo[t] = _mask_rles(item["masks"], f"{what}[{i}]['masks']")
                count = len(geo[t])
            if n is not None and count != n:
                raise ValueError(f"MeanAveragePrecision.update: {what}[{i}] has {n} boxes but {count} masks")
            n = count
        return geo, n

    @staticmethod
    def _vector(item: dict, key: str, n: int, what: str, i: int, dtype, default=None) -> Tensor:
        v = item.get(key)
        if v is None:
            if default is None:
                raise ValueError(f"MeanAveragePrecision.update: {what}[{i}] has no '{key}'")
            return torch.full((n,), default, dtype=dtype)
        if not isinstance(v, Tensor):
            v = torch.as_tensor(v)
        v = v.detach().cpu().reshape(-1)
        if v.shape[0] != n:
            raise ValueError(
                f"MeanAveragePrecision.update: {what}[{i}]['{key}'] has {v.shape[0]} entries, expected {n}"
            )
        integral = bool(((v == torch.floor(v)) & (v.abs() < 2**62)).all()) if v.is_floating_point() else True
        if dtype == torch.int64 and not integral:
            raise ValueError(f"MeanAveragePrecision.update: {what}[{i}]['{key}'] must be integers")
        return v.to(dtype)

    def update(self, preds: list[dict], target: list[dict]) -> None:
        """Adds one batch: preds and target are lists of equal length, one dict per image."""
        if not isinstance(preds, (list, tuple)) or not isinstance(target, (list, tuple)):
            raise ValueError("MeanAveragePrecision.update: preds and target must be lists of dicts")
        if len(preds) != len(target):
            raise ValueError(f"MeanAveragePrecision.update: {len(preds)} predictions but {len(target)} targets")
        dets, gts = [], []
        for i, (p, t) in enumerate(zip(preds, target)):
            geo, n = self._geometry(p, "preds", i)
            scores = self._vector(p, "scores", n, "preds", i, torch.float64)
            labels = self._vector(p, "labels", n, "preds", i, torch.int64)
            tgeo, m = self._geometry(t, "target", i)
            tlabels = self._vector(t, "labels", m, "target", i, torch.int64)
            crowd = self._vector(t, "iscrowd", m, "target", i, torch.int64, default=0)
            area = self._vector(t, "area", m, "target", i, torch.float64, default=float("nan"))
            dets.append((geo, scores, labels))
            gts.append((tgeo, tlabels, crowd, area))
        self._dets += dets  # a bad image adds nothing of its batch
        self._gts += gts

    # ---- compute ---------------------------------------------------------------------------------
    def _synced_states(self):
        dets, gts = self._dets, self._gts
        if not self.dist_sync or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return dets, gts
        world = torch.distributed.get_world_size(self.process_group)
        if world == 1:
            return dets, gts
        payload = (
            [(_pack(g), s, lab) for g, s, lab in dets],
            [(_pack(g), lab, c, a) for g, lab, c, a in gts],
        )
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, payload, group=self.process_group)
        all_dets, all_gts = [], []
        for d, g in gathered:  # rank order
            all_dets += [(_unpack(x), s, lab) for x, s, lab in d]
            all_gts += [(_unpack(x), lab, c, a) for x, lab, c, a in g]
        return all_dets, all_gts

    def compute(self) -> dict:
        dets, gts = self._synced_states()
        n_img = len(gts)
        det_counts = [len(s) for _, s, _ in dets]
        gt_counts = [len(lab) for _, lab, _, _ in gts]
        cat = lambda xs, dtype: torch.cat(xs).numpy() if xs else np.zeros(0, dtype)
        d_labels = cat([lab for _, _, lab in dets], np.int64)
        g_labels = cat([lab for _, lab, _, _ in gts], np.int64)
        classes = sorted_unique(np.concatenate([d_labels, g_labels]))
        d_img = np.repeat(np.arange(n_img, dtype=np.int64), det_counts)
        g_img = np.repeat(np.arange(n_img, dtype=np.int64), gt_counts)
        d_score = cat([s for _, s, _ in dets], np.float64)
        g_crowd = cat([c for _, _, c, _ in gts], np.int64)
        g_area = cat([a for _, _, _, a in gts], np.float64)
        boxes = rles = None
        if "bbox" in self.iou_types:
            box_cat = lambda xs: torch.cat(xs).numpy() if xs else np.zeros((0, 4))
            boxes = (box_cat([g["bbox"] for g, _, _ in dets]), box_cat([g["bbox"] for g, _, _, _ in gts]))
        if "segm" in self.iou_types:
            rles = (RleBatch.cat([g["segm"] for g, _, _ in dets]), RleBatch.cat([g["segm"] for g, _, _, _ in gts]))
        # a given area is used where it is > 0 (torchmetrics' rule), else the mask's (whenever masks
        # are evaluated) or the box's
        given = np.nan_to_num(g_area, nan=0.0) > 0
        g_area = np.where(given, g_area, _mask_area(rles[1]) if rles is not None else _box_area(boxes[1]))
        out = {}
        for t in self.iou_types:
            prefix = "" if len(self.iou_types) == 1 else f"{t}_"
            d_area = _box_area(boxes[0]) if t == "bbox" else _mask_area(rles[0])
            gcols = AnnotationColumns.from_arrays(
                id=np.arange(1, len(g_labels) + 1, dtype=np.int64),
                image_id=g_img,
                category_id=g_labels,
                bbox=boxes[1] if t == "bbox" else None,
                area=g_area,
                crowd=(g_crowd != 0, g_crowd != 0, np.zeros(len(g_crowd), bool)),
            )
            dcols = AnnotationColumns.from_arrays(
                id=np.arange(1, len(d_score) + 1, dtype=np.int64),
                image_id=d_img,
                category_id=d_labels,
                bbox=boxes[0] if t == "bbox" else None,
                area=d_area,
                score=d_score,
            )
            imgs = list(range(n_img))
            seg = rles if t == "segm" else (None, None)
            E = COCOeval(ArrayCOCO(gcols, imgs, classes, seg[1]), ArrayCOCO(dcols, imgs, classes, seg[0]), t)
            out.update(self._stats(E, classes, prefix))
        out["classes"] = torch.tensor(classes, dtype=torch.int32)
        return out

    def _stats(self, E: COCOeval, classes: np.ndarray, prefix: str) -> dict:
        if self.iou_thresholds is not None:
            E.params.iouThrs = self.iou_thresholds
        if self.rec_thresholds is not None:
            E.params.recThrs = self.rec_thresholds
        E.params.maxDets = list(self.max_detection_thresholds)
        E.evaluate()
        E.accumulate()
        E.summarize(verbose=False)
        stats = np.asarray(E.stats, dtype=np.float64)
        md = self.max_detection_thresholds
        names = [*_STAT_NAMES, f"mar_{md[0]}", f"mar_{md[1]}", f"mar_{md[2]}", "mar_small", "mar_medium", "mar_large"]
        out = {prefix + k: torch.tensor(float(v), dtype=torch.float64) for k, v in zip(names, stats)}
        if self.class_metrics and len(classes):
            prec = E.eval["precision"][:, :, :, 0, -1]
            rec = E.eval["recall"][:, :, 0, -1]
            map_pc, mar_pc = [], []
            for k in range(len(classes)):
                s, r = prec[:, :, k], rec[:, k]
                map_pc.append(np.mean(s[s > -1]) if (s > -1).any() else -1.0)
                mar_pc.append(np.mean(r[r > -1]) if (r > -1).any() else -1.0)
            out[prefix + "map_per_class"] = torch.tensor(map_pc, dtype=torch.float64)
            out[prefix + f"mar_{md[2]}_per_class"] = torch.tensor(mar_pc, dtype=torch.float64)
        else:
            out[prefix + "map_per_class"] = torch.tensor(-1.0, dtype=torch.float64)
            out[prefix + f"mar_{md[2]}_per_class"] = torch.tensor(-1.0, dtype=torch.float64)
        return out

    def __call__(self, preds, target):
        self.update(preds, target)


def _box_area(xywh: np.ndarray) -> np.ndarray:
    return xywh[:, 2] * xywh[:, 3]


def _mask_area(b: RleBatch) -> np.ndarray:
    return torch.ops.fastops.rle_area(b.counts, b.offsets, b.hw).numpy().view(np.uint32).astype(np.float64)


def _pack(geo: dict) -> dict:
    """A picklable form of an image's boxes and RLE batch."""
    return {t: (g.counts, g.offsets, g.hw) if isinstance(g, RleBatch) else g for t, g in geo.items()}


def _unpack(x: dict) -> dict:
    return {t: RleBatch(*g) if t == "segm" else g for t, g in x.items()}
