"""The backbone + classifier (+ auxiliary classifier) segmenter of torchvision's FCN and DeepLab v3
(``_SimpleSegmentationModel``): same submodules, state_dict keys and forward."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import DEFAULT_IGNORE_INDEX, Segmenter

__all__ = ["SimpleSegmentationModel"]


class SimpleSegmentationModel(Segmenter):
    """``backbone(images)`` returns a dict with ``"out"`` (and ``"aux"`` when ``aux_classifier`` is
    given); ``classifier`` (and ``aux_classifier``) turn them into logits, which are upsampled
    bilinearly (align_corners=False) to the input's size. ``forward`` returns {"out": Tensor[N,
    num_classes, H, W]} and, with the auxiliary classifier, "aux" of the same shape.

    The network runs in channels_last memory (``channels_last``, default True; the input is
    converted once, every layer keeps the layout, the logits come out in it): on the CPU oneDNN's
    convolutions are faster in it, and the fused cross-entropy reads the logits in place. The
    values are the same either way.

    Args: backbone, classifier, aux_classifier (torchvision's order); keyword-only: num_classes,
    in_channels (3), min_size (1), channels_last, criterion, ignore_index, loss_weights
    (``Segmenter``; the auxiliary loss's weight defaults to 0.5, torchvision's reference training).
    """

    def __init__(
        self,
        backbone: nn.Module,
        classifier: nn.Module,
        aux_classifier: nn.Module | None = None,
        *,
        num_classes: int,
        in_channels: int = 3,
        min_size: int = 1,
        channels_last: bool = True,
        criterion: nn.Module | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        loss_weights: Mapping[str, float] | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier
        self.num_classes, self.in_channels, self.min_size = num_classes, in_channels, min_size
        self.channels_last = channels_last
        self.init_loss(criterion, ignore_index, {"aux": 0.5, **(loss_weights or {})})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        input_shape = x.shape[-2:]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.backbone(x)
        result = {
            "out": F.interpolate(
                self.classifier(features["out"]), size=input_shape, mode="bilinear", align_corners=False
            )
        }
        if self.aux_classifier is not None:
            aux = self.aux_classifier(features["aux"])
            result["aux"] = F.interpolate(aux, size=input_shape, mode="bilinear", align_corners=False)
        return result
