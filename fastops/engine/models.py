"""The models the CLI trains by name: each name maps to a builder of the model layer and the task
it solves. A plain table for the command line's lookup (the models themselves take their parts
as modules; see docs/ARCHITECTURE.md, "Models").

Every builder here takes ``num_classes`` as the dataset counts them (background excluded, labels in
[1, C]) and builds the model with what it needs for that: detectors and segmenters get C + 1
classes (0 is background), the multi-label classifier C labels, Panoptic FPN C thing categories and
one stuff category (the background).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..models.backbones import small_resnet
from ..models.classification import multilabel_classifier
from ..models.detection import (
    detr_small,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_small,
    maskrcnn_resnet50_fpn,
    maskrcnn_small,
    panoptic_fpn_small,
    retinanet_resnet50_fpn,
    retinanet_small,
    yolo_v1,
    yolo_v1_small,
)
from ..models.segmentation import (
    deeplabv2_resnet101,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
    fcn8s_vgg16,
    fcn16s_vgg16,
    fcn32s_vgg16,
    fcn_resnet50,
    fcn_resnet101,
    stacked_hourglass,
    unet,
)
from .errors import EngineError

__all__ = ["MODELS", "TASKS", "ModelSpec", "build_model", "model_spec"]

TASKS = ("detection", "segmentation", "multilabel", "panoptic")


@dataclass(frozen=True)
class ModelSpec:
    """A named model: its task, its builder (``num_classes`` as the dataset counts them -> module),
    the image size its small synthetic runs use, and whether it needs instance masks."""

    task: str
    build: Callable[[int], nn.Module]
    image_size: int = 128
    needs_masks: bool = False


def _classifier(num_classes: int) -> nn.Module:
    return multilabel_classifier(small_resnet(return_layers=["layer4"]), num_classes)


MODELS: dict[str, ModelSpec] = {
    # detectors (labels 1..C, 0 background)
    "fasterrcnn_small": ModelSpec("detection", lambda c: fasterrcnn_small(c + 1)),
    "retinanet_small": ModelSpec("detection", lambda c: retinanet_small(c + 1)),
    "maskrcnn_small": ModelSpec("detection", lambda c: maskrcnn_small(c + 1), needs_masks=True),
    "yolo_v1_small": ModelSpec("detection", lambda c: yolo_v1_small(c + 1)),
    "detr_small": ModelSpec("detection", lambda c: detr_small(c + 1)),  # labels 0..C, 0 unused
    "yolo_v1": ModelSpec("detection", lambda c: yolo_v1(c + 1), image_size=448),
    "fasterrcnn_resnet50_fpn": ModelSpec("detection", lambda c: fasterrcnn_resnet50_fpn(num_classes=c + 1), 320),
    "retinanet_resnet50_fpn": ModelSpec("detection", lambda c: retinanet_resnet50_fpn(num_classes=c + 1), 320),
    "maskrcnn_resnet50_fpn": ModelSpec(
        "detection", lambda c: maskrcnn_resnet50_fpn(num_classes=c + 1), 320, needs_masks=True
    ),
    # segmenters (classes 0..C, 0 background, 255 ignored)
    "unet": ModelSpec("segmentation", lambda c: unet(num_classes=c + 1)),
    "unet_small": ModelSpec("segmentation", lambda c: unet(num_classes=c + 1, depth=3, base_channels=16), 64),
    "fcn_resnet50": ModelSpec("segmentation", lambda c: fcn_resnet50(num_classes=c + 1)),
    "fcn_resnet101": ModelSpec("segmentation", lambda c: fcn_resnet101(num_classes=c + 1)),
    "deeplabv3_resnet50": ModelSpec("segmentation", lambda c: deeplabv3_resnet50(num_classes=c + 1)),
    "deeplabv3_resnet101": ModelSpec("segmentation", lambda c: deeplabv3_resnet101(num_classes=c + 1)),
    "deeplabv2_resnet101": ModelSpec("segmentation", lambda c: deeplabv2_resnet101(num_classes=c + 1)),
    "fcn32s_vgg16": ModelSpec("segmentation", lambda c: fcn32s_vgg16(num_classes=c + 1)),
    "fcn16s_vgg16": ModelSpec("segmentation", lambda c: fcn16s_vgg16(num_classes=c + 1)),
    "fcn8s_vgg16": ModelSpec("segmentation", lambda c: fcn8s_vgg16(num_classes=c + 1)),
    "stacked_hourglass": ModelSpec("segmentation", lambda c: stacked_hourglass(num_classes=c + 1)),
    # panoptic segmentation (things 1..C, the background the stuff category C + 1)
    "panoptic_fpn_small": ModelSpec("panoptic", lambda c: panoptic_fpn_small(c, 1), needs_masks=True),
    # multi-label classification (labels 1..C as tags[c - 1])
    "multilabel_classifier": ModelSpec("multilabel", _classifier, 64),
}


def model_spec(name: str) -> ModelSpec:
    """The table's entry for ``name``; EngineError listing the names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise EngineError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


def build_model(name: str, num_classes: int) -> nn.Module:
    """The model ``name`` for a dataset of ``num_classes`` classes (background excluded)."""
    return model_spec(name).build(int(num_classes))
