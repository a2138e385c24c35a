"""Region proposal network (Ren et al., 2015) as torchvision's ``RegionProposalNetwork`` and
``RPNHead``: the same names, numbers and proposals. Anchors are matched by fastops IoU; the
proposals of every image and level go through one fastops ``batched_nms``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...nn import Conv2d, Conv2dNormActivation
from ..components import (
    AnchorGenerator,
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    clip_boxes_per_image,
    nms_per_image,
    topk_per_level,
)
from .retinanet_head import flatten_levels

__all__ = ["RPNHead", "RegionProposalNetwork"]


class RPNHead(nn.Module):
    """A 3x3 convolution (``conv_depth`` of them) then, per anchor, an objectness logit and 4
    box offsets, on every level. forward(levels) -> (logits per level [N, A, H, W], offsets per
    level [N, 4A, H, W])."""

    _version = 2

    def __init__(self, in_channels: int, num_anchors: int, conv_depth: int = 1):
        super().__init__()
        self.conv = nn.Sequential(
            *[Conv2dNormActivation(in_channels, in_channels, kernel_size=3, norm_layer=None) for _ in range(conv_depth)]
        )
        self.cls_logits = Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, 0)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        if local_metadata.get("version", None) is None or local_metadata["version"] < 2:
            for kind in ("weight", "bias"):  # torchvision's version-1 name of the single convolution
                if f"{prefix}conv.{kind}" in state_dict:
                    state_dict[f"{prefix}conv.0.0.{kind}"] = state_dict.pop(f"{prefix}conv.{kind}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, offsets = [], []
        for feature in x:
            t = self.conv(feature)
            logits.append(self.cls_logits(t))
            offsets.append(self.bbox_pred(t))
        return logits, offsets


class RegionProposalNetwork(nn.Module):
    """Proposals from anchors scored and refined by ``head``.

    Per image: the ``pre_nms_top_n`` best anchors of each level, decoded, clipped, boxes smaller
    than 1e-3 dropped, scores below ``score_thresh`` dropped, NMS per level at ``nms_thresh``,
    the ``post_nms_top_n`` best kept. Training: anchors matched to the ground truth (IoU >=
    fg_iou_thresh positive, < bg_iou_thresh negative, best anchors of each box positive),
    ``batch_size_per_image`` sampled with ``positive_fraction`` positives; binary cross-entropy
    on their objectness and smooth L1 (beta 1/9) on the positives' offsets.

    ``pre_nms_top_n`` and ``post_nms_top_n``: dicts with "training" and "testing" counts.
    """

    def __init__(
        self,
        anchor_generator: AnchorGenerator,
        head: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_top_n: dict[str, int],
        post_nms_top_n: dict[str, int],
        nms_thresh: float,
        score_thresh: float = 0.0,
    ):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self._pre_nms_top_n = dict(pre_nms_top_n)
        self._post_nms_top_n = dict(post_nms_top_n)
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = 1e-3

    def _top_n(self, counts: dict[str, int], training: bool) -> int:
        return counts["training" if training else "testing"]

    def filter_proposals(
        self,
        anchors: Tensor,
        objectness: Tensor,
        offsets: Tensor,
        image_sizes: list[tuple[int, int]],
        num_per_level: list[int],
        training: bool,
    ) -> list[Tensor]:
        """Proposals per image (Tensor[K_i, 4]) from ``objectness`` [N, A] and ``offsets`` [N, A, 4]."""
        num_images = objectness.shape[0]
        objectness = objectness.detach()
        top_idx = topk_per_level(objectness, num_per_level, self._top_n(self._pre_nms_top_n, training))
        levels = torch.repeat_interleave(
            torch.arange(len(num_per_level), device=objectness.device),
            torch.tensor(num_per_level, device=objectness.device),
        )[top_idx]
        rows = torch.arange(num_images, device=objectness.device)[:, None]
        scores = torch.sigmoid(objectness[rows, top_idx])
        boxes = self.box_coder.decode(offsets.detach()[rows, top_idx], anchors[top_idx])
        image = rows.expand_as(top_idx).reshape(-1)
        boxes = clip_boxes_per_image(boxes.reshape(-1, 4), image, image_sizes)
        scores, levels = scores.reshape(-1), levels.reshape(-1)
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        valid = (widths >= self.min_size) & (heights >= self.min_size) & (scores >= self.score_thresh)
        idx = torch.where(valid)[0]
        boxes, scores, levels, image = boxes[idx], scores[idx], levels[idx], image[idx]
        keep = nms_per_image(
            boxes, scores, levels, image, num_images, self.nms_thresh, self._top_n(self._post_nms_top_n, training)
        )
        return [boxes[k] for k in keep]

    def compute_loss(
        self, anchors: Tensor, objectness: Tensor, offsets: Tensor, targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        labels, matched = [], []
        for target in targets:
            gt = target["boxes"]
            if gt.shape[0] == 0:
                labels.append(torch.zeros(anchors.shape[0], dtype=torch.float32, device=anchors.device))
                matched.append(torch.zeros(anchors.shape[0], dtype=torch.int64, device=anchors.device))
                continue
            idx = self.proposal_matcher.match_boxes(gt, anchors)
            label = (idx >= 0).to(torch.float32)
            label = torch.where(idx == Matcher.BETWEEN_THRESHOLDS, -1.0, label)
            labels.append(label)
            matched.append(idx.clamp(min=0))
        pos_masks, neg_masks = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos_masks))[0]
        neg = torch.where(torch.cat(neg_masks))[0]
        sampled = torch.cat([pos, neg])
        num_anchors = anchors.shape[0]
        pos_image, pos_anchor = pos // num_anchors, pos % num_anchors
        gt_boxes = self._matched_boxes(targets, matched, pos_image, pos_anchor, anchors.dtype)
        regression_targets = self.box_coder.encode(gt_boxes, anchors[pos_anchor])
        pred = offsets.reshape(-1, 4)[pos]
        box_loss = F.smooth_l1_loss(pred, regression_targets, beta=1 / 9, reduction="sum") / sampled.numel()
        objectness_loss = F.binary_cross_entropy_with_logits(
            objectness.reshape(-1)[sampled], torch.cat(labels)[sampled]
        )
        return {"loss_objectness": objectness_loss, "loss_rpn_box_reg": box_loss}

    @staticmethod
    def _matched_boxes(targets, matched, image: Tensor, anchor: Tensor, dtype) -> Tensor:
        """The ground-truth box matched to each (image, anchor) pair (positives only)."""
        padded = max(t["boxes"].shape[0] for t in targets)
        gt = torch.zeros(len(targets), max(padded, 1), 4, dtype=dtype, device=anchor.device)
        for i, t in enumerate(targets):
            gt[i, : t["boxes"].shape[0]] = t["boxes"].to(dtype)
        matched_idx = torch.stack(matched)
        return gt[image, matched_idx[image, anchor]]

    def forward(
        self,
        features: list[Tensor],
        image_size: tuple[int, int],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
        *,
        training: bool,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals per image, and the losses when ``training`` (``targets`` required then).
        ``image_size``: the padded batch's (H, W); ``image_sizes``: each image's."""
        logits, offsets = self.head(features)
        anchors = self.anchor_generator(image_size, features)
        num_per_level = [x.shape[1] * x.shape[2] * x.shape[3] for x in logits]
        objectness = flatten_levels(logits, 1).squeeze(-1)  # [N, A]
        offsets = flatten_levels(offsets, 4)  # [N, A, 4]
        proposals = self.filter_proposals(anchors, objectness, offsets, image_sizes, num_per_level, training)
        losses = {}
        if training:
            if targets is None:
                raise ValueError("targets: required in training")
            losses = self.compute_loss(anchors, objectness, offsets, targets)
        return proposals, losses
