"""The original FCN-32s, FCN-16s and FCN-8s (Long et al., 2015) on VGG-16.

VGG-16's classifier becomes convolutions (fc6: 7x7, padded by 3 so the map keeps pool5's size;
fc7: 1x1; ``convert_fc_to_conv`` initializes them from a classifier's weights), a 1x1 ``score_fr``
scores the classes at stride 32. FCN-32s upsamples that 32x. FCN-16s upsamples it 2x
(``upscore2``), adds the 1x1 scores of pool4 (``score_pool4``) and upsamples 16x; FCN-8s also
upsamples that sum 2x (``upscore_pool4``), adds pool3's scores (``score_pool3``) and upsamples 8x.
Upsampling is by fastops' transposed convolutions (kernel 2s, stride s, padding s/2), initialized
to bilinear interpolation and learned; the skip scores start at zero, so a fresh FCN-16s computes
what the FCN-32s it starts from computes, as in the paper's staged training.

Sizes: the convolutions are padded and each pool rounds down, so pool4 has 2h or 2h + 1 rows for
pool5's h; every upsampling is asked for the exact size of the map it is added to (the input's, at
the end) through its output size, so there is no cropping (the paper pads the input by 100 and
crops instead). Inputs must be at least 32x32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...nn import Conv2d, ConvTranspose2d
from ..backbones.vgg import VGG, vgg16
from ..fc_to_conv import convert_fc_to_conv
from ..weights import Weights, read_state_dict
from .base import DEFAULT_IGNORE_INDEX, Segmenter

__all__ = ["FCNVGG", "bilinear_kernel", "fcn8s_vgg16", "fcn16s_vgg16", "fcn32s_vgg16"]

VARIANTS = {"32s": 32, "16s": 16, "8s": 8}


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """[channels, channels, k, k] weights of a transposed convolution that upsamples each channel
    bilinearly (stride k / 2), as FCN initializes its upsampling layers."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt = 1 - (og - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    weight[range(channels), range(channels)] = filt[:, None] * filt[None, :]
    return weight.float()


def _upsample(num_classes: int, stride: int, path: str) -> ConvTranspose2d:
    up = ConvTranspose2d(
        num_classes, num_classes, 2 * stride, stride=stride, padding=stride // 2, bias=False, path=path
    )
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(num_classes, 2 * stride))
    return up


def _score(in_channels: int, num_classes: int, path: str) -> Conv2d:
    score = Conv2d(in_channels, num_classes, 1, path=path)
    nn.init.zeros_(score.weight)
    nn.init.zeros_(score.bias)
    return score


