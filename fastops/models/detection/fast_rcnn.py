"""Fast R-CNN (Girshick, 2015) on external proposals: no RPN; each image comes with its own
proposal boxes (selective search's, ``fastops.selective_search``, in the paper), pooled from one
feature map by RoIPool (the paper's) or RoIAlign, then classified (background + classes) and
refined per class by the R-CNN box heads of ``roi_heads.RoIHeads`` (sampling, matching, box
coding, losses, post-processing: the Faster R-CNN ones).

The proposals are an argument of every call, in the original image's pixels (xyxy):
``model(images, targets, proposals)`` in training mode returns the losses, ``model(images,
proposals=proposals)`` in eval mode the detections; ``loss(images, targets, proposals)`` and
``predict(images, proposals)`` work in either mode. During training the ground-truth boxes join
each image's proposals (as the paper's training set does), so an image may come with no proposal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...nn import RoIAlign, RoIPool
from ...nn.norm import FrozenBatchNorm2d
from ..backbones import resnet50, small_resnet
from ..components import GeneralizedRCNNTransform, resize_boxes
from .base import Detector, check_images, check_targets
from .retinanet import IMAGENET_MEAN, IMAGENET_STD
from .roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead

__all__ = ["FastRCNN", "SingleMapRoIPool", "check_proposals", "fast_rcnn_resnet50", "fast_rcnn_small"]

POOLS = ("roi_pool", "roi_align")


class SingleMapRoIPool(nn.Module):
    """RoIPool or RoIAlign of one feature map of a backbone's output dict, called as
    ``MultiScaleRoIAlign`` is by ``RoIHeads``: ``(features, boxes per image, image sizes)`` ->
    Tensor[K, C, output_size, output_size]."""

    def __init__(self, featmap_name: str, stride: int, *, pool: str = "roi_pool", output_size: int = 7):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.featmap_name = featmap_name
        self.output_size = (output_size, output_size)
        if pool == "roi_pool":
            self.pool = RoIPool(output_size, 1.0 / stride)
        else:
            self.pool = RoIAlign(output_size, 1.0 / stride, sampling_ratio=2, aligned=True)

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor], image_sizes) -> Tensor:
        return self.pool(features[self.featmap_name], boxes)


def check_proposals(proposals, images: Sequence[Tensor]) -> list[Tensor]:
    """The proposals as a list of float Tensor[P_i, 4] (xyxy, finite), one per image, on its device."""
    if proposals is None:
        raise ValueError("proposals: required (one Tensor[P, 4] of boxes per image)")
    if isinstance(proposals, Tensor) or not isinstance(proposals, (list, tuple)):
        raise TypeError(f"proposals: expected a list of Tensor[P, 4], one per image, got {type(proposals).__name__}")
    if len(proposals) != len(images):
        raise ValueError(f"proposals: expected one Tensor[P, 4] per image ({len(images)}), got {len(proposals)}")
    checked = []
    for i, (boxes, image) in enumerate(zip(proposals, images)):
        if not isinstance(boxes, Tensor):
            raise TypeError(f"proposals[{i}]: expected a tensor, got {type(boxes).__name__}")
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"proposals[{i}]: expected shape [P, 4] (xyxy), got {tuple(boxes.shape)}")
        if not boxes.is_floating_point():
            raise TypeError(f"proposals[{i}]: expected floating-point boxes, got dtype {boxes.dtype}")
        if not torch.isfinite(boxes).all():
            raise ValueError(f"proposals[{i}]: non-finite coordinates")
        checked.append(boxes.to(device=image.device, dtype=image.dtype))
    return checked


class FastRCNN(Detector):
    """Fast R-CNN: a backbone, RoI pooling of external proposals on its ``featmap_name`` output,
    the R-CNN box head and predictor.

    Labels are in [1, num_classes): 0 is the background. ``pool``: "roi_pool" (the paper's) or
    "roi_align"; ``output_size`` its grid. The transform (``min_size``, ``max_size``,
    ``image_mean``, ``image_std``) and box-head arguments (``box_*``, ``bbox_reg_weights``) are
    Faster R-CNN's; the paper samples 64 RoIs per image, a quarter positive (IoU >= 0.5).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int | None = None,
        *,
        featmap_name: str = "0",
        pool: str = "roi_pool",
        output_size: int = 7,
        representation_size: int = 1024,
        min_size: int = 600,
        max_size: int = 1000,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        box_head: nn.Module | None = None,
        box_predictor: nn.Module | None = None,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.3,
        box_detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_batch_size_per_image: int = 64,
        box_positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] | None = None,
        **transform_kwargs,
    ):
        super().__init__()
        if (num_classes is None) == (box_predictor is None):
            raise ValueError("give exactly one of num_classes and box_predictor")
        channels = getattr(backbone, "out_channels", {}).get(featmap_name)
        stride = getattr(backbone, "strides", {}).get(featmap_name)
        if channels is None or stride is None:
            raise ValueError(f"backbone must report out_channels and strides of its output {featmap_name!r}")
        self.backbone = backbone
        box_roi_pool = SingleMapRoIPool(featmap_name, stride, pool=pool, output_size=output_size)
        box_head = box_head or TwoMLPHead(channels * output_size**2, representation_size)
        box_predictor = box_predictor or FastRCNNPredictor(representation_size, num_classes)
        self.roi_heads = RoIHeads(
            box_roi_pool,
            box_head,
            box_predictor,
            box_fg_iou_thresh,
            box_bg_iou_thresh,
            box_batch_size_per_image,
            box_positive_fraction,
            bbox_reg_weights,
            box_score_thresh,
            box_nms_thresh,
            box_detections_per_img,
        )
        self.transform = GeneralizedRCNNTransform(
            min_size, max_size, image_mean or IMAGENET_MEAN, image_std or IMAGENET_STD, **transform_kwargs
        )
        self.num_classes = num_classes if num_classes is not None else box_predictor.cls_score.out_features
        self.label_range = (1, self.num_classes)

    def forward(self, images, targets=None, proposals=None):
        if self.training:
            return self.loss(images, targets, proposals)
        return self.predict(images, proposals)

    def _prepare(self, images, targets, proposals, training: bool):
        images = check_images(images)
        proposals = check_proposals(proposals, images)
        if training:
            targets = check_targets(targets, images, self.label_range)
        batch, targets = self.transform(images, targets, training=training)
        proposals = [
            resize_boxes(p, image.shape[-2:], size) for p, image, size in zip(proposals, images, batch.image_sizes)
        ]
        return images, batch, targets, proposals

    def loss(self, images, targets, proposals) -> dict[str, Tensor]:
        """The classification and box regression losses, in either mode."""
        _, batch, targets, proposals = self._prepare(images, targets, proposals, training=True)
        features = self.backbone(batch.tensors)
        return self.roi_heads(features, proposals, batch.image_sizes, targets, training=True)[1]

    def predict(self, images, proposals) -> list[dict[str, Tensor]]:
        """Detections per image (``boxes``, ``scores``, ``labels``) in the original pixels, in either mode."""
        images, batch, _, proposals = self._prepare(images, None, proposals, training=False)
        features = self.backbone(batch.tensors)
        detections = self.roi_heads(features, proposals, batch.image_sizes, training=False)[0]
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


