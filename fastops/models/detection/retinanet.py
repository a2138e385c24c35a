"""RetinaNet (Lin et al., 2017) as torchvision's ``RetinaNet``: the same constructor arguments,
module names (state_dicts load both ways) and detections. The focal loss is fastops' fused
kernel over the whole batch; anchors are matched by fastops IoU; detections of every image go
through one fastops ``batched_nms``.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from ..components import (
    AnchorGenerator,
    BoxCoder,
    GeneralizedRCNNTransform,
    ImageBatch,
    Matcher,
    clip_boxes_per_image,
    nms_per_image,
)
from .base import Detector
from .retinanet_head import RetinaNetHead

__all__ = ["RetinaNet", "retinanet_anchor_generator", "scores_above", "topk_per_image"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def retinanet_anchor_generator(base_sizes=(32, 64, 128, 256, 512)) -> AnchorGenerator:
    """Three sizes per level (x, x * 2^(1/3), x * 2^(2/3)) and three aspect ratios (torchvision's)."""
    sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in base_sizes)
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def scores_above(logits: Tensor, thresh: float) -> tuple[Tensor, Tensor, Tensor]:
    """The entries of ``logits`` Tensor[N, M] whose sigmoid exceeds ``thresh``: (image, column,
    score), in row-major order, scores ``torch.sigmoid`` of the logits (torchvision's values).

    The sigmoid is monotonic, so a pass over the logits against a threshold just below
    logit(thresh) finds a superset of the candidates; the exact test runs on that superset only,
    which is what sets the result (the whole [N, M] array is compared, never sigmoid-ed)."""
    if 0.0 < thresh < 1.0:
        bound = math.log(thresh / (1.0 - thresh))
        image, column = torch.nonzero(logits > bound - 1e-4 * max(1.0, abs(bound)), as_tuple=True)
    else:
        image, column = torch.nonzero(logits == logits, as_tuple=True)  # every entry but NaN
    score = torch.sigmoid(logits[image, column])
    keep = score > thresh
    return image[keep], column[keep], score[keep]


def topk_per_image(
    image: Tensor, column: Tensor, score: Tensor, num_images: int, k: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Each image's ``k`` best entries of the (image, column, score) triples (sorted by image),
    image by image, best first (``torch.topk``'s order)."""
    bounds = torch.searchsorted(image, torch.arange(num_images + 1, device=image.device)).tolist()
    parts = []
    for start, end in itertools.pairwise(bounds):
        parts.append(score[start:end].topk(min(k, end - start)).indices + start)
    keep = torch.cat(parts) if parts else image
    return image[keep], column[keep], score[keep]


class RetinaNet(Detector):
    """RetinaNet over a backbone that returns FPN levels (``out_channels`` equal on every level).

    Args (torchvision's): ``backbone``, ``num_classes`` (labels in [0, num_classes)),
    ``min_size``/``max_size``/``image_mean``/``image_std`` (the transform), ``anchor_generator``,
    ``head``, ``proposal_matcher``, ``score_thresh``, ``nms_thresh``, ``detections_per_img``,
    ``fg_iou_thresh``, ``bg_iou_thresh``, ``topk_candidates`` (per level, before NMS); extra
    keyword arguments go to the transform (``size_divisible``, ``fixed_size``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        min_size: int = 800,
        max_size: int = 1333,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        anchor_generator: AnchorGenerator | None = None,
        head: nn.Module | None = None,
        proposal_matcher: Matcher | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 300,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.4,
        topk_candidates: int = 1000,
        **kwargs,
    ):
        super().__init__()
        if not hasattr(backbone, "out_channels"):
            raise ValueError("backbone should have an attribute out_channels (the channels of every level)")
        self.backbone = backbone
        self.anchor_generator = anchor_generator or retinanet_anchor_generator()
        if head is None:
            num_anchors = self.anchor_generator.num_anchors_per_location()[0]
            head = RetinaNetHead(backbone.out_channels, num_anchors, num_classes)
        self.head = head
        self.proposal_matcher = proposal_matcher or Matcher(fg_iou_thresh, bg_iou_thresh, True)
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.transform = GeneralizedRCNNTransform(
            min_size, max_size, image_mean or IMAGENET_MEAN, image_std or IMAGENET_STD, **kwargs
        )
        self.num_classes = num_classes
        self.label_range = (0, num_classes)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates

    def _features(self, batch: ImageBatch) -> tuple[list[Tensor], dict[str, Tensor], Tensor]:
        features = list(self.backbone(batch.tensors).values())
        head_outputs = self.head(features)
        anchors = self.anchor_generator(batch.tensors.shape[-2:], features)
        return features, head_outputs, anchors

    def compute_losses(self, batch: ImageBatch, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        _, head_outputs, anchors = self._features(batch)
        matched, labels, boxes = [], [], []
        for target in targets:
            idx = self.proposal_matcher.match_boxes(target["boxes"], anchors)
            matched.append(idx)
            if target["boxes"].shape[0] == 0:
                labels.append(torch.zeros_like(idx))
                boxes.append(anchors.new_zeros(anchors.shape))
            else:
                labels.append(target["labels"][idx.clamp(min=0)])
                boxes.append(target["boxes"].to(anchors.dtype)[idx.clamp(min=0)])
        matched_idxs = torch.stack(matched)
        return {
            "classification": self.head.classification_head.compute_loss(
                head_outputs["cls_logits"], matched_idxs, torch.stack(labels)
            ),
            "bbox_regression": self.head.regression_head.compute_loss(
                head_outputs["bbox_regression"], anchors, matched_idxs, torch.stack(boxes)
            ),
        }

    def compute_detections(self, batch: ImageBatch) -> list[dict[str, Tensor]]:
        features, head_outputs, anchors = self._features(batch)
        per_level = self.anchor_generator.num_anchors_per_level(features)
        return self.postprocess_detections(head_outputs, anchors, per_level, batch.image_sizes)

    def postprocess_detections(
        self, head_outputs: dict[str, Tensor], anchors: Tensor, per_level: list[int], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Detections per image from the head's outputs: per level the ``topk_candidates`` best
        (anchor, class) scores above ``score_thresh``, decoded and clipped; NMS per class;
        ``detections_per_img`` kept."""
        logits, regression = head_outputs["cls_logits"], head_outputs["bbox_regression"]
        num_images, _, num_classes = logits.shape
        scores, images, anchor_idx, labels = [], [], [], []
        offset = 0
        for level_logits in logits.split(per_level, dim=1):
            image, flat, level_scores = scores_above(level_logits.flatten(1), self.score_thresh)
            image, flat, level_scores = topk_per_image(image, flat, level_scores, num_images, self.topk_candidates)
            scores.append(level_scores)
            images.append(image)
            anchor_idx.append(torch.div(flat, num_classes, rounding_mode="floor") + offset)
            labels.append(flat % num_classes)
            offset += level_logits.shape[1]
        scores, images, anchor_idx, labels = (torch.cat(t) for t in (scores, images, anchor_idx, labels))
        # candidates ordered image by image, each image's levels in order (torchvision's order)
        order = torch.argsort(images, stable=True)
        scores, images, anchor_idx, labels = scores[order], images[order], anchor_idx[order], labels[order]
        boxes = self.box_coder.decode(regression[images, anchor_idx], anchors[anchor_idx])
        boxes = clip_boxes_per_image(boxes, images, image_sizes)
        keep = nms_per_image(boxes, scores, labels, images, num_images, self.nms_thresh, self.detections_per_img)
        return [{"boxes": boxes[k], "scores": scores[k], "labels": labels[k]} for k in keep]
