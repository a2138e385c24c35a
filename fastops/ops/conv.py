"""2-D convolutions for segmentation: atrous (dilated) and transposed, with their gradients, and
the fused atrous branches of an ASPP block, our own kernels (``csrc/conv/``), not calls into
torch's convolution.

``conv2d`` and ``conv_transpose2d`` take the arguments of ``torch.nn.functional.conv2d`` and
``conv_transpose2d`` and give their results (float64 to rounding; float32 to a few ulp of the sum).

Semantics: a k_h x k_w convolution is computed as the sum of its taps, each a 1x1 convolution of
the shifted input, over the output rectangle whose input pixel lies inside the map (a tap that
lies wholly in the zero padding contributes nothing); the transposed convolution is the adjoint
(conv2d's input gradient), with no zeros inserted. How the kernels are organised:
docs/ARCHITECTURE.md ("Convolutions").

Gradients: input, weight and bias (no double backward); saved for backward: the input and the
weight(s). Results and gradients are deterministic for a given thread count: every output element
is summed by one thread in a fixed tap order (the CPU splits channels into one block per thread, so
another thread count may change the last bits). Dtypes: float32 and float64, float16 and bfloat16
(meant for CUDA; they also run on the CPU): their taps accumulate in the input dtype, one rounding
per tap, as torch's GEMM convolutions; weight gradients accumulate in float32. NaN and Inf
propagate as in any sum of products: a NaN input pixel makes NaN every output it reaches through a
tap that covers it, and a tap skipped because it lies in the padding never multiplies anything (so
a NaN weight of a skipped tap does not reach the output, where torch's dense convolution would give
NaN).

Layout: a map in channels_last memory gives results in channels_last (the outputs, and the input
gradients, take the layout of the map they are computed from, as torch's convolution does); on
the CPU the kernels run on that layout as it is.

Bad arguments raise ``ConvArgumentError`` (an ``ArgumentError``: a ``ValueError`` and a
``RuntimeError``, torch's exception type) with torch's messages; dtype mismatches raise
``TypeError``. Under ``torch.fx.symbolic_trace`` each call is one node. (These functions are
torch's, not torchvision's: they are not written for TorchScript.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._fake import empty_in_layout, is_channels_last, register_fake
from ._jit import trace_or_type_error
from .errors import ArgumentError

__all__ = ["ConvArgumentError", "aspp_conv", "conv2d", "conv_transpose2d", "is_channels_last"]


class ConvArgumentError(ArgumentError):
    """Bad convolution arguments: a ValueError, and a RuntimeError as torch raises for them."""


# ---- argument parsing shared by the public functions and the fake kernels ---------------------


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    values = tuple(value)
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) != 2:
        raise ConvArgumentError(
            f"expected {name} to be a single integer value or a list of 2 values to match the convolution "
            f"dimensions, but got {name}={list(values)}"
        )
    return int(values[0]), int(values[1])


def _check_hyper(stride, dilation, groups: int) -> None:
    if min(stride) <= 0:
        raise ConvArgumentError("non-positive stride is not supported")
    if min(dilation) <= 0:
        raise ConvArgumentError(f"dilation should be greater than zero, but got {list(dilation)}")
    if groups <= 0:
        raise ConvArgumentError("non-positive groups is not supported")


def resolve_padding(padding, weight_hw, stride, dilation) -> list[int]:
    """(top, left, bottom, right) from an int, a pair, "same" or "valid" (F.conv2d's rules: "same"
    puts the odd pixel of an even kernel at the end)."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0, 0, 0]
        if padding != "same":
            raise ConvArgumentError(f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
        if any(s != 1 for s in stride):
            raise ConvArgumentError("padding='same' is not supported for strided convolutions")
        total = [d * (k - 1) for d, k in zip(dilation, weight_hw)]
        return [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]
    ph, pw = _pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ConvArgumentError("negative padding is not supported")
    return [ph, pw, ph, pw]


def _check_operands(input: Tensor, weight: Tensor, bias: Tensor | None, op: str) -> None:
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(f"{op}: input and weight must be tensors")
    if input.dim() not in (3, 4):
        raise ConvArgumentError(
            f"Expected 3D (unbatched) or 4D (batched) input to {op}, but got input of size: {list(input.shape)}"
        )
    if weight.dim() != 4:
        raise ConvArgumentError(f"{op}: expected a 4D weight, but got weight of size {list(weight.shape)}")
    if input.dtype != weight.dtype or (bias is not None and bias.dtype != input.dtype):
        raise TypeError(
            f"{op}: input, weight and bias must have one dtype, got {input.dtype}, {weight.dtype}"
            + ("" if bias is None else f", {bias.dtype}")
        )


def _conv_output_hw(in_hw, padding4, weight_hw, stride, dilation) -> list[int]:
    out = []
    for i in range(2):
        padded = in_hw[i] + padding4[i] + padding4[i + 2]
        span = dilation[i] * (weight_hw[i] - 1) + 1
        out.append((padded - span) // stride[i] + 1)
    return out


def _check_conv(input_shape, weight_shape, bias, padding4, stride, dilation, groups) -> list[int]:
    """F.conv2d's shape checks; returns the output's [H, W]."""
    _check_hyper(stride, dilation, groups)
    if weight_shape[0] < groups:
        raise ConvArgumentError(
            f"Given groups={groups}, expected weight to be at least {groups} at dimension 0, but "
            f"got weight of size {list(weight_shape)} instead"
        )
    if weight_shape[0] % groups != 0:
        raise ConvArgumentError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size {list(weight_shape)} instead"
        )
    if input_shape[1] != weight_shape[1] * groups:
        raise ConvArgumentError(
            f"Given groups={groups}, weight of size {list(weight_shape)}, expected "
            f"input{list(input_shape)} to have {weight_shape[1] * groups} channels, but got "
            f"{input_shape[1]} channels instead"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight_shape[0]):
        raise ConvArgumentError(
            f"Given weight of size {list(weight_shape)}, expected bias to be 1-dimensional with "
            f"{weight_shape[0]} elements, but got bias of size {list(bias.shape)} instead"
        )
    padded = [input_shape[2 + i] + padding4[i] + padding4[i + 2] for i in range(2)]
    span = [dilation[i] * (weight_shape[2 + i] - 1) + 1 for i in range(2)]
    if padded[0] < span[0] or padded[1] < span[1]:
        raise ConvArgumentError(
            f"Calculated padded input size per channel: ({padded[0]} x {padded[1]}). Kernel size: "
            f"({span[0]} x {span[1]}). Kernel size can't be greater than actual input size"
        )
    return _conv_output_hw(input_shape[2:], padding4, weight_shape[2:], stride, dilation)


def _check_transpose(input_shape, weight_shape, bias, stride, padding, output_padding, groups, dilation) -> list[int]:
    """F.conv_transpose2d's checks; returns the output's [H, W]."""
    _check_hyper(stride, dilation, groups)
    if min(padding) < 0:
        raise ConvArgumentError("negative padding is not supported")
    for i in range(2):
        if output_padding[i] < 0 or not (output_padding[i] < stride[i] or output_padding[i] < dilation[i]):
            raise ConvArgumentError(
                f"output padding must be smaller than either stride or dilation, but got output_padding_height: "
                f"{output_padding[0]} output_padding_width: {output_padding[1]} stride_height: {stride[0]} "
                f"stride_width: {stride[1]} dilation_height: {dilation[0]} dilation_width: {dilation[1]}"
            )
    if weight_shape[0] % groups != 0:
        raise ConvArgumentError(
            f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
            f"but got weight of size {list(weight_shape)} instead"
        )
    if input_shape[1] != weight_shape[0]:
        raise ConvArgumentError(
            f"Given transposed=1, weight of size {list(weight_shape)}, expected "
            f"input{list(input_shape)} to have {weight_shape[0]} channels, but got "
            f"{input_shape[1]} channels instead"
        )
    out_channels = weight_shape[1] * groups
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != out_channels):
        raise ConvArgumentError(
            f"Given weight of size {list(weight_shape)}, expected bias to be 1-dimensional with "
            f"{out_channels} elements, but got bias of size {list(bias.shape)} instead"
        )
    out = [
        (input_shape[2 + i] - 1) * stride[i]
        - 2 * padding[i]
        + dilation[i] * (weight_shape[2 + i] - 1)
        + output_padding[i]
        + 1
        for i in range(2)
    ]
    if out[0] <= 0 or out[1] <= 0:
        raise ConvArgumentError(
            f"Given input size per channel: ({input_shape[2]} x {input_shape[3]}). Calculated "
            f"output size per channel: ({out[0]} x {out[1]}). Output size is too small"
        )
    return out


