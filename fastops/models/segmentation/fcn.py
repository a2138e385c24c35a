"""FCN (Long et al., 2015) as torchvision builds it: a ResNet-50/101 dilated to output stride 8,
``FCNHead`` on layer4 (and an auxiliary ``FCNHead`` on layer3), logits upsampled bilinearly to
the input's size. Same builder names, keyword arguments, output dict and state_dict keys as
``torchvision.models.segmentation.fcn_resnet50``/``fcn_resnet101``: a torchvision checkpoint loads
strictly and gives the same logits."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ..weights import Weights
from .base import DEFAULT_IGNORE_INDEX
from .heads import FCNHead
from .resnet_builders import dilated_resnet, finish, resolve_classes
from .simple import SimpleSegmentationModel

__all__ = ["FCN", "fcn_resnet50", "fcn_resnet101"]


class FCN(SimpleSegmentationModel):
    """torchvision's ``FCN`` (``SimpleSegmentationModel``'s arguments and outputs)."""


def _fcn_resnet(
    name: str,
    weights: Weights | None,
    num_classes: int | None,
    aux_loss: bool | None,
    weights_backbone: Weights | None,
    path: str,
    criterion: nn.Module | None,
    ignore_index: int,
    loss_weights: Mapping[str, float] | None,
) -> FCN:
    state, num_classes, aux = resolve_classes(weights, num_classes, aux_loss, "classifier.4.weight")
    backbone = dilated_resnet(name, None if state is not None else weights_backbone, aux, 8, path)
    model = FCN(
        backbone,
        FCNHead(2048, num_classes, path=path),
        FCNHead(1024, num_classes, path=path) if aux else None,
        num_classes=num_classes,
        criterion=criterion,
        ignore_index=ignore_index,
        loss_weights=loss_weights,
    )
    return finish(model, state)


def fcn_resnet50(
    *,
    weights: Weights | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: Weights | None = None,
    path: str = "auto",
    criterion: nn.Module | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    loss_weights: Mapping[str, float] | None = None,
) -> FCN:
    """FCN with a ResNet-50 backbone (torchvision's ``fcn_resnet50``).

    Args:
        weights: a full model's state_dict or its path (torchvision's names); then ``num_classes``
            defaults to the weights' and the auxiliary classifier is built when they have one.
        progress: accepted for torchvision's signature (nothing is downloaded).
        num_classes: default 21 (VOC with background) without weights.
        aux_loss: build the auxiliary classifier on layer3 ("aux" output).
        weights_backbone: a ResNet-50 state_dict or path (torchvision's ``resnet50`` names; its fc
            is dropped). torchvision downloads ImageNet weights by default; here None means
            random initialization.
        path: the convolutions' path ("auto", "fastops", "torch").
        criterion, ignore_index, loss_weights: the loss (``fastops.models.segmentation.Segmenter``).
    """
    del progress
    return _fcn_resnet(
        "resnet50", weights, num_classes, aux_loss, weights_backbone, path, criterion, ignore_index, loss_weights
    )


def fcn_resnet101(
    *,
    weights: Weights | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: Weights | None = None,
    path: str = "auto",
    criterion: nn.Module | None = None,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    loss_weights: Mapping[str, float] | None = None,
) -> FCN:
    """FCN with a ResNet-101 backbone (torchvision's ``fcn_resnet101``; arguments as ``fcn_resnet50``)."""
    del progress
    return _fcn_resnet(
        "resnet101", weights, num_classes, aux_loss, weights_backbone, path, criterion, ignore_index, loss_weights
    )
