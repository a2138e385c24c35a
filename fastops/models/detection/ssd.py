"""SSD (Liu et al., 2016) as torchvision's ``SSD``: the same constructor arguments, module names
(state_dicts load both ways), losses and detections.

Training: default boxes are matched by fastops IoU (``SSDMatcher``), box offsets take a smooth L1
loss on the matched boxes, and the classification loss (fastops' fused softmax loss with gamma 0:
cross-entropy) sums every positive box and the hardest negatives, ``neg_to_pos_ratio`` (3 for
``positive_fraction`` 0.25) times as many as the image's positives, chosen by one top-k over the
batch instead of torchvision's two sorts; both losses are divided by the batch's number of
positives. Inference: per image and class, the ``topk_candidates`` best softmax scores above
``score_thresh`` (one top-k over every (image, class) row), only those boxes decoded, and one fastops
``batched_nms`` for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops import box_iou, softmax_focal_loss
from ..components import (
    BoxCoder,
    DefaultBoxGenerator,
    GeneralizedRCNNTransform,
    ImageBatch,
    SSDMatcher,
    clip_boxes_per_image,
    nms_per_image,
)
from .base import Detector
from .ssd_head import SSDHead

__all__ = ["SSD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _out_channels(backbone: nn.Module, size: tuple[int, int]) -> list[int]:
    """The backbone's ``out_channels``, or the channels of its outputs on a blank image."""
    if hasattr(backbone, "out_channels"):
        return list(backbone.out_channels)
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        outputs = backbone(torch.zeros(1, 3, size[1], size[0]))
    backbone.train(was_training)
    outputs = {"0": outputs} if isinstance(outputs, Tensor) else outputs
    return [x.shape[1] for x in outputs.values()]