# Bits of ``direct_passes``: the passes of a convolution our direct kernels run.
DIRECT_FORWARD, DIRECT_INPUT_GRAD, DIRECT_WEIGHT_GRAD = 1, 2, 4
DIRECT_ALL = DIRECT_FORWARD | DIRECT_INPUT_GRAD | DIRECT_WEIGHT_GRAD


@torch.compiler.assume_constant_result
def direct_passes(input_size, weight_size, stride, padding4, dilation, groups: int, dtype, device) -> int:
    """The passes of ``conv2d(input, weight)`` (sizes [N, C_in, H, W] and [C_out, C_in / groups, KH,
    KW]; padding4 (top, left, bottom, right)) that the direct kernels run, as a bit set of
    ``DIRECT_FORWARD``, ``DIRECT_INPUT_GRAD`` (also a transposed convolution's forward) and
    ``DIRECT_WEIGHT_GRAD``; the others take the per-tap GEMMs. The C++ side decides
    (``direct_passes`` in ``csrc/conv/conv.h``); under torch.compile the answer is a constant of
    the trace."""
    return torch.ops.fastops.conv_direct_passes(
        [int(v) for v in input_size],
        [int(v) for v in weight_size],
        [int(v) for v in stride],
        [int(v) for v in padding4],
        [int(v) for v in dilation],
        int(groups),
        dtype,
        torch.device(device),
    )


