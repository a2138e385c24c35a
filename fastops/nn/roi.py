"""RoI pooling modules, ``torchvision.ops.RoIAlign``, ``RoIPool`` and ``MultiScaleRoIAlign`` (same
constructors and results) over ``fastops.ops.roi_align``; ``MultiScaleRoIAlign`` pools every FPN
level in one op (``multi_scale_roi_align``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..ops.roi_align import CANONICAL_LEVEL, CANONICAL_SCALE, multi_scale_roi_align, roi_align, roi_pool

__all__ = ["MultiScaleRoIAlign", "RoIAlign", "RoIPool"]


class RoIAlign(nn.Module):
    """``roi_align`` with fixed parameters, as ``torchvision.ops.RoIAlign``."""

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool = False):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )


class RoIPool(nn.Module):
    """``roi_pool`` with fixed parameters, as ``torchvision.ops.RoIPool``."""

    def __init__(self, output_size, spatial_scale: float):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


def _infer_scale(feature: Tensor, original_size: tuple[int, int]) -> float:
    """torchvision's rule: 2 ** round(log2(feature size / image size)), from the height, in float32."""
    approx = float(feature.shape[-2]) / float(original_size[0])
    return 2 ** float(torch.tensor(approx).log2().round())


class MultiScaleRoIAlign(nn.Module):
    """FPN RoIAlign, as ``torchvision.ops.MultiScaleRoIAlign``, in one op (``multi_scale_roi_align``).

    forward(x, boxes, image_shapes): x maps names to Tensor[N, C, H_i, W_i]; boxes a list of N
    Tensor[L, 4] (or Tensor[K, 5]); image_shapes the (H, W) of each image before batching. The
    levels' scales are inferred from the shapes, as torchvision does (plain Python, no host sync).
    """

    def __init__(
        self,
        featmap_names: list[str],
        output_size,
        sampling_ratio: int,
        *,
        canonical_scale: int = CANONICAL_SCALE,
        canonical_level: int = CANONICAL_LEVEL,
        aligned: bool = False,
    ):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.featmap_names = list(featmap_names)
        self.output_size = tuple(output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level
        self.aligned = aligned

    def forward(
        self, x: dict[str, Tensor], boxes: Tensor | list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        features = [x[name] for name in self.featmap_names]
        if not image_shapes:
            raise ValueError("image_shapes: expected the (H, W) of at least one image")
        original = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
        scales = [_infer_scale(f, original) for f in features]
        return multi_scale_roi_align(
            features,
            boxes,
            self.output_size,
            scales,
            self.sampling_ratio,
            self.aligned,
            canonical_scale=self.canonical_scale,
            canonical_level=self.canonical_level,
        )

    def extra_repr(self) -> str:
        return (
            f"featmap_names={self.featmap_names}, output_size={self.output_size}, sampling_ratio={self.sampling_ratio}"
        )
