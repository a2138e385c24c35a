"""Drawn convolution cases shared by the convolution tests: hypothesis strategies for conv2d and
conv_transpose2d arguments, the operands they describe, and a forward plus backward runner."""

import torch
from hypothesis import strategies as st

F64 = dict(rtol=1e-10, atol=1e-12)


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    padding = draw(st.one_of(st.tuples(st.integers(0, 6), st.integers(0, 6)), st.sampled_from(["same", "valid"])))
    if padding == "same":
        stride = (1, 1)
    n = draw(st.integers(0, 2))
    bias = draw(st.booleans())
    return dict(
        n=n,
        c_in=c_in,
        c_out=c_out,
        groups=groups,
        kernel=(kh, kw),
        stride=stride,
        dilation=dilation,
        hw=(h, w),
        padding=padding,
        bias=bias,
    )


def padded_fits(case):
    pad = case["padding"]
    for i in range(2):
        span = case["dilation"][i] * (case["kernel"][i] - 1) + 1
        p = 2 * pad[i] if isinstance(pad, tuple) else (span - 1 if pad == "same" else 0)
        if case["hw"][i] + p < span:
            return False
    return True


def conv_operands(case, dtype=torch.float64, device="cpu"):
    x = torch.randn(case["n"], case["c_in"], *case["hw"], dtype=dtype, device=device)
    w = torch.randn(case["c_out"], case["c_in"] // case["groups"], *case["kernel"], dtype=dtype, device=device)
    b = torch.randn(case["c_out"], dtype=dtype, device=device) if case["bias"] else None
    return x, w, b


def conv_args(case):
    return dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])


def forward_backward(fn, x, w, b, grad_seed, **kw):
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    b = None if b is None else b.detach().clone().requires_grad_()
    out = fn(x, w, b, **kw)
    grad = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(grad_seed)).to(out.device)
    out.backward(grad)
    return out.detach(), x.grad, w.grad, None if b is None else b.grad


@st.composite
def transpose_cases(draw):
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    output_padding = tuple(draw(st.integers(0, max(stride[i], dilation[i]) - 1)) for i in range(2))
    hw = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    return dict(
        n=draw(st.integers(0, 2)),
        c_in=c_in,
        c_out=c_out,
        groups=groups,
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        padding=padding,
        output_padding=output_padding,
        hw=hw,
        bias=draw(st.booleans()),
    )


def transpose_operands(case, dtype=torch.float64, device="cpu"):
    x = torch.randn(case["n"], case["c_in"], *case["hw"], dtype=dtype, device=device)
    w = torch.randn(case["c_in"], case["c_out"] // case["groups"], *case["kernel"], dtype=dtype, device=device)
    b = torch.randn(case["c_out"], dtype=dtype, device=device) if case["bias"] else None
    return x, w, b


def transpose_args(case):
    return dict(
        stride=case["stride"],
        padding=case["padding"],
        output_padding=case["output_padding"],
        groups=case["groups"],
        dilation=case["dilation"],
    )


def transpose_out_positive(case):
    return all(
        (case["hw"][i] - 1) * case["stride"][i]
        - 2 * case["padding"][i]
        + case["dilation"][i] * (case["kernel"][i] - 1)
        + case["output_padding"][i]
        + 1
        > 0
        for i in range(2)
    )
