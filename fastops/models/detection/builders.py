"""Builders with torchvision's names, keyword arguments and defaults: ``retinanet_resnet50_fpn``,
``fasterrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn``, ``ssd300_vgg16``. Their state_dicts are torchvision's, so a
torchvision checkpoint loads with ``strict=True`` and gives the same detections. ``panoptic_fpn_resnet50_fpn``
(torchvision has none) is Mask R-CNN's with the semantic head's entries added.

Weights come from a local path or a state_dict, never from the network:

- ``weights``: a whole detector's checkpoint (as torchvision's COCO weights). The backbone's
  batch norms are then frozen and 3 stages train, as torchvision does for trained weights;
  ``num_classes`` defaults to the checkpoint's.
- ``weights_backbone``: a ResNet-50 classifier checkpoint (torchvision's ImageNet weights); frozen
  batch norms, 3 trainable stages (for SSD: a VGG-16 checkpoint, 4 trainable stages).
  torchvision downloads these by default; here the default is None, which gives torchvision's
  untrained configuration: ``nn.BatchNorm2d`` and 5 trainable stages.

torchvision's COCO_V1 checkpoints of these three models were trained with a frozen batch-norm
epsilon of 0 (torchvision's builders set it after loading); call ``overwrite_eps(model, 0.0)``
after loading one of them.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ...nn import FrozenBatchNorm2d
from ..backbones.resnet import Bottleneck, ResNet, freeze_layers
from ..backbones.ssd_vgg import SSDFeatureExtractorVGG, freeze_vgg_stages
from ..backbones.vgg import vgg16
from ..components import DefaultBoxGenerator
from ..necks import BackboneWithFPN, LastLevelP6P7
from ..weights import Weights, load_weights, read_state_dict
from .faster_rcnn import FasterRCNN
from .mask_rcnn import MaskRCNN
from .panoptic_fpn import PanopticFPN
from .retinanet import RetinaNet
from .ssd import SSD

__all__ = [
    "fasterrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
    "overwrite_eps",
    "panoptic_fpn_resnet50_fpn",
    "randomize_for_detections",
    "retinanet_resnet50_fpn",
    "ssd300_vgg16",
]

_COCO_CLASSES = 91


def overwrite_eps(model: nn.Module, eps: float) -> None:
    """Sets the epsilon of every FrozenBatchNorm2d in ``model`` (torchvision's helper)."""
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = eps


def _trainable_layers(is_trained: bool, trainable_layers: int | None, max_value: int = 5, default: int = 3) -> int:
    """torchvision's rule: everything trains without trained weights; otherwise 3 by default."""
    if not is_trained:
        if trainable_layers is not None:
            warnings.warn(
                "Changing trainable_backbone_layers has no effect if neither weights nor weights_backbone are "
                f"given; falling back to trainable_backbone_layers={max_value} so that all layers are trainable",
                stacklevel=3,
            )
        trainable_layers = max_value
    if trainable_layers is None:
        trainable_layers = default
    if not 0 <= trainable_layers <= max_value:
        raise ValueError(f"trainable_backbone_layers should be in [0, {max_value}], got {trainable_layers}")
    return trainable_layers


def _resnet50_fpn(weights_backbone, is_trained: bool, trainable_layers, returned_layers, extra_blocks):
    trainable = _trainable_layers(is_trained, trainable_layers)
    norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    body = ResNet(
        Bottleneck,
        (3, 4, 6, 3),
        return_layers={f"layer{k}": str(i) for i, k in enumerate(returned_layers)},
        norm_layer=norm_layer,
    )
    if weights_backbone is not None:
        load_weights(body, weights_backbone, drop_prefixes=("fc.",))
    freeze_layers(body, trainable)
    return BackboneWithFPN(body, 256, extra_blocks=extra_blocks)


def _rcnn_classes(state: dict) -> int | None:
    bias = state.get("roi_heads.box_predictor.cls_score.bias")
    return None if bias is None else bias.shape[0]


def _retinanet_classes(state: dict) -> int | None:
    logits = state.get("head.classification_head.cls_logits.bias")
    offsets = state.get("head.regression_head.bbox_reg.bias")
    return None if logits is None or offsets is None else logits.shape[0] // (offsets.shape[0] // 4)


def _prepare(weights, num_classes, weights_backbone, classes_in):
    """(state or None, num_classes, weights_backbone) by torchvision's rules; with weights,
    num_classes defaults to the checkpoint's."""
    state = None
    if weights is not None:
        state = read_state_dict(weights)
        weights_backbone = None
        if num_classes is None:
            num_classes = classes_in(state) or _COCO_CLASSES
    elif num_classes is None:
        num_classes = _COCO_CLASSES
    return state, num_classes, weights_backbone


def retinanet_resnet50_fpn(
    *,
    weights: Weights | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: Weights | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs,
) -> RetinaNet:
    """RetinaNet with a ResNet-50 FPN backbone (P3-P7), as torchvision's. ``progress`` is accepted
    for compatibility (nothing is downloaded); other keyword arguments go to ``RetinaNet``."""
    state, num_classes, weights_backbone = _prepare(weights, num_classes, weights_backbone, _retinanet_classes)
    backbone = _resnet50_fpn(
        weights_backbone,
        weights is not None or weights_backbone is not None,
        trainable_backbone_layers,
        returned_layers=(2, 3, 4),
        extra_blocks=LastLevelP6P7(256, 256),
    )
    model = RetinaNet(backbone, num_classes, **kwargs)
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model


def _rcnn_resnet50_fpn(cls, weights, num_classes, weights_backbone, trainable_backbone_layers, kwargs):
    """Faster or Mask R-CNN (``cls``) on a ResNet-50 FPN (P2-P6), torchvision's weight rules."""
    state, num_classes, weights_backbone = _prepare(weights, num_classes, weights_backbone, _rcnn_classes)
    backbone = _resnet50_fpn(
        weights_backbone,
        weights is not None or weights_backbone is not None,
        trainable_backbone_layers,
        returned_layers=(1, 2, 3, 4),
        extra_blocks=None,
    )
    model = cls(backbone, num_classes=num_classes, **kwargs)
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model


def fasterrcnn_resnet50_fpn(
    *,
    weights: Weights | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: Weights | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs,
) -> FasterRCNN:
    """Faster R-CNN with a ResNet-50 FPN backbone (P2-P6), as torchvision's (arguments as
    ``retinanet_resnet50_fpn``; others go to ``FasterRCNN``)."""
    return _rcnn_resnet50_fpn(FasterRCNN, weights, num_classes, weights_backbone, trainable_backbone_layers, kwargs)


def maskrcnn_resnet50_fpn(
    *,
    weights: Weights | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: Weights | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs,
) -> MaskRCNN:
    """Mask R-CNN with a ResNet-50 FPN backbone, as torchvision's (arguments as
    ``retinanet_resnet50_fpn``; others go to ``MaskRCNN``)."""
    return _rcnn_resnet50_fpn(MaskRCNN, weights, num_classes, weights_backbone, trainable_backbone_layers, kwargs)


def panoptic_fpn_resnet50_fpn(
    num_things: int,
    num_stuff: int,
    *,
    weights: Weights | None = None,
    weights_backbone: Weights | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs,
) -> PanopticFPN:
    """Panoptic FPN on Mask R-CNN's ResNet-50 FPN (P2-P6), with torchvision's weight rules for
    ``weights`` (a whole Panoptic FPN checkpoint, loaded strictly) and ``weights_backbone``; other
    keyword arguments go to ``PanopticFPN`` (and through it to ``MaskRCNN``)."""
    state = None if weights is None else read_state_dict(weights)
    backbone = _resnet50_fpn(
        None if weights is not None else weights_backbone,
        weights is not None or weights_backbone is not None,
        trainable_backbone_layers,
        returned_layers=(1, 2, 3, 4),
        extra_blocks=None,
    )
    model = PanopticFPN(backbone, num_things, num_stuff, **kwargs)
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model


def _ssd_classes(state: dict) -> int | None:
    logits = state.get("head.classification_head.module_list.0.bias")
    offsets = state.get("head.regression_head.module_list.0.bias")
    return None if logits is None or offsets is None else logits.shape[0] // (offsets.shape[0] // 4)


def ssd300_vgg16(
    *,
    weights: Weights | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: Weights | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs,
) -> SSD:
    """SSD300 on VGG-16, as torchvision's: 300 x 300 inputs, six feature maps (38 to 1 cells),
    8732 default boxes, torchvision's input normalization (mean of 0-1 pixels, std 1/255).
    ``weights_backbone``: a VGG-16 checkpoint with torchvision's names (its classifier is dropped).
    ``size`` is fixed (a ``size`` argument is ignored with a warning, as torchvision's); other
    keyword arguments go to ``SSD``."""
    if "size" in kwargs:
        warnings.warn("The size of the model is already fixed; ignoring the parameter.", stacklevel=2)
        kwargs.pop("size")
    state, num_classes, weights_backbone = _prepare(weights, num_classes, weights_backbone, _ssd_classes)
    is_trained = weights is not None or weights_backbone is not None
    trainable = _trainable_layers(is_trained, trainable_backbone_layers, max_value=5, default=4)
    vgg = vgg16(weights=weights_backbone)
    freeze_vgg_stages(vgg, trainable)
    anchor_generator = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300],
    )
    defaults = {"image_mean": [0.48235, 0.45882, 0.40784], "image_std": [1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0]}
    model = SSD(SSDFeatureExtractorVGG(vgg), anchor_generator, (300, 300), num_classes, **{**defaults, **kwargs})
    if state is not None:
        model.load_state_dict(state, strict=True)
    return model


