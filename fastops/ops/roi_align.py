"""RoIAlign and RoIPool (``torchvision.ops.roi_align`` / ``roi_pool``: same signatures and
results), and multi-level FPN RoIAlign in one op (``multi_scale_roi_align``). Their modules
(``RoIAlign``, ``RoIPool``, ``MultiScaleRoIAlign``) are in ``fastops.nn.roi``.

Boxes are ``Tensor[K, 5]`` (batch index, x1, y1, x2, y2) or a list of ``Tensor[L, 4]`` (one per
image), in image coordinates, in the input's dtype and on its device. ``spatial_scale`` maps them to
the feature map (1 / stride).

RoIAlign (Mask R-CNN): each output bin averages ``sampling_ratio`` x ``sampling_ratio`` bilinear
samples (``sampling_ratio <= 0``: ceil(bin size) per axis, per RoI) taken at the centres of a
regular grid over the bin. ``aligned=False`` is the original: box corners map to pixel corners
and a box is at least 1 x 1 feature pixel. ``aligned=True`` (detectron2's ROIAlignV2) shifts the
box by -0.5 pixel so that coordinates name pixel centres, and takes the box size as it is (a
degenerate box samples one point). A sample within one pixel outside the map is clamped to its
border; further outside it counts as 0. RoIPool (Fast R-CNN): the max over each bin of the rounded
box (0 for an empty bin), and its gradient goes to the arg-max pixel (saved by the forward).

Values: float32 and float64 results and gradients are torchvision's bits on the CPU (its
operations in its order); float16 and bfloat16 are computed in float32 (the gradient accumulated in
float32) and rounded once. Saved for backward: the RoIs and the input's shape and layout (RoIPool:
also the arg-max map); never the input. The backward is deterministic on CPU and CUDA (each
gradient element summed by one thread in a fixed order). channels_last (NHWC) inputs are read in
place; the output and the gradient keep the input's memory format.

Edge rules: K = 0 gives an empty output and a zero gradient; a box with a NaN or infinite
coordinate gives zeros and no gradient; NaN or Inf feature values propagate to the outputs whose
samples read them. A batch index that is not an integer in [0, N) raises ``ArgumentError`` on the
CPU (on CUDA it trips an asynchronous device assertion; the RoI is never read out of bounds).

Quantized CPU tensors: ``roi_align`` gives torchvision's quantized results (``fastops.ops.quantized``).

TorchScript and FX: the functions script (``output_size`` is TorchScript's ``BroadcastingList2``:
an int or a pair), and ``torch.fx.symbolic_trace`` records each call as one node. Errors: boxes of
the wrong shape raise ``BoxesShapeError`` (ValueError and torchvision's AssertionError), other bad
arguments ``ArgumentError`` / ``ArgumentTypeError`` (torchvision's RuntimeError).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.jit.annotations import BroadcastingList2

from ._fake import empty_in_layout, is_channels_last, register_fake
from ._jit import script_as, trace_or_type_error
from .errors import ArgumentError, BoxesShapeError, as_torch_error

__all__ = [
    "multi_scale_roi_align",
    "roi_align",
    "roi_pool",
]


# FPN level assignment (Lin et al., 2017, eq. 1): a box of sqrt(area) = CANONICAL_SCALE pixels maps
# to level CANONICAL_LEVEL (torchvision's LevelMapper defaults).
CANONICAL_SCALE = 224
CANONICAL_LEVEL = 4

# ---- op registration: fake kernels and autograd ------------------------------------------------


@register_fake("fastops::roi_align")
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    return empty_in_layout((rois.shape[0], input.shape[1], pooled_height, pooled_width), input, is_channels_last(input))


@register_fake("fastops::roi_align_backward")
def _roi_align_backward_fake(grad, rois, spatial_scale, ph, pw, batch, channels, height, width, sr, aligned, cl):
    return empty_in_layout((batch, channels, height, width), grad, cl)


@register_fake("fastops::multi_scale_roi_align")
def _msra_fake(features, rois, scales, pooled_height, pooled_width, sampling_ratio, aligned, cscale, clevel):
    f = features[0]
    return empty_in_layout((rois.shape[0], f.shape[1], pooled_height, pooled_width), f, is_channels_last(f))


@register_fake("fastops::multi_scale_roi_align_backward")
def _msra_backward_fake(grad, rois, scales, ph, pw, batch, channels, heights, widths, sr, aligned, cscale, clevel, cl):
    return [empty_in_layout((batch, channels, h, w), grad, cl) for h, w in zip(heights, widths)]


@register_fake("fastops::roi_pool")
def _roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
    cl = is_channels_last(input)
    return empty_in_layout(shape, input, cl), empty_in_layout(shape, input, cl, dtype=torch.int32)


@register_fake("fastops::roi_pool_backward")
def _roi_pool_backward_fake(grad, rois, argmax, spatial_scale, ph, pw, batch, channels, height, width, cl):
    return empty_in_layout((batch, channels, height, width), grad, cl)


def _roi_align_setup(ctx, inputs, output):
    input, rois, spatial_scale, ph, pw, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.args = (spatial_scale, ph, pw, *input.shape, sampling_ratio, aligned, is_channels_last(input))


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
        is_channels_last(f),
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
    ctx.args = (spatial_scale, ph, pw, *input.shape, is_channels_last(input))


def _roi_pool_backward(ctx, grad, grad_argmax):
    rois, argmax = ctx.saved_tensors
    grad_input = torch.ops.fastops.roi_pool_backward(grad, rois, argmax, *ctx.args)
    return grad_input, None, None, None, None


torch.library.register_autograd("fastops::roi_pool", _roi_pool_backward, setup_context=_roi_pool_setup)

# ---- public API ----------------------------------------------------------------------------------
# Each public function is written for eager Python; the `_..._script` function named in its
# @script_as is what TorchScript compiles for it (see fastops/ops/_jit.py).


def _eager_pair(output_size) -> tuple[int, int]:
    """(PH, PW) from an int or a sequence of one or two ints (eager Python)."""
    if isinstance(output_size, int):
        return output_size, output_size
    if isinstance(output_size, (torch.Size, tuple, list)):
        if len(output_size) == 1:
            return int(output_size[0]), int(output_size[0])
        if len(output_size) == 2:
            return int(output_size[0]), int(output_size[1])
    raise ArgumentError(f"output_size must be an int or a pair of ints, got {output_size!r}")


def _pair(output_size: BroadcastingList2[int]) -> tuple[int, int]:
    """(PH, PW) from TorchScript's BroadcastingList2 (a list), or an int under torch.compile."""
    if isinstance(output_size, int):
        return output_size, output_size
    return output_size[0], output_size[-1]


