"""Faster R-CNN (Ren et al., 2015) with an FPN, as torchvision's ``FasterRCNN``: the same
constructor arguments and defaults, module names (state_dicts load both ways) and detections.
"""

from __future__ import annotations

from torch import Tensor, nn

from ...nn import MultiScaleRoIAlign
from ..components import AnchorGenerator, GeneralizedRCNNTransform, ImageBatch
from .base import Detector
from .retinanet import IMAGENET_MEAN, IMAGENET_STD
from .roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from .rpn import RegionProposalNetwork, RPNHead

__all__ = ["FasterRCNN", "rcnn_anchor_generator"]


def rcnn_anchor_generator(sizes=(32, 64, 128, 256, 512)) -> AnchorGenerator:
    """One size per FPN level and three aspect ratios (torchvision's)."""
    return AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))


class FasterRCNN(Detector):
    """Faster R-CNN over a backbone returning FPN levels (``out_channels`` on every level).

    Labels are in [1, num_classes): 0 is the background. Arguments are torchvision's: the
    transform (``min_size``, ``max_size``, ``image_mean``, ``image_std``, and through kwargs
    ``size_divisible``, ``fixed_size``), the RPN (``rpn_*``), the box heads (``box_*``,
    ``bbox_reg_weights``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int | None = None,
        min_size: int = 800,
        max_size: int = 1333,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        rpn_anchor_generator: AnchorGenerator | None = None,
        rpn_head: nn.Module | None = None,
        rpn_pre_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 1000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_post_nms_top_n_test: int = 1000,
        rpn_nms_thresh: float = 0.7,
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_score_thresh: float = 0.0,
        box_roi_pool: nn.Module | None = None,
        box_head: nn.Module | None = None,
        box_predictor: nn.Module | None = None,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_batch_size_per_image: int = 512,
        box_positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] | None = None,
        **kwargs,
    ):
        super().__init__()
        if not hasattr(backbone, "out_channels"):
            raise ValueError("backbone should have an attribute out_channels (the channels of every level)")
        if num_classes is not None and box_predictor is not None:
            raise ValueError("num_classes should be None when box_predictor is specified")
        if num_classes is None and box_predictor is None:
            raise ValueError("num_classes should not be None when box_predictor is not specified")
        self.backbone = backbone
        out_channels = backbone.out_channels
        rpn_anchor_generator = rpn_anchor_generator or rcnn_anchor_generator()
        rpn_head = rpn_head or RPNHead(out_channels, rpn_anchor_generator.num_anchors_per_location()[0])
        self.rpn = RegionProposalNetwork(
            rpn_anchor_generator,
            rpn_head,
            rpn_fg_iou_thresh,
            rpn_bg_iou_thresh,
            rpn_batch_size_per_image,
            rpn_positive_fraction,
            {"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
            {"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
            rpn_nms_thresh,
            score_thresh=rpn_score_thresh,
        )
        box_roi_pool = box_roi_pool or MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
        if box_head is None:
            resolution = box_roi_pool.output_size[0]
            box_head = TwoMLPHead(out_channels * resolution**2, 1024)
        box_predictor = box_predictor or FastRCNNPredictor(1024, num_classes)
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
            min_size, max_size, image_mean or IMAGENET_MEAN, image_std or IMAGENET_STD, **kwargs
        )
        self.num_classes = num_classes if num_classes is not None else box_predictor.cls_score.out_features
        self.label_range = (1, self.num_classes)

    def run_heads(
        self, features: dict[str, Tensor], batch: ImageBatch, targets, *, training: bool
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """The RPN and the RoI heads on the backbone's ``features`` of ``batch``: (detections in the
        batch's pixels, losses); a model that adds heads on the same features calls it."""
        proposals, rpn_losses = self.rpn(
            list(features.values()), batch.tensors.shape[-2:], batch.image_sizes, targets, training=training
        )
        detections, head_losses = self.roi_heads(features, proposals, batch.image_sizes, targets, training=training)
        return detections, {**head_losses, **rpn_losses}

    def _run(self, batch: ImageBatch, targets, training: bool):
        return self.run_heads(self.backbone(batch.tensors), batch, targets, training=training)

    def compute_losses(self, batch: ImageBatch, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        return self._run(batch, targets, training=True)[1]

    def compute_detections(self, batch: ImageBatch) -> list[dict[str, Tensor]]:
        return self._run(batch, None, training=False)[0]
