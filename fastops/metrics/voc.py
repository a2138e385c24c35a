"""PASCAL VOC detection metrics: per-class AP with 11-point (VOC2007) or all-point (VOC2010+)
interpolation, the difficult flag, precision-recall curves and a plot, and a detection confusion
matrix.

Matching is the devkit's (VOCevaldet.m), in C++ (``torch.ops.fastops.voc_match``), one thread per
class: detections of a class in decreasing confidence (stable); each takes the ground truth of its
image with the largest IoU; IoU >= iou_threshold makes it a true positive if that GT is not
difficult and not yet taken (else a duplicate: false positive); a difficult GT makes it neither.
Boxes are x1, y1, x2, y2, with the devkit's inclusive pixel sizes (x2 - x1 + 1) unless
``pixel_plus_one=False``. Recall is tp / npos (non-difficult GT), precision tp / max(tp + fp, eps),
in float64 (numpy), and the AP formulas are the devkit's (``voc_ap``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .columns import sorted_unique

__all__ = ["detection_confusion_matrix", "plot_pr_curves", "voc_ap", "voc_evaluate"]


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = False) -> float:
    """AP from a precision-recall curve (float64 arrays in detection order): the VOC2007
    11-point interpolation (max precision at recall >= t for t = 0, 0.1, ..., 1, averaged), or the
    area under the monotone envelope of the curve (VOC2010 onwards)."""
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope, right to left
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _labels(v, what: str) -> np.ndarray:
    """Integer class labels (int or bool tensors, or floats that are integers) -> int64."""
    if v.is_floating_point():
        if not bool(torch.all((v == torch.floor(v)) & (v.abs() < 2**62))):  # NaN fails too
            bad = v[v != torch.floor(v)][0].item()
            raise ValueError(f"voc_evaluate: {what} must be integer class labels, got {bad}")
    elif v.is_complex():
        raise TypeError(f"voc_evaluate: {what} must be integer class labels, got {v.dtype}")
    return v.long().numpy()


def _image(item, i: int, what: str, keys: tuple) -> dict:
    """One image's dict checked: boxes [N, 4] and every other field with N entries."""
    if not isinstance(item, dict):
        raise TypeError(f"voc_evaluate: {what}[{i}] must be a dict, got {type(item).__name__}")
    out = {}
    for k in keys:
        if k not in item:
            if k == "difficult":
                continue
            raise KeyError(f"voc_evaluate: {what}[{i}] has no {k!r}")
        try:
            v = torch.as_tensor(item[k]).detach().cpu()
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"voc_evaluate: {what}[{i}][{k!r}] must be a tensor or array of numbers: {e}") from None
        if k == "boxes":
            if not (v.dim() == 2 and v.shape[1] == 4) and not (v.numel() == 0):
                raise ValueError(f"voc_evaluate: {what}[{i}]['boxes'] must have shape [N, 4], got {tuple(v.shape)}")
            v = v.reshape(-1, 4)
        elif v.dim() > 1:
            raise ValueError(f"voc_evaluate: {what}[{i}][{k!r}] must be 1-D, got shape {tuple(v.shape)}")
        out[k] = v.reshape(-1, 4) if k == "boxes" else v.reshape(-1)
    n = len(out["boxes"])
    for k, v in out.items():
        if len(v) != n:
            raise ValueError(
                f"voc_evaluate: {what}[{i}] has {n} boxes but {len(v)} {k!r}; every field needs one entry per box"
            )
    return out


def _flatten(items: list, what: str, keys: tuple):
    """(image index per box, concatenated fields) of a list of per-image dicts, each checked."""
    checked = [_image(it, i, what, keys) for i, it in enumerate(items)]
    counts = [len(c["boxes"]) for c in checked]
    img = np.repeat(np.arange(len(items), dtype=np.int64), counts)
    out = {}
    for k in keys:
        if k == "difficult":  # per image, absent: none is difficult
            vals = [c.get(k, torch.zeros(n, dtype=torch.bool)).bool() for c, n in zip(checked, counts)]
        elif k == "labels":
            vals = [torch.from_numpy(_labels(c[k], f"{what}[{i}]['labels']")) for i, c in enumerate(checked)]
        else:
            vals = [c[k].double() for c in checked]
        out[k] = torch.cat(vals) if vals else None
    return img, out


