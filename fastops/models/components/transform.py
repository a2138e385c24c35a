"""The detectors' image transform, as torchvision's ``GeneralizedRCNNTransform`` (the same
numbers): normalize each image, resize it so its short side is ``min_size`` unless its long side
would pass ``max_size`` (bilinear), batch the images into one zero-padded tensor whose sides are
multiples of ``size_divisible``; targets' boxes (and masks, semantic maps) follow. ``postprocess`` maps
detections back to each original image's pixels and pastes masks (fastops ``paste_masks``).

In training, the short side is drawn from ``min_size`` with torch's generator, one draw per
image, as torchvision does (so a seeded run draws the same sizes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops import paste_masks

__all__ = ["GeneralizedRCNNTransform", "ImageBatch", "resize_boxes"]


class ImageBatch(NamedTuple):
    """Images padded into one tensor, and each image's size before padding."""

    tensors: Tensor  # [N, C, H, W]
    image_sizes: list[tuple[int, int]]


def resize_boxes(boxes: Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """Boxes [K, 4] (xyxy) scaled from an image of ``original_size`` (H, W) to ``new_size``; the
    ratios are computed in float32, as torchvision does."""
    ratio_h = torch.tensor(float(new_size[0]), dtype=torch.float32) / torch.tensor(float(original_size[0]))
    ratio_w = torch.tensor(float(new_size[1]), dtype=torch.float32) / torch.tensor(float(original_size[1]))
    ratios = torch.stack((ratio_w, ratio_h, ratio_w, ratio_h)).to(boxes.device)
    return boxes * ratios


class GeneralizedRCNNTransform(nn.Module):
    """Normalize, resize and batch (module docstring).

    Args:
        min_size: the short side after resizing (an int, or a sequence to draw from in training;
            the last one is used in evaluation).
        max_size: the largest long side after resizing.
        image_mean, image_std: per-channel normalization.
        size_divisible: the batch's height and width are rounded up to a multiple of this.
        fixed_size: (W, H) to resize every image to, instead of min_size/max_size.
    """

    def __init__(
        self,
        min_size: int | Sequence[int],
        max_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        size_divisible: int = 32,
        fixed_size: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.min_size = tuple(min_size) if isinstance(min_size, (list, tuple)) else (min_size,)
        self.max_size = max_size
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.size_divisible = size_divisible
        self.fixed_size = fixed_size

    def _short_side(self, training: bool) -> int:
        if not training:
            return self.min_size[-1]
        index = int(torch.empty(1).uniform_(0.0, float(len(self.min_size))).item())
        return self.min_size[index]

    def _resize(self, image: Tensor, short_side: int) -> tuple[Tensor, list[int] | None, float | None]:
        """image [..., C, H, W] resized; returns it with the (size, scale_factor) used."""
        if self.fixed_size is not None:
            size, scale = [self.fixed_size[1], self.fixed_size[0]], None
        else:
            h, w = image.shape[-2:]
            size, scale = None, min(short_side / min(h, w), self.max_size / max(h, w))
        batched = image if image.dim() == 4 else image[None]
        resized = F.interpolate(
            batched,
            size=size,
            scale_factor=scale,
            mode="bilinear",
            recompute_scale_factor=True if size is None else None,
            align_corners=False,
        )
        return (resized if image.dim() == 4 else resized[0]), size, scale

    def normalize(self, image: Tensor) -> Tensor:
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def _resize_target(self, target: dict[str, Tensor], old: Sequence[int], new: Sequence[int], size, scale) -> dict:
        target = dict(target)
        target["boxes"] = resize_boxes(target["boxes"], old, new)
        if "masks" in target:
            masks = target["masks"]
            target["masks"] = F.interpolate(
                masks[:, None].float(),
                size=size,
                scale_factor=scale,
                recompute_scale_factor=True if size is None else None,
            )[:, 0].byte()
        if "semantic" in target:  # class indices: nearest, so no new classes appear at edges
            target["semantic"] = F.interpolate(
                target["semantic"][None, None].float(),
                size=size,
                scale_factor=scale,
                recompute_scale_factor=True if size is None else None,
            )[0, 0].to(target["semantic"].dtype)
        return target

    def batch_images(self, images: Sequence[Tensor]) -> Tensor:
        """Images [C, H_i, W_i] into one zero-padded Tensor[N, C, H, W] (sides rounded up to
        ``size_divisible``)."""
        stride = float(self.size_divisible)
        max_h = int(math.ceil(max(img.shape[-2] for img in images) / stride) * stride)
        max_w = int(math.ceil(max(img.shape[-1] for img in images) / stride) * stride)
        channels = max(img.shape[0] for img in images)
        batch = images[0].new_zeros((len(images), channels, max_h, max_w))
        for i, img in enumerate(images):
            batch[i, : img.shape[0], : img.shape[1], : img.shape[2]].copy_(img)
        return batch

    def forward(
        self,
        images: Sequence[Tensor] | Tensor,
        targets: Sequence[dict[str, Tensor]] | None = None,
        *,
        training: bool | None = None,
    ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        """images: a list of Tensor[C, H_i, W_i] or a Tensor[N, C, H, W] (floating point, checked
        by the detector); targets: per image a dict with "boxes" (and "masks"), resized alike.
        ``training`` (default: the module's mode) picks the random or the evaluation size."""
        training = self.training if training is None else training
        resized, new_targets = [], None if targets is None else []
        # one image at a time, in torchvision's order: normalize, draw the size, resize
        for i, image in enumerate(images):
            short_side = self._short_side(training)
            image, size, scale = self._resize(self.normalize(image), short_side)
            if targets is not None:
                new_targets.append(self._resize_target(targets[i], images[i].shape[-2:], image.shape[-2:], size, scale))
            resized.append(image)
        image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in resized]
        return ImageBatch(self.batch_images(resized), image_sizes), new_targets

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Boxes back to each original image's pixels; "masks" [K, 1, M, M] pasted into
        Tensor[K, 1, H, W] images."""
        for det, size, original in zip(detections, image_sizes, original_sizes):
            det["boxes"] = resize_boxes(det["boxes"], size, original)
            if "masks" in det:
                det["masks"] = paste_masks(det["masks"], det["boxes"], original)
        return detections

    def extra_repr(self) -> str:
        return (
            f"Normalize(mean={self.image_mean}, std={self.image_std}), "
            f"Resize(min_size={self.min_size}, max_size={self.max_size}, mode='bilinear')"
        )
