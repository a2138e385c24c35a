"""Convolution modules over ``fastops.ops.conv``: drop-ins for ``torch.nn.Conv2d`` and
``torch.nn.ConvTranspose2d`` (subclasses: same constructor, parameters ``weight`` and ``bias``,
state_dicts load both ways), and the rule that sends each call to our kernels or to torch's.

Path selection (``path=``): "fastops" always runs our kernels, "torch" always torch's convolution
(oneDNN on the CPU, cuDNN on the GPU), "auto" (default) picks per call:

- our kernels when the taps that can see the input cover at most ``AUTO_USEFUL_FRACTION`` of
  the dense tap-by-output work (``useful_fraction``): large atrous rates on small maps, where
  torch computes every tap over the padding and ours skip it;
- our kernels for a transposed convolution whose kernel equals its stride (four GEMMs writing
  disjoint pixel phases, no overlap), and for an ungrouped transposed convolution whose three
  passes all run on our direct kernels (``fastops.ops.conv.direct_passes`` asks the C++ side);
- torch's convolution otherwise: dense convolutions, where the two tie, other transposed ones,
  and grouped convolutions (one small GEMM per group and tap in ours).

The rule depends on shapes, dtype and device only, so the choice is the same on every call with
the same inputs (under torch.compile it is made at trace time). The measurements behind it are in
``benchmarks/results/`` and the README's speed section.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import conv as ops

__all__ = ["AUTO_USEFUL_FRACTION", "PATHS", "Conv2d", "ConvTranspose2d", "check_path", "useful_fraction"]

PATHS = ("auto", "fastops", "torch")
AUTO_USEFUL_FRACTION = 0.6


def check_path(path: str) -> str:
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
        covered = sum(
            _valid_count(k * dilation[i] - padding_begin[i], stride[i], in_hw[i], out_hw[i]) for k in range(kernel[i])
        )
        useful *= covered / max(kernel[i] * out_hw[i], 1)
    return useful


class _PathChoice:
    """The ``path`` argument of the convolution modules (a mixin before the torch module class):
    "fastops" and "torch" force one implementation, "auto" asks the subclass's ``_auto_rule``
    (ungrouped convolutions only; module docstring)."""

    def __init__(self, *args, path: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.path = check_path(path)

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
            padding_begin = ops.resolve_padding(self.padding, self.kernel_size, self.stride, self.dilation)[:2]
        else:
            padding_begin = self.padding
        if self.padding_mode != "zeros":
            padding_begin = (0, 0)
        in_hw = input.shape[-2:]
        out_hw = [
            (in_hw[i] + 2 * padding_begin[i] - self.dilation[i] * (self.kernel_size[i] - 1) - 1) // self.stride[i] + 1
            for i in range(2)
        ]
        if min(out_hw) <= 0:
            return True  # our kernels raise torch's error
        fraction = useful_fraction(in_hw, out_hw, self.kernel_size, self.stride, padding_begin, self.dilation)
        return fraction <= AUTO_USEFUL_FRACTION

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if not self._uses_fastops(input):
            return super()._conv_forward(input, weight, bias)
        if self.padding_mode != "zeros":
            return ops.conv2d(
                F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode),
                weight,
                bias,
                self.stride,
                0,
                self.dilation,
                self.groups,
            )
        return ops.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class ConvTranspose2d(_PathChoice, nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` (same arguments, parameters and results) computed by
    ``fastops.conv_transpose2d`` where that is faster; ``path`` picks the kernels (module docstring)."""

    def _auto_rule(self, input: Tensor) -> bool:
        if (
            tuple(self.kernel_size) == tuple(self.stride)
            and tuple(self.dilation) == (1, 1)
            and tuple(self.padding) == (0, 0)
        ):
            return True
        # this module's forward is the input gradient of the conv2d from its output to its input
        n, h, w = (1, *input.shape[-2:]) if input.dim() == 3 else (input.shape[0], *input.shape[-2:])
        out_hw = [
            (size - 1) * s - 2 * p + d * (k - 1) + op + 1
            for size, s, p, d, k, op in zip(
                (h, w), self.stride, self.padding, self.dilation, self.kernel_size, self.output_padding
            )
        ]
        if min(out_hw) <= 0:
            return True  # our kernels raise torch's error
        padding4 = [self.padding[0], self.padding[1], self.padding[0], self.padding[1]]
        passes = ops.direct_passes(
            [n, self.out_channels, *out_hw],
            self.weight.shape,
            self.stride,
            padding4,
            self.dilation,
            self.groups,
            input.dtype,
            input.device,
        )
        return passes == ops.DIRECT_ALL

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if not self._uses_fastops(input):
            return super().forward(input, output_size)
        if self.padding_mode != "zeros":
            raise ValueError("Only 'zeros' padding mode is supported for ConvTranspose2d")
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        return ops.conv_transpose2d(
            input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation
        )
