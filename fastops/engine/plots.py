"""Pictures (PNG, matplotlib with its non-interactive Agg backend, imported on first use):
detections (boxes, labels, scores, masks) drawn on an image, semantic maps and multi-label scores
beside their image, precision-recall curves (``fastops.metrics.plot_pr_curves``), and training
curves (loss per step, metrics per epoch)."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from ..metrics import plot_pr_curves
from .errors import EngineError

__all__ = [
    "MissingPlotLibrary",
    "draw_detections",
    "draw_multilabel",
    "draw_segmentation",
    "plot_pr",
    "plot_training_curves",
]

METRIC_PREFIXES = ("map", "miou", "macro", "micro", "pixel", "segm")  # the evaluators' keys
COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990", "#9a6324"]


class MissingPlotLibrary(EngineError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingPlotLibrary(
            "pictures need matplotlib: pip install matplotlib (or the extra: pip install 'fastops[cli]')"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _image(image: Tensor):
    return image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def _name(names, label: int) -> str:
    return names[label - 1] if names and 1 <= label <= len(names) else str(label)


def _save(fig, path: str) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)


def draw_detections(
    images: list[Tensor], preds: list[dict], path: str, *, class_names=None, score_thresh: float = 0.5, columns: int = 4
) -> None:
    """One panel per image: its detections with score >= ``score_thresh`` (boxes xyxy, "label score",
    masks as a tinted overlay)."""
    plt = _pyplot()
    n = len(images)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, pred in zip(axes.flat, images, preds):
        picture = _image(image)
        pred = {k: v.detach().cpu() for k, v in pred.items() if isinstance(v, torch.Tensor)}
        keep = pred["scores"] >= score_thresh
        boxes, labels, scores = pred["boxes"][keep], pred["labels"][keep], pred["scores"][keep]
        if "masks" in pred:
            for mask, label in zip(pred["masks"][keep], labels):
                m = mask.reshape(mask.shape[-2:]).numpy() > 0.5
                rgb = torch.tensor(_rgb(COLORS[int(label) % len(COLORS)])).numpy()
                picture[m] = 0.55 * picture[m] + 0.45 * rgb
        ax.imshow(picture)
        for box, label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
            color = COLORS[label % len(COLORS)]
            x1, y1, x2, y2 = box
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=color, linewidth=1.5))
            ax.text(
                x1,
                y1,
                f"{_name(class_names, label)} {score:.2f}",
                color="white",
                fontsize=7,
                bbox={"facecolor": color, "alpha": 0.8, "pad": 1, "linewidth": 0},
                va="bottom",
            )
    _save(fig, path)


def _rgb(hex_color: str) -> list[float]:
    return [int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)]


def draw_segmentation(images: Tensor, preds: Tensor, path: str, *, num_classes: int) -> None:
    """Each image beside its predicted class map (class 0, background, black)."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["#000000", *[COLORS[c % len(COLORS)] for c in range(1, num_classes + 1)]])
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(6, 3 * n), squeeze=False)
    for row, image, pred in zip(axes, images, preds):
        row[0].imshow(_image(image))
        row[1].imshow(pred.cpu().numpy(), cmap=cmap, vmin=0, vmax=num_classes, interpolation="nearest")
        for ax in row:
            ax.axis("off")
    _save(fig, path)


def draw_multilabel(images: Tensor, scores: Tensor, path: str, *, class_names=None, columns: int = 4) -> None:
    """One panel per image, titled with its labels scored >= 0.5 (and their scores)."""
    plt = _pyplot()
    n = len(images)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, s in zip(axes.flat, images, scores.cpu()):
        ax.imshow(_image(image))
        shown = [
            f"{_name(class_names, c + 1)} {float(s[c]):.2f}"
            for c in torch.argsort(s, descending=True).tolist()
            if s[c] >= 0.5
        ]
        ax.set_title("\n".join(shown) or "(none)", fontsize=7)
    _save(fig, path)


def plot_pr(curves: dict, path: str, *, class_names=None, title: str = "precision-recall (IoU 0.5)") -> None:
    """The per-class precision-recall curves of ``fastops.metrics.voc_evaluate(...)["curves"]``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    names = {c: _name(class_names, c) for c in curves}
    with warnings.catch_warnings():  # no curve at all (no detections): an empty legend is fine
        warnings.simplefilter("ignore", UserWarning)
        plot_pr_curves(curves, ax=ax, names=names)
    ax.set_title(title)
    _save(fig, path)


def plot_training_curves(steps: list[dict], epochs: list[dict], path: str) -> None:
    """Loss per step (and its running mean) and, per epoch, every evaluation metric."""
    plt = _pyplot()
    metric_names = sorted({k for r in epochs for k in r if k.startswith(METRIC_PREFIXES)})
    fig, axes = plt.subplots(1, 2 if metric_names else 1, figsize=(11 if metric_names else 6, 4), squeeze=False)
    ax = axes[0, 0]
    x = [r["step"] for r in steps]
    y = [r["loss"] for r in steps]
    ax.plot(x, y, alpha=0.35, label="loss")
    window = max(1, len(y) // 20)
    if len(y) > window:
        smooth = [sum(y[max(0, i - window + 1) : i + 1]) / min(i + 1, window) for i in range(len(y))]
        ax.plot(x, smooth, label=f"running mean ({window})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log" if y and min(y) > 0 else "linear")
    ax.legend(fontsize="small")
    if metric_names:
        ax = axes[0, 1]
        for name in metric_names:
            points = [(r["step"], r[name]) for r in epochs if name in r]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("validation")
        ax.set_ylim(0, 1)
        ax.legend(fontsize="small")
    _save(fig, path)
