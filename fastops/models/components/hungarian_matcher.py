"""DETR's bipartite matcher (Carion et al. 2020): each image's queries assigned one-to-one to its
targets at minimum cost, the cost a weighted sum of the class probability, the L1 distance of the
boxes and their generalized IoU. The assignment is ``fastops.ops.hungarian_match`` (all images in
one call, in parallel); GIoU is ``fastops.ops.box_overlap`` read in cxcywh directly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...ops import box_overlap, hungarian_match

__all__ = ["HungarianMatcher"]


class HungarianMatcher(nn.Module):
    """DETR's ``HungarianMatcher``: the same costs and weights, the same assignments.

    cost = cost_bbox * L1(pred, target) - cost_class * softmax(logits)[target class]
    - cost_giou * GIoU(pred, target), boxes normalized (cx, cy, w, h).
    """

    def __init__(self, *, cost_class: float = 1.0, cost_bbox: float = 1.0, cost_giou: float = 1.0):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: all costs are 0")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou

    def cost_matrix(self, pred_logits: Tensor, pred_boxes: Tensor, targets: list[dict[str, Tensor]]) -> Tensor:
        """[B, Q, T] costs of every query against every target of the batch (T: all images'
        targets in turn); image b's block is its columns ``sum(sizes[:b]) : sum(sizes[:b + 1])``."""
        batch, queries = pred_logits.shape[:2]
        prob = pred_logits.flatten(0, 1).softmax(-1)  # [B Q, classes + 1]
        boxes = pred_boxes.flatten(0, 1)  # [B Q, 4]
        tgt_ids = torch.cat([t["labels"] for t in targets])
        tgt_boxes = torch.cat([t["boxes"] for t in targets]).to(boxes.dtype)
        cost = self.cost_bbox * torch.cdist(boxes, tgt_boxes, p=1) - self.cost_class * prob[:, tgt_ids]
        if self.cost_giou != 0:
            cost = cost - self.cost_giou * box_overlap(boxes, tgt_boxes, mode="giou", fmt="cxcywh")
        return cost.view(batch, queries, -1)

    @torch.no_grad()
    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        """Args: outputs with ``pred_logits`` [B, Q, classes + 1] and ``pred_boxes`` [B, Q, 4]
        (normalized cxcywh); per image a target dict with ``labels`` int64 [T_b] and ``boxes``
        [T_b, 4] (normalized cxcywh).

        Returns: per image ``(query_indices, target_indices)``, int64 [min(Q, T_b)] each on the
        predictions' device, query indices increasing."""
        if len(targets) != outputs["pred_logits"].shape[0]:
            raise ValueError(
                f"HungarianMatcher: {len(targets)} targets for a batch of {outputs['pred_logits'].shape[0]}"
            )
        cost = self.cost_matrix(outputs["pred_logits"], outputs["pred_boxes"], targets)
        return hungarian_match(cost, sizes=[len(t["boxes"]) for t in targets])
