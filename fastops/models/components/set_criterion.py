"""DETR's set prediction loss (Carion et al. 2020): predictions matched one-to-one to targets by
``HungarianMatcher``; cross-entropy over every query (unmatched ones labelled "no object", whose
weight is ``eos_coef``), L1 and generalized IoU losses over the matched boxes, each box loss
divided by the batch's number of targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops import generalized_box_iou_loss
from .hungarian_matcher import HungarianMatcher

__all__ = ["SetCriterion"]


class SetCriterion(nn.Module):
    """DETR's ``SetCriterion`` with its label and box losses.

    Returns ``loss_ce``, ``loss_bbox``, ``loss_giou`` (and each again with suffix ``_<i>`` for
    ``outputs["aux_outputs"][i]``, the decoder's intermediate layers), and ``loss``: their sum
    weighted by ``weight_ce``, ``weight_bbox``, ``weight_giou`` (DETR's 1, 5, 2).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        matcher: HungarianMatcher | None = None,
        eos_coef: float = 0.1,
        weight_ce: float = 1.0,
        weight_bbox: float = 5.0,
        weight_giou: float = 2.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher if matcher is not None else HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2)
        self.weights = {"loss_ce": weight_ce, "loss_bbox": weight_bbox, "loss_giou": weight_giou}
        # float64, cast to the logits' dtype on use: float64 logits get eos_coef unrounded
        empty_weight = torch.ones(num_classes + 1, dtype=torch.float64)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def single(
        self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]], num_boxes: float
    ) -> dict[str, Tensor]:
        """The three losses of one set of predictions (``pred_logits`` [B, Q, classes + 1],
        ``pred_boxes`` [B, Q, 4] normalized cxcywh)."""
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        indices = self.matcher(outputs, targets)
        batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        target_classes[batch_idx, src_idx] = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
        loss_ce = F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight.to(logits.dtype))
        src_boxes = boxes[batch_idx, src_idx]
        tgt_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(src_boxes.dtype)
        loss_bbox = F.l1_loss(src_boxes, tgt_boxes, reduction="sum") / num_boxes
        # eps 0: DETR's GIoU (a zero denominator gives 0 rather than DETR's NaN)
        loss_giou = generalized_box_iou_loss(src_boxes, tgt_boxes, reduction="sum", eps=0.0, fmt="cxcywh") / num_boxes
        return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def forward(self, outputs: dict, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        # normalised by the number of targets (at least 1), as DETR does on one process
        num_boxes = max(float(sum(len(t["labels"]) for t in targets)), 1.0)
        losses = self.single(outputs, targets, num_boxes)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update({f"{k}_{i}": v for k, v in self.single(aux, targets, num_boxes).items()})
        losses["loss"] = sum(self.weights[k.rsplit("_", 1)[0] if k[-1].isdigit() else k] * v for k, v in losses.items())
        return losses