class SSD(Detector):
    """SSD over a backbone returning a dict (or one tensor) of feature maps.

    Args (torchvision's): ``backbone``, ``anchor_generator`` (a ``DefaultBoxGenerator``), ``size``
    ((W, H) every image is resized to), ``num_classes`` (background included: labels in
    [1, num_classes)), ``image_mean``/``image_std``, ``head``, ``score_thresh``, ``nms_thresh``,
    ``detections_per_img``, ``iou_thresh`` (matching), ``topk_candidates`` (per class, before NMS),
    ``positive_fraction`` (the negatives kept per positive: (1 - f) / f). Extra keyword arguments go
    to the transform.
    """

    def __init__(
        self,
        backbone: nn.Module,
        anchor_generator: DefaultBoxGenerator,
        size: tuple[int, int],
        num_classes: int,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        head: nn.Module | None = None,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        detections_per_img: int = 200,
        iou_thresh: float = 0.5,
        topk_candidates: int = 400,
        positive_fraction: float = 0.25,
        **kwargs,
    ):
        super().__init__()
        if not 0.0 < positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in (0, 1], got {positive_fraction}")
        self.backbone = backbone
        self.anchor_generator = anchor_generator
        self.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        if head is None:
            out_channels = _out_channels(backbone, size)
            if len(out_channels) != len(anchor_generator.aspect_ratios):
                raise ValueError(
                    f"the backbone's {len(out_channels)} feature maps and the anchor generator's "
                    f"{len(anchor_generator.aspect_ratios)} levels of aspect ratios differ"
                )
            head = SSDHead(out_channels, anchor_generator.num_anchors_per_location(), num_classes)
        self.head = head
        self.proposal_matcher = SSDMatcher(iou_thresh)
        self.transform = GeneralizedRCNNTransform(
            min(size),
            max(size),
            image_mean or IMAGENET_MEAN,
            image_std or IMAGENET_STD,
            size_divisible=1,
            fixed_size=tuple(size),
            **kwargs,
        )
        self.num_classes = num_classes
        self.label_range = (1, num_classes)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates
        self.neg_to_pos_ratio = (1.0 - positive_fraction) / positive_fraction

    def _features(self, batch: ImageBatch) -> tuple[dict[str, Tensor], Tensor]:
        features = self.backbone(batch.tensors)
        features = [features] if isinstance(features, Tensor) else list(features.values())
        return self.head(features), self.anchor_generator(batch.tensors.shape[-2:], features)

    def compute_losses(self, batch: ImageBatch, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        head_outputs, anchors = self._features(batch)
        return self.loss_from_outputs(head_outputs, anchors, targets)

    def loss_from_outputs(
        self, head_outputs: dict[str, Tensor], anchors: Tensor, targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """The losses from the head's outputs, the default boxes [A, 4] and the (resized) targets."""
        regression, logits = head_outputs["bbox_regression"], head_outputs["cls_logits"]
        num_images, num_anchors, num_classes = logits.shape
        cls_targets = torch.zeros((num_images, num_anchors), dtype=torch.int64, device=logits.device)
        images, anchor_idx, gt_boxes = [], [], []
        for i, target in enumerate(targets):
            if target["boxes"].shape[0] == 0:
                continue
            matched = self.proposal_matcher(box_iou(target["boxes"], anchors))
            foreground = torch.where(matched >= 0)[0]
            gt = matched[foreground]
            cls_targets[i, foreground] = target["labels"][gt]
            images.append(torch.full_like(foreground, i))
            anchor_idx.append(foreground)
            gt_boxes.append(target["boxes"][gt])
        num_foreground = sum(int(idx.numel()) for idx in anchor_idx)
        if num_foreground:
            images, anchor_idx, gt_boxes = torch.cat(images), torch.cat(anchor_idx), torch.cat(gt_boxes)
            box_targets = self.box_coder.encode(gt_boxes.to(anchors.dtype), anchors[anchor_idx])
            bbox_loss = F.smooth_l1_loss(regression[images, anchor_idx], box_targets, reduction="sum")
        else:
            bbox_loss = regression.sum() * 0.0

        cls_loss = softmax_focal_loss(
            logits.reshape(-1, num_classes), cls_targets.reshape(-1), gamma=0.0, reduction="none"
        ).view(num_images, num_anchors)
        foreground = cls_targets > 0
        # hard negative mining: the image's neg_to_pos_ratio x positives highest-loss negatives;
        # positives rank last (-inf) and count only where an image has too few negatives
        num_negative = self.neg_to_pos_ratio * foreground.sum(1, keepdim=True)
        k = min(num_anchors, int(torch.ceil(num_negative.max()).item()))
        negative_sum = cls_loss.new_zeros(())
        if k > 0:
            negative_loss = cls_loss.detach().masked_fill(foreground, -float("inf"))
            hardest = negative_loss.topk(k, dim=1).indices
            chosen = torch.arange(k, device=logits.device)[None] < num_negative
            negative_sum = cls_loss.gather(1, hardest)[chosen].sum()
        normalizer = max(1, num_foreground)
        return {
            "bbox_regression": bbox_loss / normalizer,
            "classification": (cls_loss[foreground].sum() + negative_sum) / normalizer,
        }

    def compute_detections(self, batch: ImageBatch) -> list[dict[str, Tensor]]:
        head_outputs, anchors = self._features(batch)
        return self.postprocess_detections(head_outputs, anchors, batch.image_sizes)

    def postprocess_detections(
        self, head_outputs: dict[str, Tensor], anchors: Tensor, image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Detections per image (module docstring): labels in [1, num_classes), boxes clipped to
        the image, at most ``detections_per_img`` in decreasing score."""
        regression = head_outputs["bbox_regression"]
        scores = F.softmax(head_outputs["cls_logits"], dim=-1)
        num_images, num_anchors, _ = scores.shape
        foreground = scores[..., 1:].transpose(1, 2)  # [N, C - 1, A]
        masked = torch.where(foreground > self.score_thresh, foreground, -1.0)
        top_scores, top_idx = masked.topk(min(self.topk_candidates, num_anchors), dim=2)
        images, classes, rank = torch.where(top_scores > self.score_thresh)
        anchor_idx = top_idx[images, classes, rank]
        scores, labels = top_scores[images, classes, rank], classes + 1
        boxes = self.box_coder.decode(regression[images, anchor_idx], anchors[anchor_idx])
        boxes = clip_boxes_per_image(boxes, images, image_sizes)
        keep = nms_per_image(boxes, scores, labels, images, num_images, self.nms_thresh, self.detections_per_img)
        return [{"boxes": boxes[k], "scores": scores[k], "labels": labels[k]} for k in keep]