def fast_rcnn_small(num_classes: int, *, pool: str = "roi_pool", **kwargs) -> FastRCNN:
    """Fast R-CNN on ``small_resnet``'s layer3 (stride 16, 64 channels), a 128-wide box head, for
    128-pixel images on a CPU (labels in [1, num_classes))."""
    backbone = small_resnet(return_layers={"layer3": "0"})
    defaults = {"representation_size": 128, "min_size": 128, "max_size": 256}
    return FastRCNN(backbone, num_classes, pool=pool, **{**defaults, **kwargs})


def fast_rcnn_resnet50(
    num_classes: int, *, weights_backbone=None, trainable_backbone_layers: int = 3, pool: str = "roi_pool", **kwargs
) -> FastRCNN:
    """Fast R-CNN on ResNet-50's layer3 (stride 16, 1024 channels; VGG16's conv5 in the paper),
    frozen batch norm, ``trainable_backbone_layers`` of the last stages trained; backbone weights
    from a path or state_dict (torchvision's ``resnet50`` keys), nothing downloaded."""
    backbone = resnet50(
        weights=weights_backbone,
        return_layers={"layer3": "0"},
        norm_layer=FrozenBatchNorm2d,
        trainable_layers=trainable_backbone_layers,
    )
    return FastRCNN(backbone, num_classes, pool=pool, **kwargs)