def voc_evaluate(
    preds: list[dict],
    targets: list[dict],
    *,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    pixel_plus_one: bool = True,
) -> dict:
    """VOC AP per class and its mean.

    Args:
        preds: one dict per image: "boxes" [N, 4] x1 y1 x2 y2, "scores" [N], "labels" [N] int.
        targets: one dict per image: "boxes" [M, 4], "labels" [M], optional "difficult" [M] bool.
        Each image's fields must have one entry per box (ValueError naming the image otherwise);
        labels must be integers.

    Returns dict: "classes" (int64 [C], every label seen), "ap" (float64 [C]; NaN for a class with no
    non-difficult ground truth), "map" (mean over the classes with ground truth), and "curves":
    {class: {"precision", "recall", "scores"}} (float64 arrays in decreasing score order).
    """
    if len(preds) != len(targets):
        raise ValueError(f"voc_evaluate: {len(preds)} predictions but {len(targets)} targets")
    n_img = len(targets)
    d_img, d = _flatten(preds, "preds", ("boxes", "scores", "labels"))
    g_img, g = _flatten(targets, "targets", ("boxes", "labels", "difficult"))
    d_box = d["boxes"].numpy().reshape(-1, 4) if d["boxes"] is not None else np.zeros((0, 4))
    g_box = g["boxes"].numpy().reshape(-1, 4) if g["boxes"] is not None else np.zeros((0, 4))
    d_lab = d["labels"].numpy() if d["labels"] is not None else np.zeros(0, np.int64)
    g_lab = g["labels"].numpy() if g["labels"] is not None else np.zeros(0, np.int64)
    d_score = d["scores"].numpy() if d["scores"] is not None else np.zeros(0)
    g_diff = g["difficult"].numpy() if g["difficult"] is not None else np.zeros(0, bool)
    classes = sorted_unique(np.concatenate([d_lab, g_lab]))
    C = len(classes)
    d_cls = np.searchsorted(classes, d_lab)
    g_cls = np.searchsorted(classes, g_lab)
    # detections by class, then decreasing score (stable; NaN last)
    key = np.where(np.isnan(d_score), np.inf, -d_score)
    order = np.lexsort((key, d_cls)) if len(d_cls) else np.zeros(0, np.int64)
    d_off = np.zeros(C + 1, np.int64)
    np.cumsum(np.bincount(d_cls, minlength=C), out=d_off[1:])
    gkey = g_cls * n_img + g_img
    g_order = np.argsort(gkey, kind="stable")
    g_off = np.zeros(C * n_img + 1, np.int64)
    np.cumsum(np.bincount(gkey, minlength=C * n_img), out=g_off[1:])
    t = torch.from_numpy
    tp, fp = torch.ops.fastops.voc_match(
        t(g_off),
        t(np.ascontiguousarray(g_box[g_order])),
        t(g_diff[g_order].copy()),
        t(d_off),
        t(np.ascontiguousarray(d_box[order])),
        t(d_img[order].copy()),
        n_img,
        float(iou_threshold),
        bool(pixel_plus_one),
    )
    tp, fp = tp.numpy(), fp.numpy()
    npos = np.bincount(g_cls[~g_diff], minlength=C)
    aps = np.full(C, np.nan)
    curves = {}
    for c in range(C):
        s = slice(d_off[c], d_off[c + 1])
        tpc = np.cumsum(tp[s], dtype=np.float64)
        fpc = np.cumsum(fp[s], dtype=np.float64)
        prec = tpc / np.maximum(tpc + fpc, np.finfo(np.float64).eps)
        rec = tpc / npos[c] if npos[c] > 0 else np.full_like(tpc, np.nan)
        curves[int(classes[c])] = {"precision": prec, "recall": rec, "scores": d_score[order[s]]}
        if npos[c] > 0:
            aps[c] = voc_ap(rec, prec, use_07_metric)
    valid = ~np.isnan(aps)
    return {
        "classes": classes,
        "ap": aps,
        "map": float(np.mean(aps[valid])) if valid.any() else float("nan"),
        "curves": curves,
    }


def plot_pr_curves(curves: dict, ax=None, names: dict | None = None):
    """Precision-recall curves of ``voc_evaluate(...)["curves"]`` on a matplotlib axis (matplotlib is
    imported here, only when plotting). Returns the axis."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    for c, cv in curves.items():
        if len(cv["recall"]) and not np.isnan(cv["recall"]).all():
            ax.plot(cv["recall"], cv["precision"], label=(names or {}).get(c, str(c)))
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize="small")
    return ax


def _box_iou_xyxy(a: Tensor, b: Tensor) -> Tensor:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def detection_confusion_matrix(
    preds: list[dict],
    targets: list[dict],
    num_classes: int,
    *,
    iou_threshold: float = 0.45,
    score_threshold: float = 0.25,
) -> Tensor:
    """Confusion matrix of detections, int64 [num_classes + 1, num_classes + 1]: rows the predicted
    class, columns the true class, index num_classes = background (a missed GT is counted in the
    background row, a false detection in the background column). Detections below score_threshold
    are dropped; GT and detections are paired one-to-one by decreasing IoU (> iou_threshold),
    regardless of class, as YOLO's validation does. Labels must be in [0, num_classes)."""
    m = torch.zeros(num_classes + 1, num_classes + 1, dtype=torch.int64)
    bg = num_classes
    for p, t in zip(preds, targets):
        keep = p["scores"] >= score_threshold
        db, dl = p["boxes"][keep].double().cpu(), p["labels"][keep].long().cpu()
        gb, gl = t["boxes"].double().cpu(), t["labels"].long().cpu()
        for labels in (dl, gl):
            if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"detection_confusion_matrix: labels must be in [0, {num_classes})")
        matched_g = torch.zeros(len(gl), dtype=torch.bool)
        matched_d = torch.zeros(len(dl), dtype=torch.bool)
        if len(gl) and len(dl):
            iou = _box_iou_xyxy(gb, db)
            gi, di = torch.nonzero(iou > iou_threshold, as_tuple=True)
            if len(gi):
                vals = iou[gi, di]
                order = torch.argsort(vals, descending=True, stable=True)
                for g_, d_ in zip(gi[order].tolist(), di[order].tolist()):
                    if not matched_g[g_] and not matched_d[d_]:
                        matched_g[g_] = matched_d[d_] = True
                        m[dl[d_], gl[g_]] += 1
        m[bg].index_add_(0, gl[~matched_g], torch.ones(int((~matched_g).sum()), dtype=torch.int64))
        m[:, bg].index_add_(0, dl[~matched_d], torch.ones(int((~matched_d).sum()), dtype=torch.int64))
    return m
