"""Shared steps of the ResNet-based builders (FCN, DeepLab): torchvision's defaults for
``num_classes`` and ``aux_loss`` given full-model weights, the dilated backbone, the weights."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ...nn.conv import check_path
from ..backbones import resnet50, resnet101
from ..weights import Weights, load_weights, read_state_dict

__all__ = ["RESNETS", "dilated_resnet", "finish", "resolve_classes"]

RESNETS: dict[str, Callable[..., nn.Module]] = {"resnet50": resnet50, "resnet101": resnet101}


def resolve_classes(
    weights: Weights | None, num_classes: int | None, aux_loss: bool | None, classifier_key: str
) -> tuple[dict | None, int, bool]:
    """(state_dict or None, num_classes, aux_loss) as torchvision decides them: with full-model
    weights, the classes come from their classifier (``classifier_key``, the last layer's weight) and
    the auxiliary classifier is built when the weights have one (``aux_loss=False`` drops it);
    otherwise 21 classes (VOC) and no auxiliary classifier unless asked."""
    state = None
    if weights is not None:
        state = read_state_dict(weights)
        if classifier_key not in state:
            raise ValueError(f"weights: no {classifier_key!r}; expected a full segmentation model's state_dict")
        found = state[classifier_key].shape[0]
        if num_classes is not None and num_classes != found:
            raise ValueError(f"num_classes={num_classes} does not match the weights' {found} classes")
        num_classes = found
        has_aux = any(k.startswith("aux_classifier.") for k in state)
        if aux_loss and not has_aux:
            raise ValueError("aux_loss=True, but the weights have no auxiliary classifier (aux_classifier.*)")
        if aux_loss is False:  # the auxiliary head is not wanted: its weights are dropped
            state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
        aux_loss = has_aux if aux_loss is None else aux_loss
    elif num_classes is None:
        num_classes = 21
    return state, num_classes, bool(aux_loss)


def dilated_resnet(name: str, weights_backbone: Weights | None, aux: bool, output_stride: int, path: str) -> nn.Module:
    """The ResNet body returning "out" (layer4) and, with ``aux``, "aux" (layer3), dilated to the
    output stride (8: layer3 and layer4 dilated, torchvision's; 16: layer4 only)."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    return_layers = {"layer4": "out", **({"layer3": "aux"} if aux else {})}
    dilation = [False, output_stride == 8, True]
    backbone = RESNETS[name](
        weights=weights_backbone, return_layers=return_layers, replace_stride_with_dilation=dilation
    )
    if check_path(path) != "auto":
        for module in backbone.modules():
            if hasattr(module, "path"):
                module.path = path
    return backbone


def finish(model: nn.Module, state: dict | None) -> nn.Module:
    if state is not None:
        load_weights(model, state)
    return model
