"""RoI pooling modules, ``torchvision.ops.RoIAlign``, ``RoIPool`` and ``MultiScaleRoIAlign`` (same
constructors, reprs and results) over ``fastops.ops.roi_align``; ``MultiScaleRoIAlign`` pools every
FPN level in one op (``multi_scale_roi_align``).

Like torchvision's they script with TorchScript, and under ``torch.fx.symbolic_trace`` each call
is one node (RoIAlign and RoIPool: the functional op; MultiScaleRoIAlign: one wrapped function
taking the feature dict), so ``torchvision.models.feature_extraction`` sees them as it sees
torchvision's.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import Tensor, nn
from torch.jit.annotations import BroadcastingList2

from ..ops.errors import ArgumentError
from ..ops.roi_align import CANONICAL_LEVEL, CANONICAL_SCALE, multi_scale_roi_align, roi_align, roi_pool

__all__ = ["MultiScaleRoIAlign", "RoIAlign", "RoIPool"]


class RoIAlign(nn.Module):
    """``roi_align`` with fixed parameters, as ``torchvision.ops.RoIAlign``."""

    def __init__(
        self, output_size: BroadcastingList2[int], spatial_scale: float, sampling_ratio: int, aligned: bool = False
    ):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = float(spatial_scale)  # a float for TorchScript, whatever number was given
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

    def __init__(self, output_size: BroadcastingList2[int], spatial_scale: float):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = float(spatial_scale)  # a float for TorchScript, whatever number was given

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


def _infer_scale(feature: Tensor, original_height: int) -> float:
    """torchvision's rule: 2 ** round(log2(feature size / image size)), from the height, in float32."""
    approx = float(feature.shape[-2]) / float(original_height)
    return 2.0 ** float(torch.tensor(approx).log2().round())


@torch.fx.wrap
def _pool_feature_dict(
    x: dict[str, Tensor],
    boxes: Tensor | list[Tensor],
    image_shapes: list[tuple[int, int]],
    featmap_names: list[str],
    output_size: BroadcastingList2[int],
    sampling_ratio: int,
    aligned: bool,
    canonical_scale: float,
    canonical_level: int,
) -> Tensor:
    """MultiScaleRoIAlign's forward: the maps of x named in featmap_names (in x's order, as
    torchvision), their scales inferred from the largest image's height, all pooled in one op."""
    features: list[Tensor] = []
    for name, feature in x.items():
        if name in featmap_names:
            features.append(feature)
    if len(image_shapes) == 0:
        raise ArgumentError("image_shapes: expected the (H, W) of at least one image")
    height = 0
    for shape in image_shapes:
        height = max(height, shape[0])
    scales = [_infer_scale(f, height) for f in features]
    return multi_scale_roi_align(
        features, boxes, output_size, scales, sampling_ratio, aligned, canonical_scale, canonical_level
    )


class MultiScaleRoIAlign(nn.Module):
    """FPN RoIAlign, as ``torchvision.ops.MultiScaleRoIAlign``, in one op (``multi_scale_roi_align``).

    forward(x, boxes, image_shapes): x maps names to Tensor[N, C, H_i, W_i]; boxes a list of N
    Tensor[L, 4] (or Tensor[K, 5]); image_shapes the (H, W) of each image before batching. The
    levels' scales are inferred from the shapes on every call, as torchvision infers them on its
    first call (plain Python, no host sync). ``aligned`` (an extension) is RoIAlign's.
    """

    def __init__(
        self,
        featmap_names: list[str],
        output_size: int | tuple[int] | list[int],
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
        return _pool_feature_dict(
            x,
            boxes,
            image_shapes,
            self.featmap_names,
            self.output_size,
            self.sampling_ratio,
            self.aligned,
            float(self.canonical_scale),
            self.canonical_level,
        )

    def extra_repr(self) -> str:
        return (
            f"featmap_names={self.featmap_names}, output_size={self.output_size}, sampling_ratio={self.sampling_ratio}"
        )