def randomize_for_detections(state: dict, seed: int = 0) -> dict:
    """Fills a detector's state_dict (torchvision's names: RetinaNet, Faster or Mask R-CNN) in place
    with random weights under which the model gives detections with well-separated scores, for
    parity checks and benchmarks without trained weights: batch-norm statistics and scales that
    keep activations of order 1, classification layers with a spread of logits, foreground biases
    above the background. Returns ``state``."""
    g = torch.Generator().manual_seed(seed)
    for k, v in state.items():
        if k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) + 0.5)
        elif k.endswith("running_mean"):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
        elif k.startswith("backbone.body") and k.endswith("weight") and v.dim() == 1:
            v.copy_(torch.rand(v.shape, generator=g) * 0.2 + 0.2)
        elif k.startswith("head.classification_head.conv") and k.endswith("weight"):
            v.normal_(0, 0.03, generator=g)
    if "head.classification_head.cls_logits.weight" in state:
        state["head.classification_head.cls_logits.weight"].normal_(0, 0.4, generator=g)
        state["head.classification_head.cls_logits.bias"].fill_(-4.0)
    if "rpn.head.cls_logits.weight" in state:
        state["rpn.head.cls_logits.weight"].normal_(0, 3.0, generator=g)
        state["roi_heads.box_predictor.cls_score.weight"].normal_(0, 0.3, generator=g)
        state["roi_heads.box_predictor.cls_score.bias"][0] = -2.0
    return state
