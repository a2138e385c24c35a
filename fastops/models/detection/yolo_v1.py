"""YOLO v1 (Redmon et al., 2016, "You Only Look Once").

The image (resized to ``image_size`` x ``image_size``) is divided into an S x S grid. Each cell
predicts B boxes (x, y: the centre's offset in the cell, in [0, 1]; sqrt(w), sqrt(h): the square
roots of the size relative to the image; a confidence) and C class probabilities shared by its
boxes: S x S x (B * 5 + C) numbers, reshaped by those named sizes (any S, B, C).

Loss (sum-squared error, summed over the grid and averaged over the images):

    λ_coord Σ 1obj_ij [(x - x̂)² + (y - ŷ)² + (√w - √ŵ)² + (√h - √ĥ)²]
    + Σ 1obj_ij (C_ij - IoU_ij)² + λ_noobj Σ 1noobj_ij C_ij² + Σ 1obj_i Σ_c (p_i(c) - p̂_i(c))²

where the object whose centre falls in cell i is assigned to the cell's predictor j of highest
IoU with it (fastops IoU; the "responsible" predictor, 1obj_ij), the confidence target is that IoU,
every other predictor's confidence is pulled to 0 (1noobj_ij), λ_coord = 5 and λ_noobj = 0.5.
When several objects' centres fall in one cell, the first listed is that cell's object.

Detections: class-specific scores p_i(c) * C_ij per box, filtered at ``score_thresh``, NMS per class
(fastops ``multiclass_nms``), at most ``detections_per_img`` per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from ...nn import Conv2dNormActivation
from ...ops import box_overlap, multiclass_nms, multiclass_nms_to_dicts
from ..backbones import small_resnet
from ..backbones.darknet import darknet
from ..components import GeneralizedRCNNTransform, ImageBatch
from .base import Detector
from .retinanet import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["YOLOv1", "YOLOv1Head", "yolo_v1", "yolo_v1_small"]

BOX_PARAMS = 5  # x, y, sqrt(w), sqrt(h), confidence


class YOLOv1Head(nn.Module):
    """Convolutions, pooling to the S x S grid, then two fully connected layers (leaky ReLU,
    dropout) to S x S x (B * 5 + C) outputs; returns Tensor[N, S, S, B * 5 + C].

    ``conv_channels``: the channels of the convolutions after the backbone (the paper: four of
    1024, the second of stride 2); ``hidden``: the first fully connected layer's width (4096)."""

    def __init__(
        self,
        in_channels: int,
        grid_size: int,
        boxes_per_cell: int,
        num_classes: int,
        *,
        conv_channels: Sequence[int] = (1024, 1024, 1024, 1024),
        conv_strides: Sequence[int] = (1, 2, 1, 1),
        hidden: int = 4096,
        dropout: float = 0.5,
        norm_layer=None,
    ):
        super().__init__()
        activation = partial(nn.LeakyReLU, 0.1)
        convs, channels = [], in_channels
        for out, stride in zip(conv_channels, conv_strides):
            convs.append(
                Conv2dNormActivation(channels, out, 3, stride, norm_layer=norm_layer, activation_layer=activation)
            )
            channels = out
        self.convs = nn.Sequential(*convs)
        self.pool = nn.AdaptiveAvgPool2d((grid_size, grid_size))
        self.outputs_per_cell = boxes_per_cell * BOX_PARAMS + num_classes
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * grid_size * grid_size, hidden),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, grid_size * grid_size * self.outputs_per_cell),
        )
        self.grid_size = grid_size

    def forward(self, x: Tensor) -> Tensor:
        s = self.grid_size
        return self.fc(self.pool(self.convs(x))).view(x.shape[0], s, s, self.outputs_per_cell)


