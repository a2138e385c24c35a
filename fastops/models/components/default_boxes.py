"""SSD's default boxes (Liu et al., 2016, section 2.2), as torchvision's ``DefaultBoxGenerator``: the
same constructor and the same boxes in the same order (level, then cell row-major, then box).

Per level k of scale s_k: two square boxes (s_k and sqrt(s_k s_{k+1})) and, per aspect ratio a,
a box of width s_k sqrt(a) and height s_k / sqrt(a) and its transpose, centred on the cells'
centres ((i + 0.5) / f_k, with f_k the image size over ``steps[k]``, or the grid size without
steps), in units of the image's width and height, then scaled to its pixels (xyxy).

One difference in the call: ``forward(image_size, feature_maps)`` returns one Tensor[A, 4] for the
whole batch (every image of the batch has the same size) instead of a copy per image, cached per
(image size, grid sizes, dtype, device) outside torch.compile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["DefaultBoxGenerator"]

_CACHE_SIZE = 16


class DefaultBoxGenerator(nn.Module):
    """Default boxes of SSD for a set of feature maps.

    Args (torchvision's):
        aspect_ratios: per level, the aspect ratios (besides 1) of its boxes.
        min_ratio, max_ratio: the scales' range when ``scales`` is not given (evenly spaced, then 1).
        scales: one scale per level and one more (the last level's second square box).
        steps: per level, the stride of its cells in pixels; None to tile each map evenly.
        clip: clamp the boxes' width and height (relative to the image) into [0, 1].
    """

    def __init__(
        self,
        aspect_ratios: Sequence[Sequence[float]],
        min_ratio: float = 0.15,
        max_ratio: float = 0.9,
        scales: Sequence[float] | None = None,
        steps: Sequence[int] | None = None,
        clip: bool = True,
    ):
        super().__init__()
        if steps is not None and len(aspect_ratios) != len(steps):
            raise ValueError(
                f"aspect_ratios and steps: one entry per level each, got {len(aspect_ratios)} and {len(steps)}"
            )
        num_outputs = len(aspect_ratios)
        if scales is None:
            if num_outputs > 1:
                range_ratio = max_ratio - min_ratio
                scales = [min_ratio + range_ratio * k / (num_outputs - 1.0) for k in range(num_outputs)]
                scales.append(1.0)
            else:
                scales = [min_ratio, max_ratio]
        if len(scales) != num_outputs + 1:
            raise ValueError(f"scales: one per level and one more ({num_outputs + 1}), got {len(scales)}")
        self.aspect_ratios = [list(r) for r in aspect_ratios]
        self.steps = None if steps is None else list(steps)
        self.clip = clip
        self.scales = list(scales)
        self._wh_pairs = [self._wh_pairs_of_level(k) for k in range(num_outputs)]
        self._cache: dict[tuple, Tensor] = {}

    def _wh_pairs_of_level(self, k: int) -> Tensor:
        """Tensor[2 + 2 len(aspect_ratios[k]), 2]: (width, height) of level k's boxes."""
        s_k = self.scales[k]
        s_prime_k = math.sqrt(self.scales[k] * self.scales[k + 1])
        pairs = [[s_k, s_k], [s_prime_k, s_prime_k]]
        for ar in self.aspect_ratios[k]:
            sq_ar = math.sqrt(ar)
            w, h = s_k * sq_ar, s_k / sq_ar
            pairs.extend([[w, h], [h, w]])
        return torch.as_tensor(pairs, dtype=torch.float32)

    def num_anchors_per_location(self) -> list[int]:
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def num_anchors_per_level(self, feature_maps: Sequence[Tensor]) -> list[int]:
        return [f.shape[-2] * f.shape[-1] * a for f, a in zip(feature_maps, self.num_anchors_per_location())]

    def grid_default_boxes(self, image_size: tuple[int, int], grid_sizes: Sequence[tuple[int, int]], dtype) -> Tensor:
        """Tensor[A, 4] (cx, cy, w, h) relative to the image, torchvision's operations in its order."""
        if len(grid_sizes) != len(self._wh_pairs):
            raise ValueError(
                f"DefaultBoxGenerator: boxes for {len(self._wh_pairs)} levels, got {len(grid_sizes)} feature maps"
            )
        boxes = []
        for k, (gh, gw) in enumerate(grid_sizes):
            if self.steps is not None:
                x_f_k, y_f_k = image_size[1] / self.steps[k], image_size[0] / self.steps[k]
            else:
                y_f_k, x_f_k = gh, gw
            shifts_x = ((torch.arange(0, gw) + 0.5) / x_f_k).to(dtype=dtype)
            shifts_y = ((torch.arange(0, gh) + 0.5) / y_f_k).to(dtype=dtype)
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            pairs = self._wh_pairs[k]
            shifts = torch.stack((shift_x, shift_y) * len(pairs), dim=-1).reshape(-1, 2)
            pairs = pairs.clamp(min=0, max=1) if self.clip else pairs
            boxes.append(torch.cat((shifts, pairs.to(dtype).repeat(gh * gw, 1)), dim=1))
        return torch.cat(boxes, dim=0)

    def _boxes(self, image_size: tuple[int, int], grid_sizes: Sequence[tuple[int, int]], dtype, device) -> Tensor:
        boxes = self.grid_default_boxes(image_size, grid_sizes, dtype).to(device)
        x_y_size = torch.tensor([image_size[1], image_size[0]], device=device)
        return torch.cat(
            [(boxes[:, :2] - 0.5 * boxes[:, 2:]) * x_y_size, (boxes[:, :2] + 0.5 * boxes[:, 2:]) * x_y_size], -1
        )

    def forward(self, image_size: tuple[int, int], feature_maps: Sequence[Tensor]) -> Tensor:
        """image_size (H, W) of the batch; feature_maps a list of Tensor[N, C, H_k, W_k]. Returns
        Tensor[sum_k H_k W_k A_k, 4] (xyxy, pixels) in the features' dtype and device."""
        image_size = (int(image_size[0]), int(image_size[1]))
        grid_sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in feature_maps]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        if torch.compiler.is_compiling():
            return self._boxes(image_size, grid_sizes, dtype, device)
        key = (image_size, tuple(grid_sizes), dtype, device)
        boxes = self._cache.get(key)
        if boxes is None:
            boxes = self._boxes(image_size, grid_sizes, dtype, device)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = boxes
        return boxes

    def extra_repr(self) -> str:
        return f"aspect_ratios={self.aspect_ratios}, clip={self.clip}, scales={self.scales}, steps={self.steps}"
