"""The second stage of Faster and Mask R-CNN as torchvision's ``RoIHeads`` (same names, numbers
and detections): proposals pooled from the FPN levels by fastops' one-op multi-level RoIAlign,
classified and refined; masks for Mask R-CNN. Proposals are matched by fastops IoU; the
detections of every image go through one fastops ``batched_nms``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..components import (
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    clip_boxes_per_image,
    nms_per_image,
    project_masks_on_boxes,
)

__all__ = ["FastRCNNPredictor", "RoIHeads", "TwoMLPHead"]


class TwoMLPHead(nn.Module):
    """Two fully connected layers with ReLU on the flattened pooled features."""

    def __init__(self, in_channels: int, representation_size: int):
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(start_dim=1)))))


class FastRCNNPredictor(nn.Module):
    """Class logits [K, num_classes] (class 0 is the background) and per-class box offsets
    [K, num_classes * 4]."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() == 4 and tuple(x.shape[2:]) != (1, 1):
            raise ValueError(f"FastRCNNPredictor: expected [K, C] or [K, C, 1, 1] features, got {tuple(x.shape)}")
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


def _index_per_image(counts: list[int], device) -> Tensor:
    return torch.repeat_interleave(torch.arange(len(counts), device=device), torch.tensor(counts, device=device))


