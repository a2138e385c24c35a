"""Convolution modules over ``fastops.ops.conv``: drop-ins for ``torch.nn.Conv2d`` and
``torch.nn.ConvTranspose2d`` (subclasses: same constructor, parameters ``weight`` and ``bias``,
state_dicts load both ways) and DeepLab v3's ``ASPP`` (torchvision's layout and state_dict keys)
whose convolution branches run as one fused op.

Path selection (``path=``): "fastops" always runs our kernels, "torch" always torch's convolution
(oneDNN on the CPU, cuDNN on the GPU), "auto" (default) picks per call by this rule, measured on
the development machine (2-core Xeon, AVX-512; ``benchmarks/bench_conv.py``, docs/ARCHITECTURE.md):

- our kernels when the taps that can see the input cover at most ``AUTO_USEFUL_FRACTION`` (0.6)
  of the dense tap-by-output work: large atrous rates on small maps, where torch computes every
  tap over the padding and we skip it (a 3x3 at rate 12 on 33x33: 0.57; rate 24: 0.27; rate 36:
  0.11);
- our kernels for a transposed convolution whose kernel equals its stride (U-Net's k2s2: four
  GEMMs writing disjoint pixel phases, no overlap), and for any ungrouped transposed convolution
  our direct kernels run (a float32 CPU input, the AVX-512 kernels in use, a horizontal stride of
  at most 2, channel counts multiples of 32): U-Net's k4s2p1 1.4x forward, 1.0x with backward;
- torch's convolution otherwise: dense 3x3 convolutions, where our direct kernels and oneDNN's
  tie (0.9-1.1x on 256 channels, 64x64; our GEMM path, taken off AVX-512 or outside float32, is
  slower), general transposed ones, and grouped convolutions (our kernels run one small GEMM per
  group and tap; not measured, so not chosen automatically).

The fraction is a property of the shapes only, so the choice is the same on every call with the
same shapes (and under torch.compile it is made at trace time).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._library import cpu_isa
from ..ops import conv as ops

__all__ = ["ASPP", "AUTO_USEFUL_FRACTION", "Conv2d", "ConvTranspose2d", "useful_fraction"]

PATHS = ("auto", "fastops", "torch")
AUTO_USEFUL_FRACTION = 0.6


def _check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    return path


def _valid_count(offset: int, stride: int, size_in: int, size_out: int) -> int:
    """Outputs o in [0, size_out) with 0 <= o * stride + offset < size_in."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if size_in - 1 - offset < 0 else (size_in - 1 - offset) // stride + 1
    return max(min(hi, size_out) - min(lo, size_out), 0)


def useful_fraction(in_hw, out_hw, kernel, stride, padding_begin, dilation) -> float:
    """The share of a dense convolution's tap-by-output products whose input pixel lies inside the
    map (1.0 without padding): the work our per-tap kernels do, relative to torch's."""
    useful = 1.0
    for i in range(2):
        covered = sum(_valid_count(k * dilation[i] - padding_begin[i], stride[i], in_hw[i], out_hw[i])
                      for k in range(kernel[i]))
        useful *= covered / max(kernel[i] * out_hw[i], 1)
    return useful