def _rois(boxes: Tensor | list[Tensor]) -> Tensor:
    """Tensor[K, 5] as given, or a list of per-image Tensor[L, 4] -> Tensor[K, 5] (no host sync)."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise BoxesShapeError(
                "boxes as a Tensor must be [K, 5] (batch index, x1, y1, x2, y2), got " + str(list(boxes.shape))
            )
        return boxes
    if len(boxes) == 0:
        raise ArgumentError("boxes: the list of per-image boxes is empty")
    ids: list[Tensor] = []
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[1] != 4:
            raise BoxesShapeError("boxes[" + str(i) + "] must be [L, 4], got " + str(list(b.shape)))
        ids.append(torch.full((b.shape[0], 1), float(i), dtype=b.dtype, device=b.device))
    return torch.cat([torch.cat(ids), torch.cat(boxes)], dim=1)


def _eager_rois(boxes) -> Tensor:
    """_rois for eager Python: also a tuple of tensors, with a TypeError for anything else."""
    if isinstance(boxes, Tensor):
        return _rois(boxes)
    if isinstance(boxes, (list, tuple)) and all(isinstance(b, Tensor) for b in boxes):
        return _rois(list(boxes))
    raise TypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")


def _roi_align_script(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: BroadcastingList2[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    ph, pw = _pair(output_size)
    return torch.ops.fastops.roi_align(input, _rois(boxes), spatial_scale, ph, pw, sampling_ratio, aligned)


@script_as(_roi_align_script)
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
        input: Tensor[N, C, H, W] (NCHW or channels_last), float16/bfloat16/float32/float64, or
            quantized (N = 1).
        boxes: Tensor[K, 5] (batch index, x1, y1, x2, y2) or a list of N Tensor[L, 4]; image
            coordinates, the input's dtype and device.
        output_size: (PH, PW) or an int.
        spatial_scale: feature-map size over image size (1/stride).
        sampling_ratio: bilinear samples per bin along each axis; <= 0: ceil(bin size), per RoI.
        aligned: shift boxes by -0.5 pixel (pixel centres; detectron2's ROIAlignV2).

    Returns:
        Tensor[K, C, PH, PW] in the input's dtype and memory format.
    """
    if not isinstance(input, Tensor):
        args = (input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
        return trace_or_type_error(roi_align, args, "input", input)
    try:
        ph, pw = _eager_pair(output_size)
        return torch.ops.fastops.roi_align(
            input, _eager_rois(boxes), float(spatial_scale), ph, pw, int(sampling_ratio), bool(aligned)
        )
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


def _roi_pool_script(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: BroadcastingList2[int],
    spatial_scale: float = 1.0,
) -> Tensor:
    ph, pw = _pair(output_size)
    return torch.ops.fastops.roi_pool(input, _rois(boxes), spatial_scale, ph, pw)[0]


@script_as(_roi_pool_script)
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
    if not isinstance(input, Tensor):
        return trace_or_type_error(roi_pool, (input, boxes, output_size, spatial_scale), "input", input)
    try:
        ph, pw = _eager_pair(output_size)
        return torch.ops.fastops.roi_pool(input, _eager_rois(boxes), float(spatial_scale), ph, pw)[0]
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None


def _multi_scale_roi_align_script(
    features: list[Tensor],
    boxes: Tensor | list[Tensor],
    output_size: BroadcastingList2[int],
    spatial_scales: list[float],
    sampling_ratio: int = -1,
    aligned: bool = False,
    canonical_scale: float = float(CANONICAL_SCALE),
    canonical_level: int = CANONICAL_LEVEL,
) -> Tensor:
    ph, pw = _pair(output_size)
    rois = _rois(boxes)
    if len(spatial_scales) != len(features):
        raise ArgumentError(
            "spatial_scales: one per feature level, got "
            + str(len(spatial_scales))
            + " for "
            + str(len(features))
            + " levels"
        )
    if len(features) == 1:
        return torch.ops.fastops.roi_align(features[0], rois, spatial_scales[0], ph, pw, sampling_ratio, aligned)
    return torch.ops.fastops.multi_scale_roi_align(
        features, rois, spatial_scales, ph, pw, sampling_ratio, aligned, canonical_scale, canonical_level
    )


@script_as(_multi_scale_roi_align_script)
def multi_scale_roi_align(
    features: Sequence[Tensor],
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scales: Sequence[float],
    sampling_ratio: int = -1,
    aligned: bool = False,
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
        canonical_scale, canonical_level: LevelMapper's (best passed by keyword).

    Returns:
        Tensor[K, C, PH, PW] (the first level's dtype and memory format).
    """
    features = list(features)
    for i, f in enumerate(features):
        if not isinstance(f, Tensor):
            args = (features, boxes, output_size, spatial_scales, sampling_ratio, aligned)
            return trace_or_type_error(
                multi_scale_roi_align, (*args, canonical_scale, canonical_level), f"features[{i}]", f
            )
    try:
        ph, pw = _eager_pair(output_size)
        return _multi_scale_roi_align_script(
            features,
            _eager_rois(boxes),
            (ph, pw),
            [float(s) for s in spatial_scales],
            int(sampling_ratio),
            bool(aligned),
            float(canonical_scale),
            int(canonical_level),
        )
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None