class RoIHeads(nn.Module):
    """Box (and optionally mask) heads on proposals; torchvision's positional arguments.

    Training: ground-truth boxes join the proposals; proposals with IoU >= fg_iou_thresh are
    positives (their box's label), < bg_iou_thresh background; ``batch_size_per_image`` sampled
    with ``positive_fraction`` positives; cross-entropy on classes, smooth L1 (beta 1/9) on the
    positives' offsets of their class; for masks, binary cross-entropy of the positives' mask of
    their class against the ground-truth mask cut at the proposal.
    Inference: softmax scores, per-class boxes decoded and clipped, background dropped, scores
    > score_thresh, boxes >= 0.01 wide and high, NMS per class at nms_thresh, the
    ``detections_per_img`` best; masks of the detections (probabilities, M x M per box).
    """

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        bbox_reg_weights: tuple[float, float, float, float] | None,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
        mask_roi_pool: nn.Module | None = None,
        mask_head: nn.Module | None = None,
        mask_predictor: nn.Module | None = None,
    ):
        super().__init__()
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(bbox_reg_weights or (10.0, 10.0, 5.0, 5.0))
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor

    def has_mask(self) -> bool:
        return self.mask_roi_pool is not None and self.mask_head is not None and self.mask_predictor is not None

    def select_training_samples(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], Tensor]:
        """(sampled proposals, matched ground-truth indices, labels, regression targets [K, 4])."""
        dtype = proposals[0].dtype
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        sampled_proposals, sampled_matched, sampled_labels, matched_boxes = [], [], [], []
        all_labels, all_matched, all_proposals = [], [], []
        for props, gt, target in zip(proposals, gt_boxes, targets):
            props = torch.cat((props, gt))
            if gt.shape[0] == 0:
                matched = torch.zeros(props.shape[0], dtype=torch.int64, device=props.device)
                labels = torch.zeros(props.shape[0], dtype=torch.int64, device=props.device)
            else:
                idx = self.proposal_matcher.match_boxes(gt, props)
                matched = idx.clamp(min=0)
                labels = target["labels"][matched].to(torch.int64)
                labels = torch.where(idx == Matcher.BELOW_LOW_THRESHOLD, 0, labels)
                labels = torch.where(idx == Matcher.BETWEEN_THRESHOLDS, -1, labels)
            all_proposals.append(props)
            all_matched.append(matched)
            all_labels.append(labels)
        pos_masks, neg_masks = self.fg_bg_sampler(all_labels)
        for props, matched, labels, gt, pos, neg in zip(
            all_proposals, all_matched, all_labels, gt_boxes, pos_masks, neg_masks
        ):
            chosen = torch.where(pos | neg)[0]
            sampled_proposals.append(props[chosen])
            sampled_matched.append(matched[chosen])
            sampled_labels.append(labels[chosen])
            gt = gt if gt.shape[0] > 0 else gt.new_zeros(1, 4)
            matched_boxes.append(gt[matched[chosen]])
        regression_targets = self.box_coder.encode(torch.cat(matched_boxes), torch.cat(sampled_proposals))
        return sampled_proposals, sampled_matched, sampled_labels, regression_targets

    def box_loss(
        self, class_logits: Tensor, box_regression: Tensor, labels: list[Tensor], regression_targets: Tensor
    ) -> dict[str, Tensor]:
        labels = torch.cat(labels)
        loss_classifier = F.cross_entropy(class_logits, labels)
        pos = torch.where(labels > 0)[0]
        pred = box_regression.reshape(box_regression.shape[0], -1, 4)[pos, labels[pos]]
        loss_box_reg = F.smooth_l1_loss(pred, regression_targets[pos], beta=1 / 9, reduction="sum") / labels.numel()
        return {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

    def postprocess_detections(
        self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        num_classes = class_logits.shape[-1]
        counts = [p.shape[0] for p in proposals]
        image = _index_per_image(counts, class_logits.device)
        boxes = self.box_coder.decode(
            box_regression.reshape(-1, num_classes, 4), torch.cat(proposals)[:, None, :]
        )  # [K, C, 4]
        scores = F.softmax(class_logits, -1)
        # drop the background column; candidates ordered proposal by proposal, then class
        boxes, scores = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1)
        labels = torch.arange(1, num_classes, device=scores.device).repeat(image.shape[0])
        image = image.repeat_interleave(num_classes - 1)
        boxes = clip_boxes_per_image(boxes, image, image_sizes)
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        idx = torch.where((scores > self.score_thresh) & (widths >= 0.01) & (heights >= 0.01))[0]
        boxes, scores, labels, image = boxes[idx], scores[idx], labels[idx], image[idx]
        keep = nms_per_image(boxes, scores, labels, image, len(proposals), self.nms_thresh, self.detections_per_img)
        return [{"boxes": boxes[k], "labels": labels[k], "scores": scores[k]} for k in keep]

    def mask_loss(
        self,
        mask_logits: Tensor,
        proposals: list[Tensor],
        matched: list[Tensor],
        targets: list[dict[str, Tensor]],
    ) -> Tensor:
        size = mask_logits.shape[-1]
        labels = torch.cat([t["labels"][m] for t, m in zip(targets, matched)])
        mask_targets = torch.cat(
            [project_masks_on_boxes(t["masks"], p, m, size) for t, p, m in zip(targets, proposals, matched)]
        )
        if mask_targets.numel() == 0:
            return mask_logits.sum() * 0
        chosen = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
        return F.binary_cross_entropy_with_logits(chosen, mask_targets)

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
        *,
        training: bool,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Detections per image in the batch's pixels (inference) or the losses (training)."""
        if training:
            if targets is None:
                raise ValueError("targets: required in training")
            proposals, matched, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_sizes))
        class_logits, box_regression = self.box_predictor(box_features)
        if training:
            losses = self.box_loss(class_logits, box_regression, labels, regression_targets)
            if self.has_mask():
                positive = [torch.where(lab > 0)[0] for lab in labels]
                mask_proposals = [p[i] for p, i in zip(proposals, positive)]
                mask_matched = [m[i] for m, i in zip(matched, positive)]
                pooled = self.mask_roi_pool(features, mask_proposals, image_sizes)
                mask_logits = self.mask_predictor(self.mask_head(pooled))
                losses["loss_mask"] = self.mask_loss(mask_logits, mask_proposals, mask_matched, targets)
            return [], losses
        detections = self.postprocess_detections(class_logits, box_regression, proposals, image_sizes)
        if self.has_mask():
            boxes = [d["boxes"] for d in detections]
            mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, image_sizes)))
            labels = torch.cat([d["labels"] for d in detections])
            probs = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels][:, None].sigmoid()
            for d, m in zip(detections, probs.split([b.shape[0] for b in boxes])):
                d["masks"] = m
        return detections, {}
