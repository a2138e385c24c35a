"""DeepLab v3 (Chen et al., 2017) as torchvision builds it: a dilated ResNet-50/101, ``DeepLabHead``
(ASPP on fastops' fused atrous convolutions) on layer4, an optional auxiliary ``FCNHead`` on
layer3, logits upsampled bilinearly to the input's size. Same builder names, keyword arguments,
output dict and state_dict keys as ``torchvision.models.segmentation.deeplabv3_resnet50``/
``deeplabv3_resnet101`` at their output stride 8; ``output_stride=16`` dilates layer4 only and
uses rates 6/12/18 (the paper's training setting; 4x fewer backbone pixels).

``deeplabv2_resnet101``: DeepLab v2 (Chen et al., 2017): the dilated ResNet-101 with
``DeepLabV2Head`` (3x3 atrous classifiers at rates 6/12/18/24, summed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from ..weights import Weights
from .base import DEFAULT_IGNORE_INDEX
from .heads import DeepLabHead, DeepLabV2Head, FCNHead
from .resnet_builders import dilated_resnet, finish, resolve_classes
from .simple import SimpleSegmentationModel

__all__ = ["ATROUS_RATES", "DeepLabV3", "deeplabv2_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101"]

ATROUS_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}


class DeepLabV3(SimpleSegmentationModel):
    """torchvision's ``DeepLabV3`` (``SimpleSegmentationModel``'s arguments and outputs)."""


def _deeplabv3_resnet(
    name: str,
    weights: Weights | None,
    num_classes: int | None,
    aux_loss: bool | None,
    weights_backbone: Weights | None,
    output_stride: int,
    path: str,
    criterion: nn.Module | None,
    ignore_index: int,
    loss_weights: Mapping[str, float] | None,
) -> DeepLabV3:
    state, num_classes, aux = resolve_classes(weights, num_classes, aux_loss, "classifier.4.weight")
    backbone = dilated_resnet(name, None if state is not None else weights_backbone, aux, output_stride, path)
    model = DeepLabV3(
        backbone,
        DeepLabHead(2048, num_classes, ATROUS_RATES[output_stride], path=path),
        FCNHead(1024, num_classes, path=path) if aux else None,
        num_classes=num_classes,
        criterion=criterion,
        ignore_index=ignore_index,
        loss_weights=loss_weights,
    )
    return finish(model, state)


def deeplabv3_resnet50(
    *,
    weights: Weights | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: Weights | None = None,
    output_stride: int = 8,
    path: str = "auto",
    criterion: nn.Module | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    loss_weights: Mapping[str, float] | None = None,
) -> DeepLabV3:
    """DeepLab v3 with a ResNet-50 backbone (torchvision's ``deeplabv3_resnet50``).

    Args: as ``fcn_resnet50``, plus ``output_stride``: 8 (torchvision's; ASPP rates 12/24/36) or
    16 (layer3 keeps its stride; rates 6/12/18).
    """
    del progress
    return _deeplabv3_resnet(
        "resnet50",
        weights,
        num_classes,
        aux_loss,
        weights_backbone,
        output_stride,
        path,
        criterion,
        ignore_index,
        loss_weights,
    )


def deeplabv3_resnet101(
    *,
    weights: Weights | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: Weights | None = None,
    output_stride: int = 8,
    path: str = "auto",
    criterion: nn.Module | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    loss_weights: Mapping[str, float] | None = None,
) -> DeepLabV3:
    """DeepLab v3 with a ResNet-101 backbone (torchvision's ``deeplabv3_resnet101``; arguments as
    ``deeplabv3_resnet50``)."""
    del progress
    return _deeplabv3_resnet(
        "resnet101",
        weights,
        num_classes,
        aux_loss,
        weights_backbone,
        output_stride,
        path,
        criterion,
        ignore_index,
        loss_weights,
    )


def deeplabv2_resnet101(
    *,
    num_classes: int = 21,
    weights_backbone: Weights | None = None,
    rates: Sequence[int] = (6, 12, 18, 24),
    output_stride: int = 8,
    path: str = "auto",
    criterion: nn.Module | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
) -> SimpleSegmentationModel:
    """DeepLab v2: ResNet-101 dilated to ``output_stride`` (8, the paper's) with ``DeepLabV2Head``
    (one 3x3 atrous classifier per rate on layer4, summed); ``weights_backbone`` as in
    ``fcn_resnet50``. Output {"out": logits at the input's size}."""
    backbone = dilated_resnet("resnet101", weights_backbone, False, output_stride, path)
    return SimpleSegmentationModel(
        backbone,
        DeepLabV2Head(2048, num_classes, rates, path=path),
        num_classes=num_classes,
        criterion=criterion,
        ignore_index=ignore_index,
    )
