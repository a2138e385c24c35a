"""DETR (Carion et al. 2020): detection as set prediction. A backbone's last feature map, projected
to ``hidden_dim`` channels by a 1x1 convolution, plus a 2-D sine positional encoding, goes through
a transformer encoder; a decoder turns ``num_queries`` learned object queries into as many
predictions, each a class (``num_classes`` + 1, the last "no object") and a box (a 3-layer MLP and
a sigmoid: centre, width and height relative to the image).

Training: each image's predictions are matched one-to-one to its objects (``HungarianMatcher``)
and ``SetCriterion`` gives the set loss; with ``aux_loss`` (DETR's default) every decoder layer's
output goes through the same heads and adds its own set loss. The returned losses are already
weighted (``loss_ce``, ``loss_bbox``, ``loss_giou``, and ``<name>_<i>`` for decoder layer i), so
their sum is DETR's total. Inference is DETR's post-processing: softmax, the best class other
than "no object" per query, boxes scaled to the image; no NMS. Detections are the queries sorted
by score (all of them, or the best ``detections_per_img``), boxes clipped to the image.

Padding: images of different sizes are batched as one padded tensor, and a padding mask keeps the
padded positions out of every attention's keys and out of the positional encoding's counts. With
``backbone_by_size`` (the default), the backbone runs once per distinct image size on the unpadded
images and its feature maps are padded instead, so an image's predictions do not depend on the
other images of its batch (convolutions and norms near the border otherwise read the padding; a
batch norm in training mode then takes each size group's statistics, which DETR's frozen batch
norm does not have). Without it, the backbone runs once on the padded batch and the mask is the
pixel mask resized (nearest) to the feature map, as DETR does: one backbone call for any mix of
sizes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ...nn import Conv2d
from ...nn.positional_encoding import PositionEmbeddingSine
from ..components import GeneralizedRCNNTransform, ImageBatch, SetCriterion, clip_boxes_per_image
from .base import Detector
from .detr_transformer import DETRTransformer

__all__ = ["DETR", "MLP", "box_cxcywh_to_xyxy", "box_xyxy_to_cxcywh"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


class MLP(nn.Module):
    """DETR's ``MLP``: ``num_layers`` linear layers (``layers``), ReLU between them."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim, *[hidden_dim] * (num_layers - 1), output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x


def _last_feature_map(features: dict[str, Tensor] | Tensor) -> Tensor:
    return features if isinstance(features, Tensor) else list(features.values())[-1]


def _backbone_channels(backbone: nn.Module) -> int:
    channels = getattr(backbone, "out_channels", None)
    if isinstance(channels, dict):
        return int(list(channels.values())[-1])
    if isinstance(channels, int):
        return channels
    raise ValueError("backbone: needs an `out_channels` (an int or a dict whose last entry is the map DETR reads)")


