"""Quantized CPU tensors in ``nms`` and ``roi_align``, with torchvision's results.

Both are registered for the dispatcher's QuantizedCPU key of ``fastops::nms`` and
``fastops::roi_align``, so the public functions (eager or TorchScript) reach them with no check on
the float path; like torchvision's, they have no gradient.

- ``nms``: the IoU is computed on the integer representations. Scale and zero point cancel in an
  IoU and keep the score order, so this is the NMS of the dequantized boxes; it is torchvision's
  computation (the areas and IoUs of integers below 2^24 are exact in float32). Boxes and scores
  may also be a quantized / float mix.
- ``roi_align``: torchvision's ``qroi_align`` operation for operation, in float32: the boxes
  dequantized, each bin's bilinear weights applied to the integer values and summed sample by
  sample with the sum of the weights, then ``scale (sum - zero_point sum_w) / count`` rounded half
  to even into the input's quantization (scale, zero point, dtype), clamped to its range. As in
  torchvision the input holds one image (N = 1) and the boxes must be quantized too; their batch
  index column is not read. Sampling points outside the map count with weight 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import ArgumentError

__all__: list[str] = []

_lib = torch.library.Library("fastops", "IMPL")


def _integer_values(t: Tensor) -> Tensor:
    return t.int_repr().float() if t.is_quantized else t


def _nms_quantized(boxes: Tensor, scores: Tensor, idxs: Tensor | None, iou_threshold: float) -> Tensor:
    return torch.ops.fastops.nms(_integer_values(boxes), _integer_values(scores), idxs, iou_threshold)


def _sample_coords(start: Tensor, bin_size: Tensor, grid: Tensor, bins: int, samples: int) -> Tensor:
    """Sample coordinates [K, bins, samples] along one axis: start + b bin + (i + 0.5) bin / grid,
    in torchvision's float32 operation order."""
    b = torch.arange(bins, dtype=torch.float32)
    i = torch.arange(samples, dtype=torch.float32) + 0.5
    return (start[:, None, None] + b[None, :, None] * bin_size[:, None, None]) + (
        i[None, None, :] * bin_size[:, None, None]
    ) / grid.to(torch.float32)[:, None, None]


def _roi_align_quantized(
    input: Tensor,
    rois: Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    if not input.is_quantized or not rois.is_quantized:
        raise ArgumentError("roi_align: if input is quantized, rois must also be quantized (and the reverse)")
    if input.dim() != 4 or input.shape[0] != 1:
        raise ArgumentError(
            "roi_align: Only one image per batch is allowed when quantized tensors are passed, got input of shape "
            f"{tuple(input.shape)}"
        )
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ArgumentError(f"roi_align: rois must have shape [K, 5], got {tuple(rois.shape)}")
    f32 = torch.float32
    values = input.int_repr()
    qinfo = torch.iinfo(values.dtype)
    scale = torch.tensor(input.q_scale(), dtype=f32)
    zero_point = torch.tensor(float(input.q_zero_point()), dtype=f32)
    boxes = rois.dequantize()
    channels, height, width = values.shape[1:]
    k = boxes.shape[0]
    out = torch.empty((k, channels, pooled_height, pooled_width), dtype=values.dtype)
    if out.numel() == 0:
        return torch._make_per_tensor_quantized_tensor(out, input.q_scale(), input.q_zero_point())

    offset = torch.tensor(0.5 if aligned else 0.0, dtype=f32)
    ss = torch.tensor(spatial_scale, dtype=f32)
    x1, y1, x2, y2 = (boxes[:, i] * ss - offset for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # malformed RoIs forced to 1 x 1
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / pooled_height, roi_w / pooled_width
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.int64)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / pooled_height).to(torch.int64)
        grid_w = torch.ceil(roi_w / pooled_width).to(torch.int64)
    count = torch.clamp(grid_h * grid_w, min=1).to(f32)
    samples_h, samples_w = int(grid_h.max()), int(grid_w.max())

    # every (RoI, bin row, bin column, sample row, sample column) at once: [K, PH, PW, IY, IX]
    y = _sample_coords(y1, bin_h, grid_h, pooled_height, samples_h)[:, :, None, :, None]
    x = _sample_coords(x1, bin_w, grid_w, pooled_width, samples_w)[:, None, :, None, :]
    y, x = torch.broadcast_tensors(y, x)
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width) | y.isnan() | x.isnan()
    y, x = y.clamp(min=0), x.clamp(min=0)
    y_low, x_low = y.to(torch.int64), x.to(torch.int64)
    y_top, x_top = y_low >= height - 1, x_low >= width - 1
    y_high = torch.where(y_top, height - 1, y_low + 1)
    y_low = torch.where(y_top, height - 1, y_low)
    y = torch.where(y_top, y_low.to(f32), y)
    x_high = torch.where(x_top, width - 1, x_low + 1)
    x_low = torch.where(x_top, width - 1, x_low)
    x = torch.where(x_top, x_low.to(f32), x)
    ly, lx = y - y_low.to(f32), x - x_low.to(f32)
    hy, hx = 1.0 - ly, 1.0 - lx
    zero = torch.zeros((), dtype=f32)
    weights = [torch.where(outside, zero, w) for w in (hy * hx, hy * lx, ly * hx, ly * lx)]
    corners = [(y_low, x_low), (y_low, x_high), (y_high, x_low), (y_high, x_high)]
    positions = [torch.where(outside, 0, yy * width + xx) for yy, xx in corners]
    valid_h = torch.arange(samples_h)[None, :] < grid_h[:, None]  # [K, IY]
    valid_w = torch.arange(samples_w)[None, :] < grid_w[:, None]  # [K, IX]

    flat = values[0].reshape(channels, height * width).to(f32)
    acc = torch.zeros((k, channels, pooled_height, pooled_width), dtype=f32)
    sum_w = torch.zeros((k, 1, pooled_height, pooled_width), dtype=f32)
    for iy in range(samples_h):
        for ix in range(samples_w):
            keep = (valid_h[:, iy] & valid_w[:, ix])[:, None, None, None]
            w = [wt[:, None, :, :, iy, ix] for wt in weights]
            v = [flat[:, p[:, :, :, iy, ix]].permute(1, 0, 2, 3) for p in positions]
            term = ((w[0] * v[0] + w[1] * v[1]) + w[2] * v[2]) + w[3] * v[3]
            acc = torch.where(keep, acc + term, acc)
            sum_w = torch.where(keep, sum_w + (((w[0] + w[1]) + w[2]) + w[3]), sum_w)
    value = scale * (acc - zero_point * sum_w) / count[:, None, None, None]
    q = (zero_point + torch.round(value * (1.0 / scale))).to(torch.int64)
    out.copy_(q.clamp(qinfo.min, qinfo.max))
    return torch._make_per_tensor_quantized_tensor(out, input.q_scale(), input.q_zero_point())


_lib.impl("nms", _nms_quantized, "QuantizedCPU")
_lib.impl("roi_align", _roi_align_quantized, "QuantizedCPU")
