"""RoIAlign and RoIPool (``torchvision.ops.roi_align`` / ``roi_pool`` and their modules, same
signatures and results), and multi-level FPN RoIAlign in one op (``MultiScaleRoIAlign``).

Kernels: ``csrc/roi_align/``. What they add to torchvision's:

- multi-threaded CPU forward and backward; NCHW features are copied 16 channels at a time into a
  pixel-major tile that stays in cache while every RoI of that image reads it, one vector per
  bilinear corner; outputs and gradients come from a small cache of freed large CPU outputs
  (``fastops.release_output_cache``), so a training loop does not fault in fresh memory each step;
- channels_last (NHWC) inputs are read in place: the output and the input gradient keep the
  input's memory format (torchvision copies to NCHW);
- deterministic backward on CPU and CUDA, always: each gradient element is summed by one thread in
  a fixed order (RoI, bin, sample, corner: torchvision's CPU order, so float32/float64 CPU gradients
  are its bits), no float atomics, no extra memory beyond the gradient;
- float16 and bfloat16 computed in float32 (the gradient accumulated in float32);
- ``multi_scale_roi_align``: level assignment (torchvision's LevelMapper) and pooling of every
  level in one kernel launch, no per-level loop and no host sync, forward and backward;
- bad input: a batch index that is not an integer in [0, N) raises ValueError on the CPU (on CUDA
  it trips an asynchronous device assertion; the RoI is never read out of bounds); a box with a NaN
  or infinite coordinate gives zeros and no gradient; K = 0 gives an empty output and a zero
  gradient. NaN or Inf *feature values* propagate to the outputs whose samples read them.

Boxes are ``Tensor[K, 5]`` (batch index, x1, y1, x2, y2) or a list of ``Tensor[L, 4]`` (one per
image), in the input's dtype and on its device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "multi_scale_roi_align",
    "roi_align",
    "roi_pool",
]


def _channels_last(x: Tensor) -> bool:
    """The kernels' layout rule: NHWC memory that is not also NCHW memory."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _empty(shape, like: Tensor, channels_last: bool, dtype=None) -> Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device, memory_format=fmt)


# FPN level assignment (Lin et al., 2017, eq. 1): a box of sqrt(area) = CANONICAL_SCALE pixels maps
# to level CANONICAL_LEVEL (torchvision's LevelMapper defaults).
CANONICAL_SCALE = 224
CANONICAL_LEVEL = 4

# ---- op registration: fake kernels and autograd ------------------------------------------------


@torch.library.register_fake("fastops::roi_align")
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    return _empty((rois.shape[0], input.shape[1], pooled_height, pooled_width), input, _channels_last(input))


@torch.library.register_fake("fastops::roi_align_backward")
def _roi_align_backward_fake(grad, rois, spatial_scale, ph, pw, batch, channels, height, width, sr, aligned, cl):
    return _empty((batch, channels, height, width), grad, cl)


@torch.library.register_fake("fastops::multi_scale_roi_align")
def _msra_fake(features, rois, scales, pooled_height, pooled_width, sampling_ratio, aligned, cscale, clevel):
    f = features[0]
    return _empty((rois.shape[0], f.shape[1], pooled_height, pooled_width), f, _channels_last(f))


@torch.library.register_fake("fastops::multi_scale_roi_align_backward")
def _msra_backward_fake(grad, rois, scales, ph, pw, batch, channels, heights, widths, sr, aligned, cscale, clevel, cl):
    return [_empty((batch, channels, h, w), grad, cl) for h, w in zip(heights, widths)]


@torch.library.register_fake("fastops::roi_pool")
def _roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
    cl = _channels_last(input)
    return _empty(shape, input, cl), _empty(shape, input, cl, dtype=torch.int32)


@torch.library.register_fake("fastops::roi_pool_backward")
def _roi_pool_backward_fake(grad, rois, argmax, spatial_scale, ph, pw, batch, channels, height, width, cl):
    return _empty((batch, channels, height, width), grad, cl)


def _roi_align_setup(ctx, inputs, output):
    input, rois, spatial_scale, ph, pw, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.args = (spatial_scale, ph, pw, *input.shape, sampling_ratio, aligned, _channels_last(input))


def _roi_align_backward(ctx, grad):
    (rois,) = ctx.saved_tensors
    spatial_scale, ph, pw, n, c, h, w, sampling_ratio, aligned, cl = ctx.args
    grad_input = torch.ops.fastops.roi_align_backward(
        grad, rois, spatial_scale, ph, pw, n, c, h, w, sampling_ratio, aligned, cl
    )
    return grad_input, None, None, None, None, None, None


torch.library.register_autograd("fastops::roi_align", _roi_align_backward, setup_context=_roi_align_setup)


def _msra_setup(ctx, inputs, output):
    features, rois, scales, ph, pw, sampling_ratio, aligned, cscale, clevel = inputs
    ctx.save_for_backward(rois)
    f = features[0]
    ctx.args = (
        scales,
        ph,
        pw,
        f.shape[0],
        f.shape[1],
        [x.shape[2] for x in features],
        [x.shape[3] for x in features],
        sampling_ratio,
        aligned,
        cscale,
        clevel,
        _channels_last(f),
    )


def _msra_backward(ctx, grad):
    (rois,) = ctx.saved_tensors
    grads = torch.ops.fastops.multi_scale_roi_align_backward(grad, rois, *ctx.args)
    return list(grads), None, None, None, None, None, None, None, None


