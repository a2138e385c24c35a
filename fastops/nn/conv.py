"""Convolution modules over ``fastops.ops.conv``: drop-ins for ``torch.nn.Conv2d`` and
``torch.nn.ConvTranspose2d`` (subclasses: same constructor, parameters ``weight`` and ``bias``,
state_dicts load both ways), and the choice that sends each call to our kernels or to torch's.

Path selection (``path=``): "fastops" always runs our kernels, "torch" always torch's convolution
(oneDNN on the CPU, cuDNN on the GPU), "auto" (default) measures: the first call with a new
problem (shapes, layout, dtype, device, the gradients it needs, threads, instruction set) times
both implementations on its own tensors and keeps the faster for every later call
(``fastops.nn.conv_autotune``: cuDNN's benchmark mode, on by default, ``set_conv_autotune(False)``
or FASTOPS_CONV_AUTOTUNE=0 to turn it off). For a channels_last input it also times torch's
convolution on an NCHW copy (``TORCH_NCHW``: the input converted, the output and the input's
gradient converted back, the weight's gradient in the weight's own layout): oneDNN's
channels_last kernels lose to its NCHW ones on some problems (dilated 3x3 convolutions on small
maps, training), so a network in channels_last keeps its layout and each layer runs the faster
one. Grouped convolutions always take torch's (one small GEMM per group and tap in ours).

The fixed rule is the fallback (autotuning off, tracing under torch.compile without a cached
choice) and what a measurement must beat by a margin:

- our kernels when the taps that can see the input cover at most ``AUTO_USEFUL_FRACTION`` of
  the dense tap-by-output work (``useful_fraction``): large atrous rates on small maps, where
  torch computes every tap over the padding and ours skip it;
- our kernels for a transposed convolution whose kernel equals its stride (four GEMMs writing
  disjoint pixel phases, no overlap), and for an ungrouped transposed convolution whose three
  passes all run on our direct kernels (``fastops.ops.conv.direct_passes`` asks the C++ side);
- torch's convolution otherwise.

Our kernels return the input's memory format (channels_last in, channels_last out), as torch's
convolution does, so a network keeps its layout whichever path a layer takes.

Either way a problem's path is fixed after its first call, so results are deterministic; under
torch.compile the choice is made at trace time. The measurements behind the fixed rule are in
``benchmarks/results/`` and the README's speed section.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import conv as ops
from ..ops.conv import is_channels_last
from .conv_autotune import TORCH_NCHW, measured_choice, problem_key

__all__ = [
    "AUTO_USEFUL_FRACTION",
    "PATHS",
    "Conv2d",
    "ConvTranspose2d",
    "check_path",
    "like_input_layout",
    "needed_grads",
    "useful_fraction",
]

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


def needed_grads(*tensors: Tensor | None) -> tuple[bool, ...]:
    """Which of the tensors a call under the current grad mode will give gradients to."""
    enabled = torch.is_grad_enabled()
    return tuple(enabled and t is not None and t.requires_grad for t in tensors)


class _Relayout(torch.autograd.Function):
    """``x`` copied into ``memory_format``; its gradient copied into ``grad_memory_format``."""

    @staticmethod
    def forward(ctx, x: Tensor, memory_format: torch.memory_format, grad_memory_format: torch.memory_format):
        ctx.grad_memory_format = grad_memory_format
        return x.contiguous(memory_format=memory_format)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad.contiguous(memory_format=ctx.grad_memory_format), None, None


def like_input_layout(output: Tensor, input: Tensor) -> Tensor:
    """``output`` in channels_last memory when ``input`` is in it (and not also NCHW-contiguous),
    as torch's convolution returns: our ops keep the layout of the map they are given, but a
    padded copy (``padding_mode``) need not be in the input's, and a network in channels_last
    should stay in it whichever implementation a layer takes."""
    if is_channels_last(input) and output.dim() == 4:
        return output.contiguous(memory_format=torch.channels_last)
    return output


def timing_run(run, tensors: tuple[Tensor | None, ...], grads: tuple[bool, ...]):
    """A call of ``run(*tensors)`` for timing: a forward without a graph when no gradient is
    needed, else forward and backward to the tensors that need one, on detached copies (the
    caller's graph is untouched)."""
    if not any(grads):

        def forward():
            with torch.no_grad():
                run(*tensors)

        return forward
    leaves = tuple(None if t is None else t.detach().requires_grad_(g) for t, g in zip(tensors, grads))
    wanted = [t for t, g in zip(leaves, grads) if g]

    def forward_backward():
        with torch.enable_grad():
            out = run(*leaves)
            torch.autograd.grad(out, wanted, torch.ones_like(out))

    return forward_backward


class _PathChoice:
    """The ``path`` argument of the convolution modules (a mixin before the torch module class):
    "fastops" and "torch" force one implementation, "auto" measures, with the subclass's
    ``_auto_rule`` as the fallback (ungrouped convolutions only; module docstring). A subclass
    supplies ``_run(use_fastops, input, weight, bias, *extra)`` and calls ``_call`` with the
    path ``_choose`` gives."""

    def __init__(self, *args, path: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.path = check_path(path)

    def _choose(self, input: Tensor, *extra, weight: Tensor | None = None, bias: Tensor | None = None) -> str:
        """The path ("fastops", "torch" or ``TORCH_NCHW``) of a call on ``input`` with ``weight``
        and ``bias`` (default: the module's; a caller may convolve with other tensors, as a batch
        norm folded into the weight)."""
        if self.path != "auto":
            return self.path
        if self.groups != 1:
            return "torch"
        rule = self._auto_rule(input, *extra)
        if rule is None:  # no valid output: our kernels raise torch's error
            return "fastops"
        if weight is None:
            weight, bias = self.weight, self.bias
        grads = needed_grads(input, weight, bias)
        key = problem_key(
            type(self).__name__,
            input,
            grads,
            tuple(weight.shape),
            bias is not None,
            tuple(self.stride),
            str(self.padding),
            tuple(self.dilation),
            self.padding_mode,
            *extra,
        )
        tensors = (input, weight, bias)
        names = ("fastops", "torch", TORCH_NCHW) if is_channels_last(input) else ("fastops", "torch")

        def candidates():
            return {
                name: timing_run(lambda x, w, b, p=name: self._call(p, x, w, b, *extra), tensors, grads)
                for name in names
            }

        return measured_choice(key, candidates, input.device, "fastops" if rule else "torch")

    def _call(self, path: str, input: Tensor, weight: Tensor, bias: Tensor | None, *extra) -> Tensor:
        """The convolution on ``path``; ``TORCH_NCHW`` runs torch's on an NCHW copy of a
        channels_last input and returns channels_last (the input's gradient too)."""
        if path != TORCH_NCHW:
            return self._run(path == "fastops", input, weight, bias, *extra)
        nchw_input = _Relayout.apply(input, torch.contiguous_format, torch.channels_last)
        out = self._run(False, nchw_input, weight, bias, *extra)
        return _Relayout.apply(out, torch.channels_last, torch.contiguous_format)

    def selected_path(self, input: Tensor, *extra) -> str:
        """The implementation ("fastops", "torch" or ``TORCH_NCHW``) a call on ``input`` under the
        current grad mode runs (measuring it now if "auto" has not met this problem yet)."""
        return self._choose(input, *extra)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", path={self.path!r}"


class Conv2d(_PathChoice, nn.Conv2d):
    """``torch.nn.Conv2d`` (same arguments, parameters and results) computed by ``fastops.conv2d``
    where that is faster; ``path`` ("auto", "fastops", "torch") picks the kernels (module docstring)."""

    def _auto_rule(self, input: Tensor) -> bool | None:
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
            return None
        fraction = useful_fraction(in_hw, out_hw, self.kernel_size, self.stride, padding_begin, self.dilation)
        return fraction <= AUTO_USEFUL_FRACTION

    def _run(self, use_fastops: bool, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if not use_fastops:
            return super()._conv_forward(input, weight, bias)
        if self.padding_mode != "zeros":
            out = ops.conv2d(
                F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode),
                weight,
                bias,
                self.stride,
                0,
                self.dilation,
                self.groups,
            )
        else:
            out = ops.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        return like_input_layout(out, input)

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self._call(self._choose(input, weight=weight, bias=bias), input, weight, bias)


class ConvTranspose2d(_PathChoice, nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` (same arguments, parameters and results) computed by
    ``fastops.conv_transpose2d`` where that is faster; ``path`` picks the kernels (module docstring).
    ``selected_path(input, output_padding)`` takes the output padding that ``output_size`` implies
    (default: the module's)."""

    def _auto_rule(self, input: Tensor, output_padding: tuple[int, int]) -> bool | None:
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
                (h, w), self.stride, self.padding, self.dilation, self.kernel_size, output_padding
            )
        ]
        if min(out_hw) <= 0:
            return None
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

    def _choose(self, input: Tensor, output_padding: tuple[int, int] | None = None) -> str:
        return super()._choose(input, tuple(self.output_padding if output_padding is None else output_padding))

    def _run(
        self, use_fastops: bool, input: Tensor, weight: Tensor, bias: Tensor | None, output_padding: tuple[int, int]
    ) -> Tensor:
        if not use_fastops:
            return F.conv_transpose2d(
                input, weight, bias, self.stride, self.padding, output_padding, self.groups, self.dilation
            )
        out = ops.conv_transpose2d(
            input, weight, bias, self.stride, self.padding, output_padding, self.groups, self.dilation
        )
        return like_input_layout(out, input)

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Only 'zeros' padding mode is supported for ConvTranspose2d")
        output_padding = tuple(
            self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation)
        )
        return self._call(self._choose(input, output_padding), input, self.weight, self.bias, output_padding)