# ---- op registration: fake kernels and autograd ------------------------------------------------


def _new_map(like: Tensor, shape) -> Tensor:
    """An empty result of ``shape`` computed from the map ``like``, in ``like``'s layout
    (``is_channels_last`` in ``csrc/conv/conv.h``)."""
    return empty_in_layout(shape, like, is_channels_last(like))


@register_fake("fastops::conv2d")
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups):
    h, w = _check_conv(input.shape, weight.shape, bias, padding, stride, dilation, groups)
    return _new_map(input, (input.shape[0], weight.shape[0], h, w))


@register_fake("fastops::conv2d_input_grad")
def _conv2d_input_grad_fake(grad_out, weight, input_size, stride, padding, dilation, groups):
    return _new_map(grad_out, input_size)


@register_fake("fastops::conv2d_weight_grad")
def _conv2d_weight_grad_fake(grad_out, input, weight_size, stride, padding, dilation, groups):
    return input.new_empty(weight_size)


@register_fake("fastops::conv_transpose2d")
def _conv_transpose2d_fake(input, weight, bias, stride, padding, output_padding, groups, dilation):
    h, w = _check_transpose(input.shape, weight.shape, bias, stride, padding, output_padding, groups, dilation)
    return _new_map(input, (input.shape[0], weight.shape[1] * groups, h, w))


@register_fake("fastops::aspp_conv")
def _aspp_conv_fake(input, weights, rates):
    return _new_map(input, (input.shape[0], weights[0].shape[0] * len(weights), input.shape[2], input.shape[3]))


