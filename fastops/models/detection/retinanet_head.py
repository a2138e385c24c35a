"""RetinaNet's heads (Lin et al., 2017) with torchvision's names: a classification subnet (4
convolutions, then A x C logits per cell) and a box subnet (4 convolutions, then A x 4 offsets),
shared by every FPN level, and their losses: fastops' fused sigmoid focal loss over every anchor of
the batch in one call, and an L1 loss on the foreground anchors' box offsets, each normalized by
the image's number of foreground anchors and averaged over images (torchvision's values).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ...nn import Conv2d, Conv2dNormActivation
from ...ops import sigmoid_focal_loss
from ..components import BoxCoder, Matcher

__all__ = ["RetinaNetClassificationHead", "RetinaNetHead", "RetinaNetRegressionHead", "flatten_levels"]


def flatten_levels(per_level: list[Tensor], size: int) -> Tensor:
    """Head outputs Tensor[N, A * size, H_l, W_l] per level -> Tensor[N, sum_l H_l W_l A, size],
    ordered by level, then cell (row-major), then anchor (the anchors' order)."""
    out = []
    for x in per_level:
        n, _, h, w = x.shape
        out.append(x.view(n, -1, size, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, size))
    return torch.cat(out, dim=1)


def _conv_tower(in_channels: int, norm_layer) -> nn.Sequential:
    return nn.Sequential(*[Conv2dNormActivation(in_channels, in_channels, norm_layer=norm_layer) for _ in range(4)])


def _v1_names_to_v2(state_dict: dict, prefix: str) -> None:
    """torchvision's version-1 tower names (conv.{0,2,4,6}) -> conv.{i}.0."""
    for i in range(4):
        for kind in ("weight", "bias"):
            old_key = f"{prefix}conv.{2 * i}.{kind}"
            if old_key in state_dict:
                state_dict[f"{prefix}conv.{i}.0.{kind}"] = state_dict.pop(old_key)


class _VersionedHead(nn.Module):
    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        if local_metadata.get("version", None) is None or local_metadata["version"] < 2:
            _v1_names_to_v2(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)


class RetinaNetClassificationHead(_VersionedHead):
    """Class logits Tensor[N, sum_l H_l W_l A, num_classes] from FPN levels; the last bias starts
    at -log((1 - prior) / prior), so every class starts at probability ``prior_probability``."""

    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        prior_probability: float = 0.01,
        norm_layer: Callable[..., nn.Module] | None = None,
    ):
        super().__init__()
        self.conv = _conv_tower(in_channels, norm_layer)
        for layer in self.conv.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, 0)
        self.cls_logits = Conv2d(in_channels, num_anchors * num_classes, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability))
        self.num_classes = num_classes
        self.num_anchors = num_anchors

    def forward(self, x: list[Tensor]) -> Tensor:
        return flatten_levels([self.cls_logits(self.conv(f)) for f in x], self.num_classes)

    def compute_loss(self, logits: Tensor, matched_idxs: Tensor, gt_labels: Tensor) -> Tensor:
        """Focal loss of ``logits`` [N, A, C]; ``matched_idxs`` [N, A] (ground-truth index or a
        Matcher code), ``gt_labels`` [N, A] (the matched ground truth's label where matched)."""
        foreground = matched_idxs >= 0
        class_targets = torch.where(foreground, gt_labels, self.num_classes)  # background: no class
        class_targets = torch.where(matched_idxs == Matcher.BETWEEN_THRESHOLDS, -100, class_targets)
        num_foreground = foreground.sum(dim=1).clamp(min=1).to(logits.dtype)
        weight = (1.0 / num_foreground)[:, None].expand(foreground.shape)
        loss = sigmoid_focal_loss(logits, class_targets, reduction="sum", sample_weight=weight, ignore_index=-100)
        return loss / logits.shape[0]


class RetinaNetRegressionHead(_VersionedHead):
    """Box offsets Tensor[N, sum_l H_l W_l A, 4] from FPN levels (box coder weights 1, 1, 1, 1)."""

    def __init__(self, in_channels: int, num_anchors: int, norm_layer: Callable[..., nn.Module] | None = None):
        super().__init__()
        self.conv = _conv_tower(in_channels, norm_layer)
        self.bbox_reg = Conv2d(in_channels, num_anchors * 4, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.bbox_reg.weight, std=0.01)
        nn.init.zeros_(self.bbox_reg.bias)
        for layer in self.conv.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))

    def forward(self, x: list[Tensor]) -> Tensor:
        return flatten_levels([self.bbox_reg(self.conv(f)) for f in x], 4)

    def compute_loss(self, regression: Tensor, anchors: Tensor, matched_idxs: Tensor, gt_boxes: Tensor) -> Tensor:
        """L1 loss of ``regression`` [N, A, 4] on the foreground anchors; ``gt_boxes`` [N, A, 4]
        holds the matched ground truth's box where ``matched_idxs`` >= 0."""
        image, anchor = torch.where(matched_idxs >= 0)
        targets = self.box_coder.encode(gt_boxes[image, anchor], anchors[anchor])
        per_box = (regression[image, anchor] - targets).abs().sum(dim=1)
        num_foreground = torch.bincount(image, minlength=regression.shape[0]).clamp(min=1).to(regression.dtype)
        return (per_box / num_foreground[image]).sum() / max(1, regression.shape[0])


class RetinaNetHead(nn.Module):
    """Both subnets: ``forward`` returns {"cls_logits": [N, A_total, C], "bbox_regression": [N, A_total, 4]}."""

    def __init__(
        self, in_channels: int, num_anchors: int, num_classes: int, norm_layer: Callable[..., nn.Module] | None = None
    ):
        super().__init__()
        self.classification_head = RetinaNetClassificationHead(
            in_channels, num_anchors, num_classes, norm_layer=norm_layer
        )
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors, norm_layer=norm_layer)

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        return {"cls_logits": self.classification_head(x), "bbox_regression": self.regression_head(x)}