class DETR(Detector):
    """DETR over a backbone returning a dict of feature maps (the last one is used) or one map.

    Args:
        backbone: a module with ``out_channels`` (an int, or a dict name -> channels).
        num_classes: object classes, labels in [0, num_classes) (DETR's convention: COCO's 91 is
            the largest category id + 1); the classifier has num_classes + 1 outputs.
        transformer: a ``DETRTransformer`` (default: DETR's, 256 wide, 6 + 6 layers, 8 heads).
        num_queries: object queries (the most objects an image can have).
        aux_loss: add every decoder layer's set loss (DETR's default).
        criterion: a ``SetCriterion`` (default: DETR's costs and weights, ``eos_coef`` 0.1).
        detections_per_img: the best queries kept per image (default: all).
        backbone_by_size: run the backbone per distinct image size (module docstring).
        min_size, max_size, image_mean, image_std, size_divisible: the transform's
            (``GeneralizedRCNNTransform``; DETR's 800 / 1333 and ImageNet's statistics).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        transformer: DETRTransformer | None = None,
        num_queries: int = 100,
        aux_loss: bool = True,
        criterion: SetCriterion | None = None,
        detections_per_img: int | None = None,
        backbone_by_size: bool = True,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        size_divisible: int = 32,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if num_queries < 1:
            raise ValueError(f"num_queries must be at least 1, got {num_queries}")
        if detections_per_img is not None and detections_per_img < 1:
            raise ValueError(f"detections_per_img must be at least 1, got {detections_per_img}")
        self.transformer = transformer if transformer is not None else DETRTransformer()
        hidden_dim = self.transformer.d_model
        self.backbone = backbone
        self.input_proj = Conv2d(_backbone_channels(backbone), hidden_dim, kernel_size=1)
        self.position_embedding = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.criterion = criterion if criterion is not None else SetCriterion(num_classes=num_classes)
        if self.criterion.num_classes != num_classes:
            raise ValueError(f"criterion: built for {self.criterion.num_classes} classes, the model has {num_classes}")
        self.transform = GeneralizedRCNNTransform(
            min_size, max_size, image_mean or IMAGENET_MEAN, image_std or IMAGENET_STD, size_divisible=size_divisible
        )
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.label_range = (0, num_classes)
        self.aux_loss = aux_loss
        self.detections_per_img = num_queries if detections_per_img is None else min(detections_per_img, num_queries)
        self.backbone_by_size = backbone_by_size

    # ---- features and padding mask ---------------------------------------------------------------

    def _features_by_size(self, batch: ImageBatch) -> tuple[Tensor, Tensor]:
        groups: dict[tuple[int, int], list[int]] = {}
        for i, size in enumerate(batch.image_sizes):
            groups.setdefault(size, []).append(i)
        maps: list[Tensor | None] = [None] * len(batch.image_sizes)
        for (h, w), indices in groups.items():
            images = batch.tensors[indices[0] : indices[0] + 1] if len(indices) == 1 else batch.tensors[indices]
            features = _last_feature_map(self.backbone(images[:, :, :h, :w]))
            for k, i in enumerate(indices):
                maps[i] = features[k]
        height = max(m.shape[-2] for m in maps)
        width = max(m.shape[-1] for m in maps)
        features = maps[0].new_zeros((len(maps), maps[0].shape[0], height, width))
        mask = torch.ones((len(maps), height, width), dtype=torch.bool, device=features.device)
        for i, m in enumerate(maps):
            features[i, :, : m.shape[-2], : m.shape[-1]] = m
            mask[i, : m.shape[-2], : m.shape[-1]] = False
        return features, mask

    def _features_padded(self, batch: ImageBatch) -> tuple[Tensor, Tensor]:
        features = _last_feature_map(self.backbone(batch.tensors))
        n, _, height, width = batch.tensors.shape
        pixel_mask = torch.ones((n, height, width), dtype=torch.bool, device=features.device)
        for i, (h, w) in enumerate(batch.image_sizes):
            pixel_mask[i, :h, :w] = False
        mask = nn.functional.interpolate(pixel_mask[None].float(), size=features.shape[-2:])[0].bool()
        return features, mask

    def features(self, batch: ImageBatch) -> tuple[Tensor, Tensor]:
        """The backbone's last map for the batch, Tensor[N, C, h, w], and its padding mask, bool
        Tensor[N, h, w] (True: padding)."""
        if self.backbone_by_size:
            return self._features_by_size(batch)
        return self._features_padded(batch)

    # ---- the network -----------------------------------------------------------------------------

    def head_outputs(self, batch: ImageBatch, all_layers: bool = True) -> dict:
        """DETR's outputs: ``pred_logits`` [N, Q, num_classes + 1], ``pred_boxes`` [N, Q, 4]
        (cxcywh relative to each image's size, before padding), and with ``all_layers``
        ``aux_outputs``: the same for every decoder layer but the last, in order."""
        features, mask = self.features(batch)
        src = self.input_proj(features)
        pos = self.position_embedding(mask, src.dtype)
        hs = self.transformer(src, mask, self.query_embed.weight, pos, all_layers=all_layers)
        logits, boxes = self.class_embed(hs), self.bbox_embed(hs).sigmoid()
        out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if all_layers:
            out["aux_outputs"] = [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]
        return out

    def compute_losses(self, batch: ImageBatch, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        outputs = self.head_outputs(batch, all_layers=self.aux_loss)
        normalized = []
        for target, (h, w) in zip(targets, batch.image_sizes):
            scale = torch.tensor([w, h, w, h], dtype=target["boxes"].dtype, device=target["boxes"].device)
            normalized.append({"labels": target["labels"], "boxes": box_xyxy_to_cxcywh(target["boxes"] / scale)})
        losses = self.criterion(outputs, normalized)
        del losses["loss"]
        weights = self.criterion.weights
        return {k: v * weights[k if k in weights else k.rsplit("_", 1)[0]] for k, v in losses.items()}

    def compute_detections(self, batch: ImageBatch) -> list[dict[str, Tensor]]:
        outputs = self.head_outputs(batch, all_layers=False)
        prob = outputs["pred_logits"].softmax(-1)[..., :-1]
        scores, labels = prob.max(-1)
        sizes = torch.tensor(batch.image_sizes, dtype=scores.dtype, device=scores.device)  # [N, 2] (h, w)
        boxes = box_cxcywh_to_xyxy(outputs["pred_boxes"]) * sizes[:, None, [1, 0, 1, 0]]
        scores, order = scores.topk(self.detections_per_img, dim=1)
        labels = labels.gather(1, order)
        boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
        n = boxes.shape[0]
        image_index = torch.arange(n, device=boxes.device).repeat_interleave(boxes.shape[1])
        boxes = clip_boxes_per_image(boxes.flatten(0, 1), image_index, batch.image_sizes).view(n, -1, 4)
        return [{"boxes": b, "scores": s, "labels": c} for b, s, c in zip(boxes, scores, labels)]