@register_fake("fastops::aspp_conv_backward")
def _aspp_conv_backward_fake(grad_out, input, weights, rates, input_grad):
    grad_input = _new_map(input, input.shape) if input_grad else input.new_empty((0,))
    return grad_input, [w.new_empty(w.shape) for w in weights]


def _conv2d_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(input, weight)
    ctx.args = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None


def _conv2d_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.fastops.conv2d_input_grad(grad, weight, list(input.shape), *ctx.args)
    if ctx.needs_input_grad[1]:
        grad_weight = torch.ops.fastops.conv2d_weight_grad(grad, input, list(weight.shape), *ctx.args)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias, None, None, None, None


torch.library.register_autograd("fastops::conv2d", _conv2d_backward, setup_context=_conv2d_setup)


def _transpose_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, output_padding, groups, dilation = inputs
    ctx.save_for_backward(input, weight)
    ctx.args = (stride, padding, output_padding, groups, dilation)
    ctx.has_bias = bias is not None


def _transpose_backward(ctx, grad):
    """The transposed convolution is conv2d's input gradient: its input gradient is conv2d of the
    output gradient, its weight gradient conv2d's weight gradient with the roles swapped."""
    input, weight = ctx.saved_tensors
    stride, padding, output_padding, groups, dilation = ctx.args
    # Bottom/right padding that gives at least the input's size (output_padding may exceed padding).
    padding4 = [padding[0], padding[1], max(padding[0] - output_padding[0], 0), max(padding[1] - output_padding[1], 0)]
    h, w = input.shape[2], input.shape[3]
    grad_input = grad_weight = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.fastops.conv2d(grad, weight, None, stride, padding4, dilation, groups)
        if grad_input.shape[2] != h or grad_input.shape[3] != w:
            layout = torch.channels_last if is_channels_last(grad_input) else torch.contiguous_format
            grad_input = grad_input[:, :, :h, :w].contiguous(memory_format=layout)
    if ctx.needs_input_grad[1]:
        grad_weight = torch.ops.fastops.conv2d_weight_grad(
            input, grad, list(weight.shape), stride, padding4, dilation, groups
        )
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad.sum((0, 2, 3))
    return grad_input, grad_weight, grad_bias, None, None, None, None, None


torch.library.register_autograd("fastops::conv_transpose2d", _transpose_backward, setup_context=_transpose_setup)


def _aspp_setup(ctx, inputs, output):
    input, weights, rates = inputs
    ctx.save_for_backward(input, *weights)
    ctx.rates = rates


def _aspp_backward(ctx, grad):
    input, *weights = ctx.saved_tensors
    grad_input, grad_weights = torch.ops.fastops.aspp_conv_backward(
        grad, input, weights, ctx.rates, ctx.needs_input_grad[0]
    )
    return (grad_input if ctx.needs_input_grad[0] else None), list(grad_weights), None


torch.library.register_autograd("fastops::aspp_conv", _aspp_backward, setup_context=_aspp_setup)

# ---- public API ----------------------------------------------------------------------------------


