"""Anchor boxes on a grid of feature-map cells, as torchvision's ``AnchorGenerator`` (same
constructor and the same anchors, in the same order: level, then cell row-major, then
(aspect ratio, size)).

One difference in the call: ``forward(image_size, feature_maps)`` returns one Tensor[A, 4] for the
whole batch (every image of a padded batch has the same anchors) instead of a copy per image, and
anchors are cached per (image size, grid sizes, dtype, device) outside torch.compile.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["AnchorGenerator", "cell_anchors"]

_CACHE_SIZE = 16


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float], dtype=torch.float32) -> Tensor:
    """Zero-centred anchors Tensor[len(aspect_ratios) * len(sizes), 4] (x1, y1, x2, y2), rounded to
    integers: for aspect ratio r = height / width and size s, width s / sqrt(r), height s * sqrt(r)."""
    scales = torch.as_tensor(sizes, dtype=dtype)
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    """Anchors for each level i: ``sizes[i]`` x ``aspect_ratios[i]`` per cell, centred on the
    cell's top-left pixel times the level's stride (image size // grid size, per axis).

    forward(image_size, feature_maps): image_size (H, W) of the padded batch; feature_maps a list
    of Tensor[N, C, H_i, W_i]. Returns Tensor[sum_i H_i * W_i * A_i, 4] in the features' dtype and
    device.
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[int]] = ((128, 256, 512),),
        aspect_ratios: Sequence[Sequence[float]] = ((0.5, 1.0, 2.0),),
    ):
        super().__init__()
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (aspect_ratios,) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError(
                f"sizes and aspect_ratios: one entry per level each, got {len(sizes)} and {len(aspect_ratios)}"
            )
        self.sizes = sizes
        self.aspect_ratios = aspect_ratios
        self.cell_anchors = [cell_anchors(s, a) for s, a in zip(sizes, aspect_ratios)]
        self._cache: dict[tuple, Tensor] = {}

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def num_anchors_per_level(self, feature_maps: Sequence[Tensor]) -> list[int]:
        return [f.shape[-2] * f.shape[-1] * a for f, a in zip(feature_maps, self.num_anchors_per_location())]

    def grid_anchors(self, image_size: tuple[int, int], grid_sizes: Sequence[tuple[int, int]], dtype, device) -> Tensor:
        if len(grid_sizes) != len(self.cell_anchors):
            raise ValueError(
                f"AnchorGenerator: anchors for {len(self.cell_anchors)} levels, got {len(grid_sizes)} feature maps"
            )
        anchors = []
        for (gh, gw), base in zip(grid_sizes, self.cell_anchors):
            stride_h, stride_w = image_size[0] // gh, image_size[1] // gw
            shifts_x = torch.arange(gw, dtype=torch.int32, device=device) * stride_w
            shifts_y = torch.arange(gh, dtype=torch.int32, device=device) * stride_h
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            base = base.to(dtype=dtype, device=device)
            anchors.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        return torch.cat(anchors)

    def forward(self, image_size: tuple[int, int], feature_maps: Sequence[Tensor]) -> Tensor:
        image_size = (int(image_size[0]), int(image_size[1]))
        grid_sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in feature_maps]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        if torch.compiler.is_compiling():
            return self.grid_anchors(image_size, grid_sizes, dtype, device)
        key = (image_size, tuple(grid_sizes), dtype, device)
        anchors = self._cache.get(key)
        if anchors is None:
            anchors = self.grid_anchors(image_size, grid_sizes, dtype, device)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = anchors
        return anchors
