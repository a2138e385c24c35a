"""Mask R-CNN (He et al., 2017) as torchvision's ``MaskRCNN``: Faster R-CNN with a mask branch
(4 convolutions on 14 x 14 RoIAlign features, a 2x transposed convolution, per-class 28 x 28
logits); the same constructor arguments, module names and detections, masks pasted into each
original image.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from torch import nn

from ...nn import Conv2d, Conv2dNormActivation, ConvTranspose2d, MultiScaleRoIAlign
from .faster_rcnn import FasterRCNN

__all__ = ["MaskRCNN", "MaskRCNNHeads", "MaskRCNNPredictor"]


class MaskRCNNHeads(nn.Sequential):
    """3x3 convolutions with ReLU (torchvision's names ``{i}.0``)."""

    _version = 2

    def __init__(
        self,
        in_channels: int,
        layers: Sequence[int],
        dilation: int,
        norm_layer: Callable[..., nn.Module] | None = None,
    ):
        blocks, channels = [], in_channels
        for out in layers:
            blocks.append(
                Conv2dNormActivation(
                    channels, out, kernel_size=3, stride=1, padding=dilation, dilation=dilation, norm_layer=norm_layer
                )
            )
            channels = out
        super().__init__(*blocks)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        if local_metadata.get("version", None) is None or local_metadata["version"] < 2:
            for i in range(len(self)):  # torchvision's version-1 names mask_fcn{i + 1}
                for kind in ("weight", "bias"):
                    if f"{prefix}mask_fcn{i + 1}.{kind}" in state_dict:
                        state_dict[f"{prefix}{i}.0.{kind}"] = state_dict.pop(f"{prefix}mask_fcn{i + 1}.{kind}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)


class MaskRCNNPredictor(nn.Sequential):
    """2x upsampling by a transposed convolution, ReLU, then one logit map per class."""

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int):
        super().__init__(
            OrderedDict(
                [
                    ("conv5_mask", ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("mask_fcn_logits", Conv2d(dim_reduced, num_classes, 1, 1, 0)),
                ]
            )
        )
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


class MaskRCNN(FasterRCNN):
    """Faster R-CNN's arguments, plus ``mask_roi_pool``, ``mask_head`` and ``mask_predictor``
    (torchvision's defaults when None). Targets need ``masks`` Tensor[K, H, W] per image."""

    needs_masks = True

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int | None = None,
        *args,
        mask_roi_pool: nn.Module | None = None,
        mask_head: nn.Module | None = None,
        mask_predictor: nn.Module | None = None,
        **kwargs,
    ):
        if num_classes is not None and mask_predictor is not None:
            raise ValueError("num_classes should be None when mask_predictor is specified")
        super().__init__(backbone, num_classes, *args, **kwargs)
        out_channels = backbone.out_channels
        self.roi_heads.mask_roi_pool = mask_roi_pool or MultiScaleRoIAlign(
            ["0", "1", "2", "3"], output_size=14, sampling_ratio=2
        )
        self.roi_heads.mask_head = mask_head or MaskRCNNHeads(out_channels, (256, 256, 256, 256), 1)
        self.roi_heads.mask_predictor = mask_predictor or MaskRCNNPredictor(256, 256, self.num_classes)
