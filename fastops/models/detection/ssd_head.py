"""SSD's heads with torchvision's names (``classification_head.module_list.<k>``,
``regression_head.module_list.<k>``): per feature map, one 3x3 convolution to A_k x C class logits
and one to A_k x 4 box offsets, flattened into the default boxes' order."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ...nn import Conv2d
from .retinanet_head import flatten_levels

__all__ = ["SSDClassificationHead", "SSDHead", "SSDRegressionHead", "SSDScoringHead"]


class SSDScoringHead(nn.Module):
    """One convolution per feature map (``module_list``); outputs Tensor[N, sum_k H_k W_k A_k, num_columns]."""

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], num_columns: int, path: str = "auto"):
        super().__init__()
        if len(in_channels) != len(num_anchors):
            raise ValueError(
                f"in_channels and num_anchors: one per feature map each, got {len(in_channels)} and {len(num_anchors)}"
            )
        self.module_list = nn.ModuleList(
            Conv2d(c, num_columns * a, kernel_size=3, padding=1, path=path) for c, a in zip(in_channels, num_anchors)
        )
        for conv in self.module_list:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.num_columns = num_columns

    def forward(self, x: Sequence[Tensor]) -> Tensor:
        if len(x) != len(self.module_list):
            raise ValueError(f"SSD head: {len(self.module_list)} feature maps expected, got {len(x)}")
        return flatten_levels([conv(f) for conv, f in zip(self.module_list, x)], self.num_columns)


class SSDClassificationHead(SSDScoringHead):
    """Class logits (background is class 0) per default box."""

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int, path: str = "auto"):
        super().__init__(in_channels, num_anchors, num_classes, path)


class SSDRegressionHead(SSDScoringHead):
    """Box offsets (the box coder's parametrization) per default box."""

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], path: str = "auto"):
        super().__init__(in_channels, num_anchors, 4, path)


class SSDHead(nn.Module):
    """Both heads: ``forward(features)`` returns {"bbox_regression": Tensor[N, A, 4],
    "cls_logits": Tensor[N, A, num_classes]}."""

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int, path: str = "auto"):
        super().__init__()
        self.classification_head = SSDClassificationHead(in_channels, num_anchors, num_classes, path)
        self.regression_head = SSDRegressionHead(in_channels, num_anchors, path)

    def forward(self, x: Sequence[Tensor]) -> dict[str, Tensor]:
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}