class YOLOv1(Detector):
    """YOLO v1 over any backbone returning a dict of feature maps (the last one is used).

    Args:
        backbone: reports ``out_channels`` per output name.
        num_classes: labels in [0, num_classes).
        grid_size (S), boxes_per_cell (B).
        head: default ``YOLOv1Head`` with the paper's sizes.
        image_size: images are resized to this square (448 in the paper).
        lambda_coord, lambda_noobj: the loss weights (5 and 0.5).
        score_thresh, nms_thresh, detections_per_img: post-processing.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        grid_size: int = 7,
        boxes_per_cell: int = 2,
        *,
        head: nn.Module | None = None,
        image_size: int = 448,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        score_thresh: float = 0.1,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
    ):
        super().__init__()
        if grid_size < 1 or boxes_per_cell < 1 or num_classes < 1:
            got = f"{grid_size}, {boxes_per_cell}, {num_classes}"
            raise ValueError(f"grid_size, boxes_per_cell and num_classes must be >= 1, got {got}")
        self.backbone = backbone
        in_channels = list(backbone.out_channels.values())[-1]
        self.head = head or YOLOv1Head(in_channels, grid_size, boxes_per_cell, num_classes)
        self.transform = GeneralizedRCNNTransform(
            image_size,
            image_size,
            image_mean or IMAGENET_MEAN,
            image_std or IMAGENET_STD,
            size_divisible=1,
            fixed_size=(image_size, image_size),
        )
        self.num_classes = num_classes
        self.label_range = (0, num_classes)
        self.grid_size = grid_size
        self.boxes_per_cell = boxes_per_cell
        self.image_size = image_size
        self.lambda_coord = lambda_coord
        self.lambda_noobj = lambda_noobj
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img

    def grid_outputs(self, batch: ImageBatch) -> tuple[Tensor, Tensor]:
        """(boxes Tensor[N, S, S, B, 5] as predicted, class probabilities Tensor[N, S, S, C])."""
        out = self.head(list(self.backbone(batch.tensors).values())[-1])
        boxes, classes = out.split([self.boxes_per_cell * BOX_PARAMS, self.num_classes], dim=-1)
        return boxes.unflatten(-1, (self.boxes_per_cell, BOX_PARAMS)), classes

    def decode(self, boxes: Tensor) -> Tensor:
        """Predicted boxes [..., S, S, B, 5] -> xyxy Tensor[..., S, S, B, 4] in input pixels."""
        s = self.grid_size
        cells = torch.arange(s, device=boxes.device, dtype=boxes.dtype)
        cx = (cells.view(1, s, 1) + boxes[..., 0]) / s  # columns along the grid's second axis
        cy = (cells.view(s, 1, 1) + boxes[..., 1]) / s
        w, h = boxes[..., 2].square(), boxes[..., 3].square()
        xyxy = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)
        return xyxy * self.image_size

    def build_targets(self, targets: list[dict[str, Tensor]], dtype, device) -> tuple[Tensor, Tensor, Tensor]:
        """Per cell: (has an object bool [N, S, S], its box [N, S, S, 4] as (x, y, sqrt w, sqrt h)
        in grid units, its class one-hot [N, S, S, C]); the first listed object of a cell wins."""
        n, s = len(targets), self.grid_size
        has_object = torch.zeros(n, s, s, dtype=torch.bool, device=device)
        box_target = torch.zeros(n, s, s, 4, dtype=dtype, device=device)
        class_target = torch.zeros(n, s, s, self.num_classes, dtype=dtype, device=device)
        for i, target in enumerate(targets):
            boxes = target["boxes"].to(dtype) / self.image_size
            if boxes.shape[0] == 0:
                continue
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            col = (cx * s).floor().clamp(0, s - 1).long()
            row = (cy * s).floor().clamp(0, s - 1).long()
            cell = row * s + col
            # the first object of each cell: no earlier object in the same cell
            same_cell = cell[:, None] == cell[None, :]
            chosen = torch.where(~torch.tril(same_cell, diagonal=-1).any(dim=1))[0]
            r, c = row[chosen], col[chosen]
            has_object[i, r, c] = True
            wh = (boxes[chosen, 2:] - boxes[chosen, :2]).sqrt()
            offsets = torch.stack((cx[chosen] * s - c, cy[chosen] * s - r), dim=-1)
            box_target[i, r, c] = torch.cat((offsets, wh), dim=-1)
            class_target[i, r, c, target["labels"][chosen]] = 1.0
        return has_object, box_target, class_target

    def compute_losses(self, batch: ImageBatch, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        boxes, classes = self.grid_outputs(batch)
        has_object, box_target, class_target = self.build_targets(targets, boxes.dtype, boxes.device)
        # IoU of each cell's B predictions with the cell's object (in input pixels)
        target_xyxy = self.decode(torch.cat((box_target, torch.zeros_like(box_target[..., :1])), dim=-1)[..., None, :])
        predicted_xyxy = self.decode(boxes.detach())
        iou = box_overlap(predicted_xyxy, target_xyxy.expand_as(predicted_xyxy), aligned=True)  # [N, S, S, B]
        responsible = torch.zeros_like(iou, dtype=torch.bool)
        responsible.scatter_(-1, iou.argmax(dim=-1, keepdim=True), True)
        responsible &= has_object[..., None]
        obj = responsible.to(boxes.dtype)
        coord = (boxes[..., :4] - box_target[..., None, :]).square().sum(-1)
        confidence = boxes[..., 4]
        n = boxes.shape[0]
        return {
            "loss_box": self.lambda_coord * (obj * coord).sum() / n,
            "loss_object": (obj * (confidence - iou.to(boxes.dtype)).square()).sum() / n,
            "loss_no_object": self.lambda_noobj * ((1 - obj) * confidence.square()).sum() / n,
            "loss_class": (has_object[..., None] * (classes - class_target).square()).sum() / n,
        }

    def compute_detections(self, batch: ImageBatch) -> list[dict[str, Tensor]]:
        boxes, classes = self.grid_outputs(batch)
        n = boxes.shape[0]
        xyxy = self.decode(boxes).clamp(0, self.image_size).reshape(n, -1, 4)  # [N, S*S*B, 4]
        scores = (boxes[..., 4:5] * classes[..., None, :]).reshape(n, -1, self.num_classes)
        out = multiclass_nms(
            xyxy,
            scores,
            score_threshold=self.score_thresh,
            iou_threshold=self.nms_thresh,
            topk=scores.shape[1] * self.num_classes,
            max_detections=self.detections_per_img,
        )
        return multiclass_nms_to_dicts(out)


def yolo_v1(
    num_classes: int,
    grid_size: int = 7,
    boxes_per_cell: int = 2,
    *,
    backbone: nn.Module | None = None,
    norm_layer=None,
    **kwargs,
) -> YOLOv1:
    """YOLO v1 as in the paper (448 x 448 input, DarkNet, four 1024-channel convolutions, a
    4096-wide fully connected layer); ``backbone`` replaces DarkNet (any backbone here, e.g.
    ``resnet50(return_layers=["layer4"])``). ``norm_layer`` adds a normalization to DarkNet and the
    head (the paper has none). Other keyword arguments: ``YOLOv1``'s."""
    backbone = backbone or darknet(norm_layer=norm_layer)
    if "head" not in kwargs:
        in_channels = list(backbone.out_channels.values())[-1]
        kwargs["head"] = YOLOv1Head(in_channels, grid_size, boxes_per_cell, num_classes, norm_layer=norm_layer)
    return YOLOv1(backbone, num_classes, grid_size, boxes_per_cell, **kwargs)


def yolo_v1_small(num_classes: int, grid_size: int = 4, boxes_per_cell: int = 2, **kwargs) -> YOLOv1:
    """A small YOLO v1 for 128 x 128 images on a CPU: ``small_resnet`` to stride 32 (a 4 x 4 map),
    two 64-channel convolutions, a 256-wide fully connected layer, no dropout."""
    backbone = small_resnet(return_layers=["layer4"])
    head = YOLOv1Head(
        backbone.out_channels["layer4"],
        grid_size,
        boxes_per_cell,
        num_classes,
        conv_channels=(64, 64),
        conv_strides=(1, 1),
        hidden=256,
        dropout=0.0,
    )
    kwargs.setdefault("image_size", 128)
    return YOLOv1(backbone, num_classes, grid_size, boxes_per_cell, head=head, **kwargs)
