"""``MeanAveragePrecision``: the COCO metric for a training loop, with torchmetrics' interface and
output keys, computed by the same C++ evaluation as ``fastops.metrics.COCOeval`` and therefore equal
to pycocotools in float64 (torchmetrics' defaults build the IoU thresholds with torch.linspace in
float32 and drift by ~1e-5; ours are pycocotools' np.linspace values).

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    for images, targets in loader:
        metric.update(model(images), targets)   # lists of dicts, one per image
    result = metric.compute()                   # {"map": ..., "map_50": ..., ...}

Under torch.distributed (any backend; tested with two gloo processes), ``compute()`` gathers every
process's images (in rank order) and all processes return the same result.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .coco import ArrayCOCO
from .cocoeval import COCOeval
from .columns import AnnotationColumns
from .rle import RleBatch

__all__ = ["MeanAveragePrecision"]

_BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


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


class MeanAveragePrecision:
    """COCO mean average precision and recall over a dataset, accumulated image by image.

    Args (keyword-only):
        box_format: "xyxy" (default), "xywh" or "cxcywh", of the boxes given to ``update``.
        iou_type: "bbox" (boxes) or "segm" (masks, bool [N, H, W] per image under "masks").
        iou_thresholds: list of floats; default pycocotools' np.linspace(0.5, 0.95, 10).
        rec_thresholds: list of floats; default np.linspace(0, 1, 101).
        max_detection_thresholds: three ints, default [1, 10, 100].
        class_metrics: also return map and mar (at the last maxDet) per class.
        dist_sync: gather the states of all processes in compute() under torch.distributed.
        process_group: the group to gather over (default: the world).

    ``update(preds, target)``: lists with one dict per image. preds: "boxes" [N, 4] float,
    "scores" [N], "labels" [N] int (and "masks" for segm); target: "boxes", "labels", optional
    "iscrowd" [M] and "area" [M] (else the box's, or the mask's, area).

    ``compute()`` -> dict of float64 scalars: map, map_50, map_75, map_small, map_medium,
    map_large, mar_1, mar_10, mar_100, mar_small, mar_medium, mar_large (named after the maxDets),
    map_per_class and mar_100_per_class (-1 unless class_metrics), and classes (int32).
    """

    def __init__(
        self,
        *,
        box_format: str = "xyxy",
        iou_type: str = "bbox",
        iou_thresholds=None,
        rec_thresholds=None,
        max_detection_thresholds=None,
        class_metrics: bool = False,
        dist_sync: bool = True,
        process_group=None,
    ):
        if box_format not in _BOX_FORMATS:
            raise ValueError(f"MeanAveragePrecision: box_format must be one of {_BOX_FORMATS}, got {box_format!r}")
        if iou_type not in ("bbox", "segm"):
            raise ValueError(f"MeanAveragePrecision: iou_type must be 'bbox' or 'segm', got {iou_type!r}")
        max_dets = (
            [1, 10, 100] if max_detection_thresholds is None else sorted(int(m) for m in max_detection_thresholds)
        )
        if len(max_dets) != 3:
            raise ValueError(f"MeanAveragePrecision: max_detection_thresholds must have 3 values, got {max_dets}")
        self.box_format = box_format
        self.iou_type = iou_type
        self.iou_thresholds = None if iou_thresholds is None else np.asarray(iou_thresholds, dtype=np.float64)
        self.rec_thresholds = None if rec_thresholds is None else np.asarray(rec_thresholds, dtype=np.float64)
        self.max_detection_thresholds = max_dets
        self.class_metrics = bool(class_metrics)
        self.dist_sync = dist_sync
        self.process_group = process_group
        self.reset()

    def reset(self) -> None:
        # one entry per image: (xywh float64 [N, 4] or RLEs, scores, labels) / (xywh, labels, iscrowd, area)
        self._dets: list[tuple] = []
        self._gts: list[tuple] = []

    # ---- update ----------------------------------------------------------------------------------
    def _geometry(self, item: dict, what: str, i: int):
        if self.iou_type == "bbox":
            boxes = item.get("boxes")
            if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
                shape = getattr(boxes, "shape", None)
                raise ValueError(
                    f"MeanAveragePrecision.update: {what}[{i}]['boxes'] must be a [N, 4] tensor, got {shape}"
                )
            if not boxes.is_floating_point():
                boxes = boxes.double()
            xywh = _to_xywh(boxes.detach(), self.box_format).cpu().double()
            return xywh, xywh.shape[0]
        masks = item.get("masks")
        if not isinstance(masks, Tensor) or masks.dim() != 3:
            raise ValueError(f"MeanAveragePrecision.update: {what}[{i}]['masks'] must be a [N, H, W] tensor")
        m = masks.detach().cpu().to(torch.uint8).transpose(1, 2).contiguous()  # [N, W, H]: column-major
        return RleBatch(*torch.ops.fastops.rle_encode(m)), masks.shape[0]

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
        return v.to(dtype)

    def update(self, preds: list[dict], target: list[dict]) -> None:
        """Adds one batch: preds and target are lists of equal length, one dict per image."""
        if not isinstance(preds, (list, tuple)) or not isinstance(target, (list, tuple)):
            raise ValueError("MeanAveragePrecision.update: preds and target must be lists of dicts")
        if len(preds) != len(target):
            raise ValueError(f"MeanAveragePrecision.update: {len(preds)} predictions but {len(target)} targets")
        for i, (p, t) in enumerate(zip(preds, target)):
            geo, n = self._geometry(p, "preds", i)
            scores = self._vector(p, "scores", n, "preds", i, torch.float64)
            labels = self._vector(p, "labels", n, "preds", i, torch.int64)
            tgeo, m = self._geometry(t, "target", i)
            tlabels = self._vector(t, "labels", m, "target", i, torch.int64)
            crowd = self._vector(t, "iscrowd", m, "target", i, torch.int64, default=0)
            area = self._vector(t, "area", m, "target", i, torch.float64, default=float("nan"))
            self._dets.append((geo, scores, labels))
            self._gts.append((tgeo, tlabels, crowd, area))

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
        classes = np.unique(np.concatenate([d_labels, g_labels]))
        d_img = np.repeat(np.arange(n_img, dtype=np.int64), det_counts)
        g_img = np.repeat(np.arange(n_img, dtype=np.int64), gt_counts)
        d_score = cat([s for _, s, _ in dets], np.float64)
        g_crowd = cat([c for _, _, c, _ in gts], np.int64)
        g_area = cat([a for _, _, _, a in gts], np.float64)
        if self.iou_type == "bbox":
            d_box = torch.cat([g for g, _, _ in dets]).numpy() if dets else np.zeros((0, 4))
            g_box = torch.cat([g for g, _, _, _ in gts]).numpy() if gts else np.zeros((0, 4))
            d_area = d_box[:, 2] * d_box[:, 3]
            box_area = g_box[:, 2] * g_box[:, 3]
            d_rles = g_rles = None
        else:
            d_rles = RleBatch.cat([g for g, _, _ in dets])
            g_rles = RleBatch.cat([g for g, _, _, _ in gts])
            d_area = torch.ops.fastops.rle_area(d_rles.counts, d_rles.offsets, d_rles.hw).numpy().view(np.uint32)
            d_area = d_area.astype(np.float64)
            box_area = torch.ops.fastops.rle_area(g_rles.counts, g_rles.offsets, g_rles.hw).numpy()
            box_area = box_area.view(np.uint32).astype(np.float64)
            d_box = np.zeros((len(d_score), 4))
            g_box = np.zeros((len(g_labels), 4))
        # a given area is used where it is > 0 (torchmetrics' rule), else the box's or mask's
        g_area = np.where(np.nan_to_num(g_area, nan=0.0) > 0, g_area, box_area)
        gcols = AnnotationColumns.from_arrays(
            id=np.arange(1, len(g_labels) + 1, dtype=np.int64),
            image_id=g_img,
            category_id=g_labels,
            bbox=g_box,
            area=g_area,
            crowd=(g_crowd != 0, g_crowd != 0, np.zeros(len(g_crowd), bool)),
        )
        dcols = AnnotationColumns.from_arrays(
            id=np.arange(1, len(d_score) + 1, dtype=np.int64),
            image_id=d_img,
            category_id=d_labels,
            bbox=d_box,
            area=d_area,
            score=d_score,
        )
        imgs = list(range(n_img))
        E = COCOeval(ArrayCOCO(gcols, imgs, classes, g_rles), ArrayCOCO(dcols, imgs, classes, d_rles), self.iou_type)
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
        names = [
            "map",
            "map_50",
            "map_75",
            "map_small",
            "map_medium",
            "map_large",
            f"mar_{md[0]}",
            f"mar_{md[1]}",
            f"mar_{md[2]}",
            "mar_small",
            "mar_medium",
            "mar_large",
        ]
        out = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in zip(names, stats)}
        if self.class_metrics and len(classes):
            prec = E.eval["precision"][:, :, :, 0, -1]
            rec = E.eval["recall"][:, :, 0, -1]
            map_pc, mar_pc = [], []
            for k in range(len(classes)):
                s, r = prec[:, :, k], rec[:, k]
                map_pc.append(np.mean(s[s > -1]) if (s > -1).any() else -1.0)
                mar_pc.append(np.mean(r[r > -1]) if (r > -1).any() else -1.0)
            out["map_per_class"] = torch.tensor(map_pc, dtype=torch.float64)
            out[f"mar_{md[2]}_per_class"] = torch.tensor(mar_pc, dtype=torch.float64)
        else:
            out["map_per_class"] = torch.tensor(-1.0, dtype=torch.float64)
            out[f"mar_{md[2]}_per_class"] = torch.tensor(-1.0, dtype=torch.float64)
        out["classes"] = torch.tensor(classes, dtype=torch.int32)
        return out

    def __call__(self, preds, target):
        self.update(preds, target)


def _pack(geo):
    """A picklable form of an image's boxes or RLE batch."""
    if isinstance(geo, RleBatch):
        return ("rle", geo.counts, geo.offsets, geo.hw)
    return ("box", geo)


def _unpack(x):
    return RleBatch(*x[1:]) if x[0] == "rle" else x[1]
