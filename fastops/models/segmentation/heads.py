"""Segmentation heads on a backbone's feature map, laid out as torchvision's (same submodules and
state_dict keys): ``FCNHead`` and ``DeepLabHead`` (DeepLab v3: ASPP on fastops' fused atrous
convolutions), plus ``DeepLabV2Head`` (DeepLab v2's ASPP: parallel 3x3 atrous classifiers whose
logits are summed)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ...nn import ASPP, Conv2d

__all__ = ["DeepLabHead", "DeepLabV2Head", "FCNHead"]


class FCNHead(nn.Sequential):
    """torchvision's ``FCNHead``: 3x3 convolution to in_channels / 4, BatchNorm, ReLU, dropout 0.1,
    1x1 classifier. Input [N, in_channels, h, w] -> [N, channels, h, w]."""

    def __init__(self, in_channels: int, channels: int, *, path: str = "auto"):
        inter_channels = in_channels // 4
        super().__init__(
            Conv2d(in_channels, inter_channels, 3, padding=1, bias=False, path=path),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(),
            nn.Dropout(0.1),
            Conv2d(inter_channels, channels, 1, path=path),
        )


class DeepLabHead(nn.Sequential):
    """torchvision's ``DeepLabHead`` (DeepLab v3): ``ASPP`` (fastops.nn's: 256 channels per branch,
    the atrous branches fused) then a 3x3 convolution, BatchNorm, ReLU and a 1x1 classifier.

    ``atrous_rates``: (12, 24, 36) at output stride 8 (torchvision's), (6, 12, 18) at 16."""

    def __init__(
        self, in_channels: int, num_classes: int, atrous_rates: Sequence[int] = (12, 24, 36), *, path: str = "auto"
    ):
        super().__init__(
            ASPP(in_channels, 256, atrous_rates, path=path),
            Conv2d(256, 256, 3, padding=1, bias=False, path=path),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            Conv2d(256, num_classes, 1, path=path),
        )


class DeepLabV2Head(nn.Module):
    """DeepLab v2's ASPP (Chen et al., 2017, "ASPP-L"): one 3x3 atrous classifier per rate (each
    with a bias), applied in parallel to the features, their logits summed. ``classifiers.<i>`` is
    the branch at ``rates[i]``. Input [N, in_channels, h, w] -> [N, num_classes, h, w]."""

    def __init__(
        self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24), *, path: str = "auto"
    ):
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        if not self.rates or any(r <= 0 for r in self.rates):
            raise ValueError(f"rates must be positive and at least one, got {self.rates}")
        self.classifiers = nn.ModuleList(
            Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, path=path) for r in self.rates
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.classifiers[0](x)
        for classifier in self.classifiers[1:]:
            out = out + classifier(x)
        return out

    def extra_repr(self) -> str:
        return f"rates={self.rates}"