def conv2d(
    input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, groups: int = 1
) -> Tensor:
    """``torch.nn.functional.conv2d`` by per-tap GEMMs (same arguments, same results).

    Args:
        input: Tensor[N, C_in, H, W] or unbatched [C_in, H, W]; float16/bfloat16/float32/float64.
        weight: Tensor[C_out, C_in / groups, KH, KW], the input's dtype.
        bias: Tensor[C_out] or None.
        stride, dilation: int or (h, w), >= 1.
        padding: int, (h, w), "valid" or "same" (stride 1 only; an even kernel's odd pixel goes at
            the bottom/right, as torch).
        groups: divides C_in and C_out.

    Returns:
        Tensor[N, C_out, H_out, W_out] with H_out = (H + 2 p - d (KH - 1) - 1) // s + 1.
    """
    if not isinstance(input, Tensor):
        return trace_or_type_error(conv2d, (input, weight, bias, stride, padding, dilation, groups), "input", input)
    _check_operands(input, weight, bias, "conv2d")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    padding4 = resolve_padding(padding, weight.shape[2:], stride, dilation)
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    _check_conv(x.shape, weight.shape, bias, padding4, stride, dilation, groups)
    out = torch.ops.fastops.conv2d(x, weight, bias, list(stride), padding4, list(dilation), int(groups))
    return out.squeeze(0) if unbatched else out


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> Tensor:
    """``torch.nn.functional.conv_transpose2d``, the adjoint of ``conv2d`` (same arguments, same
    results), without inserting zeros: each tap's GEMM is scattered to its stride phase.

    Args:
        input: Tensor[N, C_in, H, W] or unbatched [C_in, H, W].
        weight: Tensor[C_in, C_out / groups, KH, KW].
        bias: Tensor[C_out] or None.
        stride, padding, output_padding, dilation: int or (h, w); output_padding < stride or < dilation.

    Returns:
        Tensor[N, C_out, H_out, W_out], H_out = (H - 1) s - 2 p + d (KH - 1) + output_padding + 1.
    """
    if not isinstance(input, Tensor):
        args = (input, weight, bias, stride, padding, output_padding, groups, dilation)
        return trace_or_type_error(conv_transpose2d, args, "input", input)
    _check_operands(input, weight, bias, "conv_transpose2d")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    padding, output_padding = _pair(padding, "padding"), _pair(output_padding, "output_padding")
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    _check_transpose(x.shape, weight.shape, bias, stride, padding, output_padding, groups, dilation)
    out = torch.ops.fastops.conv_transpose2d(
        x, weight, bias, list(stride), list(padding), list(output_padding), int(groups), list(dilation)
    )
    return out.squeeze(0) if unbatched else out


def aspp_conv(input: Tensor, weights: Sequence[Tensor], rates: Sequence[int]) -> Tensor:
    """The convolution branches of a DeepLab v3 ASPP block in one op: a 1x1 convolution and one 3x3
    convolution per rate (padding = dilation = rate), concatenated along channels.

    The 1x1 weight and every branch's centre tap read the input as it is, so they are one GEMM
    (M = (1 + len(rates)) C_out); the off-centre taps follow, each over its valid rectangle only.

    Args:
        input: Tensor[N, C_in, H, W].
        weights: [Tensor[C_out, C_in, 1, 1], then Tensor[C_out, C_in, 3, 3] per rate].
        rates: positive ints.

    Returns:
        Tensor[N, (1 + len(rates)) C_out, H, W]: the 1x1 branch's channels, then each rate's.
    """
    if not isinstance(input, Tensor):
        return trace_or_type_error(aspp_conv, (input, weights, rates), "input", input)
    weights, rates = list(weights), [int(r) for r in rates]
    if input.dim() != 4:
        raise ConvArgumentError(f"aspp_conv: expected a 4D input, got {getattr(input, 'shape', type(input))}")
    if len(weights) != len(rates) + 1:
        raise ConvArgumentError(
            f"aspp_conv: expected {len(rates) + 1} weights (the 1x1 one, then one per rate), got {len(weights)}"
        )
    if any(r <= 0 for r in rates):
        raise ConvArgumentError(f"aspp_conv: rates must be positive, got {rates}")
    c_out = weights[0].shape[0]
    for i, w in enumerate(weights):
        k = 1 if i == 0 else 3
        if tuple(w.shape) != (c_out, input.shape[1], k, k):
            raise ConvArgumentError(
                f"aspp_conv: weights[{i}] must have shape {[c_out, input.shape[1], k, k]}, got {list(w.shape)}"
            )
        if w.dtype != input.dtype:
            raise TypeError(f"aspp_conv: weights[{i}] must have the input's dtype {input.dtype}, got {w.dtype}")
    if not rates:  # the 1x1 branch alone (an op with an empty int list has no autograd structure)
        return torch.ops.fastops.conv2d(input, weights[0], None, [1, 1], [0, 0, 0, 0], [1, 1], 1)
    return torch.ops.fastops.aspp_conv(input, weights, rates)
