"""Multi-label image classification: a backbone, global average pooling and one logit per label,
each label an independent binary problem (sigmoid).

- ``model(images)`` returns logits Tensor[N, num_labels], in either mode.
- ``model.loss(images, targets, sample_weight=None)`` returns {"loss": scalar}: binary
  cross-entropy with per-label weights (``class_weight``, e.g. from label frequencies:
  ``multilabel_classifier(..., label_counts=...)``), per-label positive weights (``pos_weight``)
  and per-sample weights, or the sigmoid focal loss (``loss="focal"``), on fastops' fused kernels.
- ``model.predict(images)`` returns {"scores": sigmoid probabilities [N, L], "labels": bool [N, L]},
  a label predicted where its score reaches its threshold (``thresholds``, a buffer; 0.5 until set,
  e.g. from ``fastops.metrics.f1_optimal_thresholds`` on validation data).

``targets``: Tensor[N, num_labels] of 0/1 (bool, integer or float; float in [0, 1] for soft labels).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ...ops import focal_loss as losses

__all__ = ["LOSSES", "MultiLabelClassifier", "multilabel_classifier"]

LOSSES = ("bce", "focal")


class MultiLabelClassifier(nn.Module):
    """Backbone, global average pooling, dropout, ``nn.Linear(in_features, num_labels)``.

    Args:
        backbone: a module mapping images [N, C, H, W] to a feature map [N, F, h, w] or a dict of
            them (``feature_name`` picks one; default: the last entry).
        num_labels: labels.
        in_features: F (default: ``backbone.out_channels[feature_name]`` when the backbone reports it).
        in_channels: the images' channels (3).
        dropout: before the classifier.
        loss: "bce" (weighted binary cross-entropy) or "focal" (sigmoid focal loss).
        class_weight, pos_weight: Tensor[num_labels] or None (buffers); gamma, alpha: the focal loss's.
        thresholds: Tensor[num_labels] or a float (default 0.5).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_labels: int,
        *,
        feature_name: str | None = None,
        in_features: int | None = None,
        in_channels: int = 3,
        dropout: float = 0.0,
        loss: str = "bce",
        class_weight: Tensor | None = None,
        pos_weight: Tensor | None = None,
        gamma: float = 2.0,
        alpha: float = 0.25,
        thresholds: Tensor | float = 0.5,
    ):
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels must be at least 1, got {num_labels}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if loss == "focal" and pos_weight is not None:
            raise ValueError("pos_weight applies to loss='bce' only")
        if in_features is None:
            channels = getattr(backbone, "out_channels", None)
            if isinstance(channels, Mapping) and channels:
                in_features = channels[feature_name if feature_name is not None else list(channels)[-1]]
            else:
                raise ValueError("in_features: required when the backbone does not report out_channels")
        self.backbone, self.feature_name = backbone, feature_name
        self.num_labels, self.in_channels = num_labels, in_channels
        self.loss_kind, self.gamma, self.alpha = loss, gamma, alpha
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_features, num_labels)
        for name, value in (("class_weight", class_weight), ("pos_weight", pos_weight)):
            if value is not None and tuple(value.shape) != (num_labels,):
                raise ValueError(f"{name} must have shape [{num_labels}], got {list(value.shape)}")
            self.register_buffer(name, None if value is None else value.detach().float().clone())
        self.register_buffer("thresholds", torch.empty(num_labels))
        self.set_thresholds(thresholds)

    def set_thresholds(self, thresholds: Tensor | float) -> None:
        """Per-label decision thresholds for ``predict`` (a float sets every label's)."""
        value = torch.as_tensor(thresholds, dtype=torch.float32)
        if value.dim() == 0:
            value = value.expand(self.num_labels)
        if tuple(value.shape) != (self.num_labels,):
            raise ValueError(f"thresholds must be a float or have shape [{self.num_labels}], got {list(value.shape)}")
        self.thresholds.copy_(value)

    def _check_images(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != self.in_channels:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images: expected a Tensor[N, {self.in_channels}, H, W], got {shape}")
        if not images.is_floating_point():
            raise TypeError(f"images: expected a floating-point tensor, got dtype {images.dtype}")
        return images

    def forward(self, images: Tensor) -> Tensor:
        features = self.backbone(images)
        if isinstance(features, Mapping):
            features = features[self.feature_name] if self.feature_name is not None else list(features.values())[-1]
        if features.dim() == 4:
            features = features.mean((2, 3))
        return self.classifier(self.dropout(features))

    def loss(self, images: Tensor, targets: Tensor, sample_weight: Tensor | None = None) -> dict[str, Tensor]:
        """{"loss": the mean over labels and samples}; either mode (module docstring)."""
        images = self._check_images(images)
        n = images.shape[0]
        if not isinstance(targets, Tensor) or tuple(targets.shape) != (n, self.num_labels):
            shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ValueError(f"targets: expected shape {(n, self.num_labels)} (0/1 per label), got {shape}")
        if targets.is_complex():
            raise TypeError(f"targets: expected 0/1 values, got dtype {targets.dtype}")
        dense = targets.float()
        if not torch.compiler.is_compiling() and ((dense < 0) | (dense > 1)).any():
            raise ValueError("targets: values must be in [0, 1]")
        if sample_weight is not None and tuple(sample_weight.shape) != (n,):
            raise ValueError(f"sample_weight: expected shape ({n},), got {tuple(sample_weight.shape)}")
        logits = self(images)
        dense = dense.to(device=logits.device, dtype=logits.dtype)
        if self.loss_kind == "focal":
            value = losses.sigmoid_focal_loss(
                logits,
                dense,
                self.alpha,
                self.gamma,
                "mean",
                class_weight=self.class_weight,
                sample_weight=sample_weight,
            )
        else:
            value = losses.weighted_bce_with_logits(
                logits,
                dense,
                pos_weight=self.pos_weight,
                class_weight=self.class_weight,
                sample_weight=sample_weight,
                reduction="mean",
            )
        return {"loss": value}

    @torch.no_grad()
    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """{"scores": [N, L] probabilities, "labels": bool [N, L]}; either mode."""
        scores = torch.sigmoid(self(self._check_images(images)))
        return {"scores": scores, "labels": scores >= self.thresholds.to(scores.dtype)}


def multilabel_classifier(
    backbone: nn.Module,
    num_labels: int,
    *,
    label_counts: Tensor | None = None,
    num_samples: int | None = None,
    weighting: str = "inverse",
    loss: str = "bce",
    **kwargs,
) -> MultiLabelClassifier:
    """A multi-label classifier on ``backbone`` (``MultiLabelClassifier``'s keyword arguments).

    With ``label_counts`` (Tensor[num_labels], each label's positives in the training set), the
    labels' weights come from their frequencies: ``class_weight = fastops.class_weights(label_counts,
    weighting)`` ("inverse", "inverse_sqrt" or "effective_number": rare labels weigh more), and with
    ``num_samples`` too, for loss "bce", ``pos_weight = negatives / positives`` per label
    (``F.binary_cross_entropy_with_logits``'s recipe)."""
    if label_counts is not None:
        counts = torch.as_tensor(label_counts)
        if tuple(counts.shape) != (num_labels,):
            raise ValueError(f"label_counts must have shape [{num_labels}], got {list(counts.shape)}")
        kwargs.setdefault("class_weight", losses.class_weights(counts, weighting))
        if num_samples is not None and loss == "bce":
            positives = counts.double().clamp(min=1)
            kwargs.setdefault("pos_weight", ((num_samples - counts.double()).clamp(min=0) / positives).float())
    return MultiLabelClassifier(backbone, num_labels, loss=loss, **kwargs)
