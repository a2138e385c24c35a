"""Small configurations of the detectors, for small images on a CPU: the narrow ``small_resnet``
backbone (group norm), a 64-channel FPN, anchors of 16-256 pixels, and lighter heads; for SSD, a
narrow 7-convolution VGG on 128 x 128 inputs with five feature maps (16 to 1 cells); for Panoptic
FPN, the small Mask R-CNN with a narrow semantic head. Each trains
on a batch of 128 x 128 images in minutes on two cores. Every other argument is the full model's
(keyword arguments pass through).
"""

from __future__ import annotations

from ..backbones import VGG, small_resnet
from ..backbones.ssd_vgg import SSDFeatureExtractorVGG
from ..components import DefaultBoxGenerator
from ..necks import BackboneWithFPN, LastLevelP6P7
from .faster_rcnn import FasterRCNN, rcnn_anchor_generator
from .mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from .panoptic_fpn import PanopticFPN
from .retinanet import RetinaNet, retinanet_anchor_generator
from .retinanet_head import RetinaNetHead
from .roi_heads import FastRCNNPredictor, TwoMLPHead
from .semantic_fpn_head import SemanticFPNHead
from .ssd import SSD

__all__ = ["fasterrcnn_small", "maskrcnn_small", "panoptic_fpn_small", "retinanet_small", "ssd_small"]

FPN_CHANNELS = 64
ANCHOR_SIZES = (16, 32, 64, 128, 256)
SMALL_IMAGES = {"min_size": 128, "max_size": 256}
SSD_SMALL_VGG = (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, "M")
SSD_SMALL_EXTRA = ((256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 2, 1))  # divided by 8: 64, 32, 32 channels


def _fpn(levels: tuple[int, ...], extra_blocks=None) -> BackboneWithFPN:
    body = small_resnet(return_layers={f"layer{k}": str(i) for i, k in enumerate(levels)})
    return BackboneWithFPN(body, FPN_CHANNELS, extra_blocks=extra_blocks)


def retinanet_small(num_classes: int, **kwargs) -> RetinaNet:
    """RetinaNet on P3-P7 of ``small_resnet`` (labels in [0, num_classes))."""
    anchors = retinanet_anchor_generator(ANCHOR_SIZES)
    backbone = _fpn((2, 3, 4), LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS))
    kwargs.setdefault("head", RetinaNetHead(FPN_CHANNELS, anchors.num_anchors_per_location()[0], num_classes))
    return RetinaNet(backbone, num_classes, anchor_generator=anchors, **{**SMALL_IMAGES, **kwargs})


def _rcnn_kwargs(num_classes: int, representation: int, kwargs: dict) -> dict:
    defaults = {
        **SMALL_IMAGES,
        "rpn_anchor_generator": rcnn_anchor_generator(ANCHOR_SIZES),
        "rpn_pre_nms_top_n_train": 600,
        "rpn_post_nms_top_n_train": 300,
        "rpn_pre_nms_top_n_test": 300,
        "rpn_post_nms_top_n_test": 100,
        "box_batch_size_per_image": 128,
        "box_head": TwoMLPHead(FPN_CHANNELS * 7 * 7, representation),
        "box_predictor": FastRCNNPredictor(representation, num_classes),
    }
    return {**defaults, **kwargs}


def fasterrcnn_small(num_classes: int, **kwargs) -> FasterRCNN:
    """Faster R-CNN on P2-P6 of ``small_resnet``, a 128-wide box head (labels in [1, num_classes))."""
    return FasterRCNN(_fpn((1, 2, 3, 4)), None, **_rcnn_kwargs(num_classes, 128, kwargs))


def _mask_rcnn_kwargs(num_classes: int, kwargs: dict) -> dict:
    kwargs.setdefault("mask_head", MaskRCNNHeads(FPN_CHANNELS, (FPN_CHANNELS, FPN_CHANNELS), 1))
    kwargs.setdefault("mask_predictor", MaskRCNNPredictor(FPN_CHANNELS, FPN_CHANNELS, num_classes))
    return _rcnn_kwargs(num_classes, 128, kwargs)


def maskrcnn_small(num_classes: int, **kwargs) -> MaskRCNN:
    """Mask R-CNN on P2-P6 of ``small_resnet``: the small Faster R-CNN and a 2-convolution,
    64-channel mask head (labels in [1, num_classes))."""
    return MaskRCNN(_fpn((1, 2, 3, 4)), None, **_mask_rcnn_kwargs(num_classes, kwargs))


def panoptic_fpn_small(num_things: int, num_stuff: int, **kwargs) -> PanopticFPN:
    """Panoptic FPN on the small Mask R-CNN: a 32-channel semantic head on P2-P5, stuff regions
    of at least 64 pixels (things 1..num_things, stuff num_things + 1 .. num_things + num_stuff)."""
    backbone = _fpn((1, 2, 3, 4))
    strides = {name: backbone.strides[name] for name in ("0", "1", "2", "3")}
    head = SemanticFPNHead(FPN_CHANNELS, num_stuff + 1, strides, conv_dims=32, num_groups=8)
    kwargs.setdefault("semantic_head", head)
    kwargs.setdefault("stuff_area_threshold", 64)
    return PanopticFPN(backbone, None, num_stuff, **_mask_rcnn_kwargs(num_things + 1, kwargs))


def ssd_small(num_classes: int, **kwargs) -> SSD:
    """SSD on 128 x 128 inputs: a narrow VGG (conv4_3 of 128 channels at stride 8), fc6/fc7 of 128
    channels, three stride-2 extra blocks; maps of 16, 8, 4, 2 and 1 cells, default boxes of
    scales 0.1 to 0.9 (labels in [1, num_classes))."""
    backbone = SSDFeatureExtractorVGG(VGG(SSD_SMALL_VGG), extra=SSD_SMALL_EXTRA, width_scale=8)
    boxes = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2], [2]], scales=[0.1, 0.2, 0.4, 0.6, 0.8, 1.0], steps=[8, 16, 32, 64, 128]
    )
    return SSD(backbone, boxes, (128, 128), num_classes, **kwargs)