class _PathChoice:
    """The ``path`` argument of the convolution modules (a mixin before the torch module class):
    "fastops" and "torch" force one implementation, "auto" asks the subclass's ``_auto_rule``
    (ungrouped convolutions only; module docstring)."""

    def __init__(self, *args, path: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.path = _check_path(path)

    def _uses_fastops(self, input: Tensor) -> bool:
        if self.path != "auto":
            return self.path == "fastops"
        return self.groups == 1 and self._auto_rule(input)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", path={self.path!r}"


class Conv2d(_PathChoice, nn.Conv2d):
    """``torch.nn.Conv2d`` (same arguments, parameters and results) computed by ``fastops.conv2d``
    where that is faster; ``path`` ("auto", "fastops", "torch") picks the kernels (module docstring)."""

    def _auto_rule(self, input: Tensor) -> bool:
        if isinstance(self.padding, str):
            padding_begin = ops._padding4(self.padding, self.kernel_size, self.stride, self.dilation)[:2]
        else:
            padding_begin = self.padding
        if self.padding_mode != "zeros":
            padding_begin = (0, 0)
        in_hw = input.shape[-2:]
        out_hw = [(in_hw[i] + 2 * padding_begin[i] - self.dilation[i] * (self.kernel_size[i] - 1) - 1)
                  // self.stride[i] + 1 for i in range(2)]
        if min(out_hw) <= 0:
            return True  # our kernels raise torch's error
        fraction = useful_fraction(in_hw, out_hw, self.kernel_size, self.stride, padding_begin, self.dilation)
        return fraction <= AUTO_USEFUL_FRACTION

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if not self._uses_fastops(input):
            return super()._conv_forward(input, weight, bias)
        if self.padding_mode != "zeros":
            return ops.conv2d(F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode), weight,
                              bias, self.stride, 0, self.dilation, self.groups)
        return ops.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_PathChoice, nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` (same arguments, parameters and results) computed by
    ``fastops.conv_transpose2d`` where that is faster; ``path`` picks the kernels (module docstring)."""

    def _auto_rule(self, input: Tensor) -> bool:
        if tuple(self.kernel_size) == tuple(self.stride) and tuple(self.dilation) == (1, 1) and tuple(
                self.padding) == (0, 0):
            return True
        return (input.device.type == "cpu" and input.dtype == torch.float32 and cpu_isa() == "avx512"
                and self.stride[1] <= 2 and self.in_channels % 32 == 0 and self.out_channels % 32 == 0)

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if not self._uses_fastops(input):
            return super().forward(input, output_size)
        if self.padding_mode != "zeros":
            raise ValueError("Only 'zeros' padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size,
                                              2, self.dilation)
        return ops.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                    self.groups, self.dilation)


class _ASPPConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, rate: int, path: str):
        super().__init__(Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False, path=path),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class _ASPPPooling(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, path: str):
        super().__init__(nn.AdaptiveAvgPool2d(1), Conv2d(in_channels, out_channels, 1, bias=False, path=path),
                         nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLab v3 (Chen et al., 2017), laid out as
    ``torchvision.models.segmentation.deeplabv3.ASPP`` (same submodules and state_dict keys):
    a 1x1 branch, one 3x3 atrous branch per rate, image pooling, each with BatchNorm and ReLU, then
    a 1x1 projection with BatchNorm, ReLU and dropout.

    With ``path`` "fastops" (or "auto", where at least one rate leaves a useful fraction at most
    ``AUTO_USEFUL_FRACTION`` on the input's map), the 1x1 and atrous convolutions run as one
    ``fastops.aspp_conv`` call: the 1x1 weight and every branch's centre tap in one GEMM, the
    off-centre taps over their valid rectangles only. "torch" runs each branch through torch's
    convolution (as torchvision does).

    Args (keyword-only after the first three):
        in_channels, out_channels: channels of the input and of each branch and the output.
        rates: the atrous rates (DeepLab v3: 12, 24, 36 at output stride 8; 6, 12, 18 at 16).
        dropout: the projection's dropout probability (torchvision: 0.5).
        path: "auto", "fastops" or "torch".

    Shapes: input [N, in_channels, H, W] -> [N, out_channels, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int], *, dropout: float = 0.5,
                 path: str = "auto"):
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        if any(r <= 0 for r in self.rates):
            raise ValueError(f"rates must be positive, got {self.rates}")
        self.path = _check_path(path)
        branches: list[nn.Module] = [nn.Sequential(Conv2d(in_channels, out_channels, 1, bias=False, path=path),
                                                   nn.BatchNorm2d(out_channels), nn.ReLU())]
        branches += [_ASPPConv(in_channels, out_channels, rate, path) for rate in self.rates]
        branches.append(_ASPPPooling(in_channels, out_channels, path))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            Conv2d(len(self.convs) * out_channels, out_channels, 1, bias=False, path=path),
            nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(dropout))

    def _uses_fused(self, x: Tensor) -> bool:
        if self.path != "auto":
            return self.path == "fastops"
        h, w = x.shape[-2:]
        return any(useful_fraction((h, w), (h, w), (3, 3), (1, 1), (r, r), (r, r)) <= AUTO_USEFUL_FRACTION
                   for r in self.rates)

    def forward(self, x: Tensor) -> Tensor:
        branches = self.convs[: len(self.rates) + 1]
        if self._uses_fused(x):
            weights = [branch[0].weight for branch in branches]
            fused = ops.aspp_conv(x, weights, self.rates)
            c = weights[0].shape[0]
            res = [branch[2](branch[1](fused[:, i * c:(i + 1) * c])) for i, branch in enumerate(branches)]
        else:
            res = [branch(x) for branch in branches]
        res.append(self.convs[-1](x))
        return self.project(torch.cat(res, dim=1))

    def extra_repr(self) -> str:
        return f"rates={self.rates}, path={self.path!r}"