torch.library.register_autograd("fastops::multi_scale_roi_align", _msra_backward, setup_context=_msra_setup)


def _roi_pool_setup(ctx, inputs, output):
    input, rois, spatial_scale, ph, pw = inputs
    ctx.save_for_backward(rois, output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.args = (spatial_scale, ph, pw, *input.shape, _channels_last(input))


def _roi_pool_backward(ctx, grad, grad_argmax):
    rois, argmax = ctx.saved_tensors
    grad_input = torch.ops.fastops.roi_pool_backward(grad, rois, argmax, *ctx.args)
    return grad_input, None, None, None, None


torch.library.register_autograd("fastops::roi_pool", _roi_pool_backward, setup_context=_roi_pool_setup)

# ---- public API ----------------------------------------------------------------------------------


def _pair(output_size) -> tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    if isinstance(output_size, (torch.Size, tuple, list)):
        if len(output_size) == 1:
            return int(output_size[0]), int(output_size[0])
        if len(output_size) == 2:
            return int(output_size[0]), int(output_size[1])
    raise ValueError(f"output_size must be an int or a pair of ints, got {output_size!r}")


def _rois(boxes: Tensor | Sequence[Tensor]) -> Tensor:
    """Tensor[K, 5] as given, or a list of per-image Tensor[L, 4] -> Tensor[K, 5] (no host sync)."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                f"boxes as a Tensor must be [K, 5] (batch index, x1, y1, x2, y2), got {tuple(boxes.shape)}"
            )
        return boxes
    if not isinstance(boxes, (list, tuple)) or not all(isinstance(b, Tensor) for b in boxes):
        raise TypeError("boxes must be a Tensor[K, 5] or a list of Tensor[L, 4]")
    if len(boxes) == 0:
        raise ValueError("boxes: the list of per-image boxes is empty")
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{i}] must be [L, 4], got {tuple(b.shape)}")
    ids = [torch.full((b.shape[0], 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)]
    return torch.cat([torch.cat(ids), torch.cat(list(boxes))], dim=1)


def _check_input(input: Tensor, name: str = "input") -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(input).__name__}")


def roi_align(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign of Mask R-CNN, as ``torchvision.ops.roi_align``.

    Args:
        input: Tensor[N, C, H, W] (NCHW or channels_last), float16/bfloat16/float32/float64.
        boxes: Tensor[K, 5] (batch index, x1, y1, x2, y2) or a list of N Tensor[L, 4]; image
            coordinates, the input's dtype and device.
        output_size: (PH, PW) or an int.
        spatial_scale: feature-map size over image size (1/stride).
        sampling_ratio: bilinear samples per bin along each axis; <= 0: ceil(bin size), per RoI.
        aligned: shift boxes by -0.5 pixel (pixel centres; detectron2's ROIAlignV2).

    Returns:
        Tensor[K, C, PH, PW] in the input's dtype and memory format.
    """
    _check_input(input)
    ph, pw = _pair(output_size)
    return torch.ops.fastops.roi_align(
        input, _rois(boxes), float(spatial_scale), ph, pw, int(sampling_ratio), bool(aligned)
    )


def roi_pool(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """RoIPool of Fast R-CNN, as ``torchvision.ops.roi_pool``: the max over each bin of the rounded
    box (0 for an empty bin).

    Args: as ``roi_align``. Returns Tensor[K, C, PH, PW] in the input's dtype and memory format.
    """
    _check_input(input)
    ph, pw = _pair(output_size)
    out, _ = torch.ops.fastops.roi_pool(input, _rois(boxes), float(spatial_scale), ph, pw)
    return out


def multi_scale_roi_align(
    features: Sequence[Tensor],
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scales: Sequence[float],
    sampling_ratio: int = -1,
    aligned: bool = False,
    *,
    canonical_scale: float = CANONICAL_SCALE,
    canonical_level: int = CANONICAL_LEVEL,
) -> Tensor:
    """RoIAlign over FPN levels in one op: each box is pooled from the level torchvision's
    LevelMapper picks, ``clamp(floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6),
    k_min, k_max)`` with ``spatial_scales[i] = 2 ** -(k_min + i)``.

    Args:
        features: the levels, finest first: Tensor[N, C, H_i, W_i], one dtype, device and layout.
        boxes: as ``roi_align`` (image coordinates).
        spatial_scales: one per level, consecutive powers of 1/2.

    Returns:
        Tensor[K, C, PH, PW] (the first level's dtype and memory format).
    """
    features = list(features)
    for i, f in enumerate(features):
        _check_input(f, f"features[{i}]")
    ph, pw = _pair(output_size)
    if len(spatial_scales) != len(features):
        raise ValueError(f"spatial_scales: one per feature level, got {len(spatial_scales)} for {len(features)}")
    rois = _rois(boxes)
    if len(features) == 1:
        return torch.ops.fastops.roi_align(
            features[0], rois, float(spatial_scales[0]), ph, pw, int(sampling_ratio), bool(aligned)
        )
    return torch.ops.fastops.multi_scale_roi_align(
        features,
        rois,
        [float(s) for s in spatial_scales],
        ph,
        pw,
        int(sampling_ratio),
        bool(aligned),
        float(canonical_scale),
        int(canonical_level),
    )