class FCNVGG(Segmenter):
    """FCN-32s / 16s / 8s (module docstring). ``forward`` returns logits [N, num_classes, H, W].

    Args:
        backbone: a ``VGG`` returning "pool5" (and "pool4" for 16s, "pool3" for 8s).
        variant: "32s", "16s" or "8s".
        num_classes: classes (21: VOC with background).
        fc_channels: fc6/fc7's width (4096, VGG's).
        fc: optional (fc6, fc7) convolutions to use, e.g. from ``convert_fc_to_conv``.
        path, criterion, ignore_index: as the other segmenters.
    """

    def __init__(
        self,
        backbone: VGG,
        *,
        variant: str = "8s",
        num_classes: int = 21,
        fc_channels: int = 4096,
        fc: tuple[nn.Module, nn.Module] | None = None,
        dropout: float = 0.5,
        path: str = "auto",
        criterion: nn.Module | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
        self.variant, self.num_classes, self.in_channels, self.min_size = variant, num_classes, 3, 32
        self.backbone = backbone
        pool5 = backbone.out_channels["pool5"]
        fc6, fc7 = fc if fc is not None else (Conv2d(pool5, fc_channels, 7, padding=3, path=path), None)
        if fc7 is None:
            fc7 = Conv2d(fc_channels, fc_channels, 1, path=path)
        self.fc = nn.Sequential(
            fc6, nn.ReLU(inplace=True), nn.Dropout2d(dropout), fc7, nn.ReLU(inplace=True), nn.Dropout2d(dropout)
        )
        self.score_fr = _score(fc7.out_channels, num_classes, path)
        if variant in ("16s", "8s"):
            self.upscore2 = _upsample(num_classes, 2, path)
            self.score_pool4 = _score(backbone.out_channels["pool4"], num_classes, path)
        if variant == "8s":
            self.upscore_pool4 = _upsample(num_classes, 2, path)
            self.score_pool3 = _score(backbone.out_channels["pool3"], num_classes, path)
        self.upscore = _upsample(num_classes, VARIANTS[variant], path)
        self.init_loss(criterion, ignore_index)

    def forward(self, images: Tensor) -> Tensor:
        features = self.backbone(images)
        score = self.score_fr(self.fc(features["pool5"]))
        if self.variant != "32s":
            pool4 = features["pool4"]
            score = self.upscore2(score, output_size=list(pool4.shape[-2:])) + self.score_pool4(pool4)
        if self.variant == "8s":
            pool3 = features["pool3"]
            score = self.upscore_pool4(score, output_size=list(pool3.shape[-2:])) + self.score_pool3(pool3)
        return self.upscore(score, output_size=list(images.shape[-2:]))


def _fcn_vgg16(
    variant: str,
    num_classes: int,
    weights_backbone: Weights | None,
    width_scale: int,
    fc_channels: int,
    path: str,
    criterion: nn.Module | None,
    ignore_index: int,
) -> FCNVGG:
    pools = {"32s": ["pool5"], "16s": ["pool4", "pool5"], "8s": ["pool3", "pool4", "pool5"]}[variant]
    fc = None
    if weights_backbone is not None:
        state = read_state_dict(weights_backbone)
        if "classifier.6.weight" not in state:
            raise ValueError("weights_backbone: expected a VGG-16 classifier's state_dict (with classifier.*)")
        converted = convert_fc_to_conv(vgg16(weights=state, width_scale=width_scale)).classifier
        fc6, fc7 = converted[0], converted[3]
        fc6.padding, fc6.path, fc7.path = (3, 3), path, path
        fc, fc_channels = (fc6, fc7), fc7.out_channels
        backbone = vgg16(weights=state, num_classes=None, width_scale=width_scale, return_layers=pools, path=path)
    else:
        backbone = vgg16(width_scale=width_scale, return_layers=pools, path=path)
    return FCNVGG(
        backbone,
        variant=variant,
        num_classes=num_classes,
        fc_channels=fc_channels,
        fc=fc,
        path=path,
        criterion=criterion,
        ignore_index=ignore_index,
    )


def fcn32s_vgg16(
    *,
    num_classes: int = 21,
    weights_backbone: Weights | None = None,
    width_scale: int = 1,
    fc_channels: int = 4096,
    path: str = "auto",
    criterion: nn.Module | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
) -> FCNVGG:
    """FCN-32s on VGG-16 (``FCNVGG``).

    Args:
        num_classes: classes (21: VOC with background).
        weights_backbone: a torchvision ``vgg16`` state_dict or path, classifier included: the
            features load as they are, fc6/fc7 from the classifier through ``convert_fc_to_conv``.
        width_scale: divides VGG's widths (a narrow network for a CPU); fc_channels: fc6/fc7's width
            without weights (VGG's 4096).
        path, criterion, ignore_index: as the other segmenters.
    """
    return _fcn_vgg16("32s", num_classes, weights_backbone, width_scale, fc_channels, path, criterion, ignore_index)


def fcn16s_vgg16(
    *,
    num_classes: int = 21,
    weights_backbone: Weights | None = None,
    width_scale: int = 1,
    fc_channels: int = 4096,
    path: str = "auto",
    criterion: nn.Module | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
) -> FCNVGG:
    """FCN-16s on VGG-16 (arguments as ``fcn32s_vgg16``)."""
    return _fcn_vgg16("16s", num_classes, weights_backbone, width_scale, fc_channels, path, criterion, ignore_index)


def fcn8s_vgg16(
    *,
    num_classes: int = 21,
    weights_backbone: Weights | None = None,
    width_scale: int = 1,
    fc_channels: int = 4096,
    path: str = "auto",
    criterion: nn.Module | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
) -> FCNVGG:
    """FCN-8s on VGG-16 (arguments as ``fcn32s_vgg16``)."""
    return _fcn_vgg16("8s", num_classes, weights_backbone, width_scale, fc_channels, path, criterion, ignore_index)
