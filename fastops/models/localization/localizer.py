"""Single-object localization: a backbone and two heads on its last feature map (before any global
pooling), one regressing the object's box, one classifying it; the loss is the class
cross-entropy plus ``box_weight`` times the box's L2 loss.

- ``model(images)`` returns {"boxes": Tensor[N, 4] (cx, cy, w, h) relative to the image's width
  and height; "cls_logits": Tensor[N, num_classes]}, in either mode.
- ``model.loss(images, targets)`` returns {"loss": the weighted sum, "loss_classifier",
  "loss_box"}; ``targets``: one dict per image with "boxes" Tensor[1, 4] (xyxy, the image's
  pixels; one object) and "labels" Tensor[1] in [0, num_classes), or one dict of Tensor[N, 4] and
  Tensor[N].
- ``model.predict(images)`` returns {"boxes": Tensor[N, 4] (xyxy, the image's pixels), "scores":
  Tensor[N] (the softmax probability of the class), "labels": int64 Tensor[N]}.

``images``: Tensor[N, 3, H, W] or a list of Tensor[3, H, W] of one size, floating point in [0, 1];
normalized by ``image_mean``/``image_std`` inside.

The box head (``BoxHead``) keeps where things are: a 1x1 convolution scores every cell of the
feature map, a softmax over the cells weighs them, and the box's centre is the weighted mean of
the cells' centres plus an offset (in cells), its width and height a sigmoid, both from the
weighted mean of the features. A head that flattens the map into a linear layer learns each
position separately and generalizes worse from a few hundred images. The class head pools the map
globally.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ...ops import softmax_focal_loss
from ..backbones import small_resnet
from ..detection.base import check_images

__all__ = ["BoxHead", "SingleObjectLocalizer", "localizer_small"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BoxHead(nn.Module):
    """(cx, cy, w, h) relative to the image from a feature map [N, F, h, w] (module docstring)."""

    def __init__(self, in_features: int, hidden: int = 128):
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv2d(in_features, hidden, kernel_size=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, kernel_size=1)
        )
        self.regression = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4))

    def forward(self, features: Tensor) -> Tensor:
        h, w = features.shape[-2:]
        weights = torch.softmax(self.attention(features).flatten(1), dim=1)  # [N, h * w]
        pooled = torch.einsum("nc,nfc->nf", weights, features.flatten(2))
        ys = (torch.arange(h, dtype=features.dtype, device=features.device) + 0.5) / h
        xs = (torch.arange(w, dtype=features.dtype, device=features.device) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        centre_x, centre_y = weights @ grid_x.reshape(-1), weights @ grid_y.reshape(-1)
        dx, dy, dw, dh = self.regression(pooled).unbind(1)
        return torch.stack((centre_x + dx / w, centre_y + dy / h, torch.sigmoid(dw), torch.sigmoid(dh)), dim=1)


def _feature_map(features, name: str | None) -> Tensor:
    if isinstance(features, Tensor):
        return features
    return features[name] if name is not None else list(features.values())[-1]


class SingleObjectLocalizer(nn.Module):
    """Backbone, box head and class head (module docstring).

    Args:
        backbone: images [N, 3, H, W] -> a feature map [N, F, h, w] or a dict of them.
        num_classes: classes (labels in [0, num_classes)).
        in_features: F (default: ``backbone.out_channels`` of the chosen map when reported).
        feature_name: which entry of a dict (default: the last).
        box_weight: the box loss's weight in the sum.
        hidden: the box head's hidden width.
        image_mean, image_std: per-channel normalization.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        in_features: int | None = None,
        feature_name: str | None = None,
        box_weight: float = 1.0,
        hidden: int = 128,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if in_features is None:
            channels = getattr(backbone, "out_channels", None)
            if isinstance(channels, Mapping):
                channels = channels[feature_name] if feature_name is not None else list(channels.values())[-1]
            if not isinstance(channels, int):
                raise ValueError("in_features: required when the backbone does not report out_channels")
            in_features = channels
        self.backbone = backbone
        self.feature_name = feature_name
        self.num_classes = num_classes
        self.box_weight = float(box_weight)
        self.box_head = BoxHead(in_features, hidden)
        self.cls_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_features, num_classes))
        self.register_buffer("image_mean", torch.tensor(image_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32).view(1, -1, 1, 1))

    def _batch(self, images) -> Tensor:
        images = check_images(images)
        sizes = {tuple(img.shape[-2:]) for img in images}
        if len(sizes) != 1:
            raise ValueError(f"images: the localizer takes images of one size, got sizes {sorted(sizes)}")
        return torch.stack(images)

    def forward(self, images) -> dict[str, Tensor]:
        x = self._batch(images)
        x = (x - self.image_mean.to(x.dtype)) / self.image_std.to(x.dtype)
        features = _feature_map(self.backbone(x), self.feature_name)
        return {"boxes": self.box_head(features), "cls_logits": self.cls_head(features)}

    def _targets(self, targets, count: int, height: int, width: int) -> tuple[Tensor, Tensor]:
        """(boxes [N, 4] relative (cx, cy, w, h), labels [N] int64), checked."""
        if isinstance(targets, Mapping):
            boxes, labels = targets.get("boxes"), targets.get("labels")
        elif isinstance(targets, (list, tuple)):
            if len(targets) != count:
                raise ValueError(f"targets: expected one dict per image ({count}), got {len(targets)}")
            for i, t in enumerate(targets):
                if not isinstance(t, Mapping) or "boxes" not in t or "labels" not in t:
                    raise ValueError(f"targets[{i}]: expected a dict with 'boxes' and 'labels'")
                if t["boxes"].reshape(-1, 4).shape[0] != 1 or t["labels"].numel() != 1:
                    raise ValueError(
                        f"targets[{i}]: the localizer takes exactly one object per image, got boxes of shape "
                        f"{tuple(t['boxes'].shape)}"
                    )
            boxes = torch.stack([t["boxes"].reshape(4) for t in targets])
            labels = torch.stack([t["labels"].reshape(()) for t in targets])
        else:
            raise TypeError(f"targets: expected a list of dicts or a dict of tensors, got {type(targets).__name__}")
        if not isinstance(boxes, Tensor) or boxes.shape != (count, 4) or not boxes.is_floating_point():
            raise ValueError(f"targets['boxes']: expected a float Tensor[{count}, 4] (xyxy)")
        if not isinstance(labels, Tensor) or labels.shape != (count,) or labels.is_floating_point():
            raise ValueError(f"targets['labels']: expected an integer Tensor[{count}]")
        bad = (labels < 0) | (labels >= self.num_classes)
        if bad.any():
            k = int(torch.where(bad)[0][0])
            raise ValueError(f"targets[{k}]['labels']: label {int(labels[k])} is out of range [0, {self.num_classes})")
        bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]) | ~torch.isfinite(boxes).all(1)
        if bad.any():
            k = int(torch.where(bad)[0][0])
            raise ValueError(f"targets[{k}]['boxes']: expected x2 > x1 and y2 > y1 (xyxy), got {boxes[k].tolist()}")
        scale = boxes.new_tensor([width, height, width, height])
        x1, y1, x2, y2 = (boxes / scale).unbind(1)
        relative = torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=1)
        return relative, labels.to(torch.int64)

    def loss(self, images, targets) -> dict[str, Tensor]:
        """The losses (module docstring), in either mode."""
        x = self._batch(images)
        boxes, labels = self._targets(targets, x.shape[0], x.shape[-2], x.shape[-1])
        out = self(x)
        loss_box = (out["boxes"] - boxes.to(out["boxes"])).pow(2).sum(1).mean()
        loss_cls = softmax_focal_loss(out["cls_logits"], labels.to(x.device), gamma=0.0, reduction="mean")
        return {"loss": loss_cls + self.box_weight * loss_box, "loss_classifier": loss_cls, "loss_box": loss_box}

    def predict(self, images) -> dict[str, Tensor]:
        """Boxes (xyxy, pixels), scores and labels, one per image (module docstring)."""
        x = self._batch(images)
        out = self(x)
        height, width = x.shape[-2:]
        cx, cy, w, h = out["boxes"].unbind(1)
        boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=1)
        boxes = (boxes * boxes.new_tensor([width, height, width, height])).clamp(min=0)
        boxes = torch.minimum(boxes, boxes.new_tensor([width, height, width, height]))
        scores, labels = torch.softmax(out["cls_logits"], dim=1).max(dim=1)
        return {"boxes": boxes, "scores": scores, "labels": labels}


def localizer_small(num_classes: int, **kwargs) -> SingleObjectLocalizer:
    """The localizer on ``small_resnet``'s third stage (stride 16, 64 channels; group norm), for
    small images on a CPU. Keyword arguments go to ``SingleObjectLocalizer``."""
    backbone = small_resnet(return_layers={"layer3": "0"})
    return SingleObjectLocalizer(backbone, num_classes, **kwargs)
