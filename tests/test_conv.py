"""Convolutions: conv2d and conv_transpose2d against torch's (F.conv2d, F.conv_transpose2d) and a
float64 reference written from the definition; the fused ASPP op; the modules."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from common import DEVICES
from hypothesis import assume, given
from hypothesis import strategies as st

import fastops
import fastops.nn
from fastops.nn.conv import useful_fraction

F64 = dict(rtol=1e-10, atol=1e-12)


def reference_conv2d(x, w, b, stride, padding4, dilation, groups):
    """conv2d in float64 from the definition: each output pixel's sum over its window, padded
    with zeros (loops over the taps, no convolution routine)."""
    x, w = x.double(), w.double()
    top, left, bottom, right = padding4
    xp = F.pad(x, (left, right, top, bottom))
    n, _, hp, wp = xp.shape
    c_out, c_in_g, kh, kw = w.shape
    ho = (hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = torch.zeros(n, c_out, ho, wo, dtype=torch.float64)
    c_out_g = c_out // groups
    for g in range(groups):
        xs = xp[:, g * c_in_g : (g + 1) * c_in_g]
        ws = w[g * c_out_g : (g + 1) * c_out_g]
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dilation[0], j * dilation[1]
                win = xs[
                    :, :, r0 : r0 + (ho - 1) * stride[0] + 1 : stride[0], c0 : c0 + (wo - 1) * stride[1] + 1 : stride[1]
                ]
                out[:, g * c_out_g : (g + 1) * c_out_g] += torch.einsum("oc,nchw->nohw", ws[:, :, i, j], win)
    if b is not None:
        out += b.double().view(1, -1, 1, 1)
    return out


# ---- conv2d against F.conv2d (float64): values and gradients over a drawn grid ------------------


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


def _padded_fits(case):
    pad = case["padding"]
    for i in range(2):
        span = case["dilation"][i] * (case["kernel"][i] - 1) + 1
        p = 2 * pad[i] if isinstance(pad, tuple) else (span - 1 if pad == "same" else 0)
        if case["hw"][i] + p < span:
            return False
    return True


def _conv_operands(case, dtype=torch.float64, device="cpu"):
    x = torch.randn(case["n"], case["c_in"], *case["hw"], dtype=dtype, device=device)
    w = torch.randn(case["c_out"], case["c_in"] // case["groups"], *case["kernel"], dtype=dtype, device=device)
    b = torch.randn(case["c_out"], dtype=dtype, device=device) if case["bias"] else None
    return x, w, b


def _args(case):
    return dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])


def _forward_backward(fn, x, w, b, grad_seed, **kw):
    x, w = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    b = None if b is None else b.detach().clone().requires_grad_()
    out = fn(x, w, b, **kw)
    grad = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(grad_seed)).to(out.device)
    out.backward(grad)
    return out.detach(), x.grad, w.grad, None if b is None else b.grad


@given(case=conv_cases())
def test_conv2d_matches_torch_float64(case):
    assume(_padded_fits(case))
    x, w, b = _conv_operands(case)
    ours = _forward_backward(fastops.conv2d, x, w, b, 1, **_args(case))
    theirs = _forward_backward(F.conv2d, x, w, b, 1, **_args(case))
    for a, t in zip(ours, theirs):
        if t is not None:
            torch.testing.assert_close(a, t, **F64)


@pytest.mark.parametrize(
    "hw,kernel,rate",
    [
        ((33, 33), (3, 3), 36),
        ((33, 33), (3, 3), 24),
        ((33, 33), (3, 3), 12),
        ((5, 7), (3, 3), 12),
        ((6, 4), (3, 2), (4, 9)),
        ((1, 1), (3, 3), 2),
    ],
)
def test_conv2d_rates_larger_than_the_map(hw, kernel, rate):
    """Most or all off-centre taps fall in the padding: only the taps that see the map are computed."""
    rate = rate if isinstance(rate, tuple) else (rate, rate)
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    w = torch.randn(4, 3, *kernel, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    padding = (rate[0] * (kernel[0] // 2), rate[1] * (kernel[1] // 2))
    ours = _forward_backward(fastops.conv2d, x, w, b, 2, padding=padding, dilation=rate)
    theirs = _forward_backward(F.conv2d, x, w, b, 2, padding=padding, dilation=rate)
    for a, t in zip(ours, theirs):
        torch.testing.assert_close(a, t, **F64)
    ref = reference_conv2d(x, w, b, (1, 1), (*padding, *padding), rate, 1)
    torch.testing.assert_close(ours[0], ref, **F64)


@given(case=conv_cases())
def test_conv2d_matches_definition(case):
    assume(_padded_fits(case) and case["padding"] != "same")
    x, w, b = _conv_operands(case)
    p = (0, 0) if case["padding"] == "valid" else case["padding"]
    out = fastops.conv2d(x, w, b, **_args(case))
    ref = reference_conv2d(x, w, b, case["stride"], (*p, *p), case["dilation"], case["groups"])
    torch.testing.assert_close(out, ref, **F64)


def test_conv2d_same_padding_even_kernel_is_asymmetric():
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    w = torch.randn(3, 2, 4, 2, dtype=torch.float64)
    for dilation in [(1, 1), (2, 3)]:
        out = fastops.conv2d(x, w, padding="same", dilation=dilation)
        assert out.shape[2:] == x.shape[2:]
        torch.testing.assert_close(out, F.conv2d(x, w, padding="same", dilation=dilation), **F64)


def test_conv2d_unbatched_and_non_contiguous():
    x = torch.randn(3, 8, 9, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(
        fastops.conv2d(x, w, padding=2, dilation=2), F.conv2d(x, w, padding=2, dilation=2), **F64
    )
    xc = torch.randn(2, 3, 8, 9, dtype=torch.float64).to(memory_format=torch.channels_last)
    wt = torch.randn(4, 3, 3, 3, dtype=torch.float64).transpose(2, 3)
    torch.testing.assert_close(fastops.conv2d(xc, wt, padding=1), F.conv2d(xc, wt, padding=1), **F64)


# ---- conv_transpose2d ---------------------------------------------------------------------------


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


def _transpose_operands(case, dtype=torch.float64, device="cpu"):
    x = torch.randn(case["n"], case["c_in"], *case["hw"], dtype=dtype, device=device)
    w = torch.randn(case["c_in"], case["c_out"] // case["groups"], *case["kernel"], dtype=dtype, device=device)
    b = torch.randn(case["c_out"], dtype=dtype, device=device) if case["bias"] else None
    return x, w, b


def _transpose_args(case):
    return dict(
        stride=case["stride"],
        padding=case["padding"],
        output_padding=case["output_padding"],
        groups=case["groups"],
        dilation=case["dilation"],
    )


def _transpose_out_positive(case):
    return all(
        (case["hw"][i] - 1) * case["stride"][i]
        - 2 * case["padding"][i]
        + case["dilation"][i] * (case["kernel"][i] - 1)
        + case["output_padding"][i]
        + 1
        > 0
        for i in range(2)
    )


@given(case=transpose_cases())
def test_conv_transpose2d_matches_torch_float64(case):
    assume(_transpose_out_positive(case))
    x, w, b = _transpose_operands(case)
    ours = _forward_backward(fastops.conv_transpose2d, x, w, b, 3, **_transpose_args(case))
    theirs = _forward_backward(F.conv_transpose2d, x, w, b, 3, **_transpose_args(case))
    for a, t in zip(ours, theirs):
        if t is not None:
            torch.testing.assert_close(a, t, **F64)


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (4, 2, 1), (3, 2, 1), (3, 1, 1), (2, 3, 0)])
def test_conv_transpose2d_unet_shapes(kernel, stride, padding):
    x = torch.randn(2, 6, 9, 8, dtype=torch.float64)
    w = torch.randn(6, 4, kernel, kernel, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    ours = _forward_backward(fastops.conv_transpose2d, x, w, b, 4, stride=stride, padding=padding)
    theirs = _forward_backward(F.conv_transpose2d, x, w, b, 4, stride=stride, padding=padding)
    for a, t in zip(ours, theirs):
        torch.testing.assert_close(a, t, **F64)


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    """<conv2d(y), x> == <y, conv_transpose2d(x)> for the same weight and hyper-parameters."""
    w = torch.randn(5, 3, 3, 4, dtype=torch.float64)
    kw = dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    y = torch.randn(2, 3, 13, 17, dtype=torch.float64)
    cy = fastops.conv2d(y, w, **kw)
    x = torch.randn(cy.shape, dtype=torch.float64)
    natural = [
        (cy.shape[2 + i] - 1) * kw["stride"][i] - 2 * kw["padding"][i] + kw["dilation"][i] * (w.shape[2 + i] - 1) + 1
        for i in range(2)
    ]
    tx = fastops.conv_transpose2d(x, w, output_padding=(13 - natural[0], 17 - natural[1]), **kw)
    assert tx.shape == y.shape
    torch.testing.assert_close((cy * x).sum(), (y * tx).sum(), **F64)


# ---- gradcheck ----------------------------------------------------------------------------------


def test_gradcheck_conv2d():
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: fastops.conv2d(x, w, b, stride=(2, 1), padding=(3, 1), dilation=(3, 2), groups=2), (x, w, b)
    )


def test_gradcheck_conv_transpose2d():
    x = torch.randn(2, 4, 4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: fastops.conv_transpose2d(
            x, w, b, stride=(2, 3), padding=(1, 2), output_padding=(1, 0), groups=2, dilation=(1, 2)
        ),
        (x, w, b),
    )


def test_gradcheck_aspp_conv():
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    weights = [torch.randn(4, 3, 1, 1, dtype=torch.float64, requires_grad=True)]
    weights += [torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(lambda x, *ws: fastops.aspp_conv(x, ws, [1, 4, 7]), (x, *weights))


# ---- the fused ASPP op --------------------------------------------------------------------------


@pytest.mark.parametrize("hw,rates", [((33, 33), (12, 24, 36)), ((9, 7), (1, 2, 3)), ((4, 5), (6,)), ((3, 3), ())])
def test_aspp_conv_matches_separate_convolutions(hw, rates):
    x = torch.randn(2, 5, *hw, dtype=torch.float64)
    weights = [torch.randn(3, 5, 1, 1, dtype=torch.float64)]
    weights += [torch.randn(3, 5, 3, 3, dtype=torch.float64) for _ in rates]

    def separate(x, *ws):
        outs = [F.conv2d(x, ws[0])] + [F.conv2d(x, w, padding=r, dilation=r) for w, r in zip(ws[1:], rates)]
        return torch.cat(outs, 1)

    def run(fn):
        xs = x.clone().requires_grad_()
        ws = [w.clone().requires_grad_() for w in weights]
        out = fn(xs, *ws)
        out.backward(torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(5)))
        return [out.detach(), xs.grad] + [w.grad for w in ws]

    ours = run(lambda x, *ws: fastops.aspp_conv(x, ws, rates))
    for a, t in zip(ours, run(separate)):
        torch.testing.assert_close(a, t, **F64)


# ---- float32 and half precision -----------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "dtype,tol",
    [
        (torch.float32, dict(rtol=1e-4, atol=1e-4)),
        (torch.bfloat16, dict(rtol=3e-2, atol=1e-1)),
        (torch.float16, dict(rtol=5e-3, atol=2e-2)),
    ],
)
@pytest.mark.parametrize("which", ["conv", "atrous", "transpose", "aspp"])
def test_low_precision_against_float64(which, dtype, tol, device):
    if device == "cpu" and dtype == torch.float16 and which != "conv":
        pytest.skip("float16 GEMM on the CPU is slow; one case covers it")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 12, 11, generator=g, dtype=torch.float64)
    if which == "aspp":
        ws = [torch.randn(8, 16, 1, 1, generator=g, dtype=torch.float64) / 4]
        ws += [torch.randn(8, 16, 3, 3, generator=g, dtype=torch.float64) / 12 for _ in range(2)]
        fn = lambda x, w, b: fastops.aspp_conv(x, w, [2, 9])
        ref_fn = lambda x, w, b: torch.cat(
            [F.conv2d(x, w[0])] + [F.conv2d(x, wi, padding=r, dilation=r) for wi, r in zip(w[1:], [2, 9])],
            1,
        )
        w, b = ws, None
    elif which == "transpose":
        w = torch.randn(16, 8, 4, 4, generator=g, dtype=torch.float64) / 16
        b = torch.randn(8, generator=g, dtype=torch.float64)
        fn = lambda x, w, b: fastops.conv_transpose2d(x, w, b, stride=2, padding=1)
        ref_fn = lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1)
    else:
        dilation = 1 if which == "conv" else 5
        w = torch.randn(8, 16, 3, 3, generator=g, dtype=torch.float64) / 12
        b = torch.randn(8, generator=g, dtype=torch.float64)
        fn = lambda x, w, b: fastops.conv2d(x, w, b, padding=dilation, dilation=dilation)
        ref_fn = lambda x, w, b: F.conv2d(x, w, b, padding=dilation, dilation=dilation)
    cast = lambda t: (
        None if t is None else ([u.to(device, dtype) for u in t] if isinstance(t, list) else t.to(device, dtype))
    )
    xl, wl, bl = cast(x), cast(w), cast(b)
    out = fn(xl, wl, bl)
    assert out.dtype == dtype and out.device.type == device
    # the reference on the rounded operands, in float64
    up = lambda t: None if t is None else ([u.double().cpu() for u in t] if isinstance(t, list) else t.double().cpu())
    torch.testing.assert_close(out.double().cpu(), ref_fn(up(xl), up(wl), up(bl)), **tol)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_gradients_against_torch(device):
    x = torch.randn(2, 8, 10, 9, device=device)
    w = torch.randn(6, 4, 3, 3, device=device) / 6
    ours = _forward_backward(fastops.conv2d, x, w, None, 6, padding=4, dilation=4, groups=2)
    theirs = _forward_backward(F.conv2d, x, w, None, 6, padding=4, dilation=4, groups=2)
    for a, t in zip(ours[:3], theirs[:3]):
        torch.testing.assert_close(a, t, rtol=1e-4, atol=1e-4)
    wt = torch.randn(8, 3, 2, 2, device=device)
    ours = _forward_backward(fastops.conv_transpose2d, x, wt, None, 7, stride=2)
    theirs = _forward_backward(F.conv_transpose2d, x, wt, None, 7, stride=2)
    for a, t in zip(ours[:3], theirs[:3]):
        torch.testing.assert_close(a, t, rtol=1e-4, atol=1e-4)


# ---- the direct kernel (float32, horizontal stride 1 or 2, one group; the AVX-512 copy) -----------
# Channel counts that it tiles (input channels a multiple of 32, output channels of 32 for the
# forward, any for the weight gradient), under the AVX-512 copy (the direct kernel, where the CPU
# has it) and the AVX2 one (per-tap GEMMs), against float64 on the same float32 operands.


@contextlib.contextmanager
def cpu_isa(name):
    fastops.set_cpu_isa(name)
    try:
        yield
    finally:
        fastops.set_cpu_isa("avx512")  # back to the best available


def _float32_close(ours, ref):
    """float32 sums of up to a few thousand products: errors relative to the largest value."""
    scale = ref.abs().max().clamp_min(1.0) if ref.numel() else 1.0
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=2e-5 * float(scale))


def _float32_and_float64(fn, ref_fn, operands, seed, **kw):
    """fn on float32 operands and ref_fn on the same values in float64, each followed by a
    backward of the same upstream gradient (drawn in float64)."""

    def run(f, ops):
        ops = [None if t is None else t.detach().clone().requires_grad_() for t in ops]
        out = f(*ops, **kw)
        grad = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        out.backward(grad.to(out.dtype))
        return [out.detach()] + [None if t is None else t.grad for t in ops]

    return run(fn, operands), run(ref_fn, [None if t is None else t.double() for t in operands])


@st.composite
def direct_cases(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return dict(
        n=draw(st.integers(0, 2)),
        c_in=draw(st.sampled_from([32, 64])),
        c_out=draw(st.sampled_from([32, 96])),
        kernel=(kh, kw),
        dilation=(draw(st.integers(1, 13)), draw(st.integers(1, 13))),
        hw=(draw(st.integers(1, 20)), draw(st.integers(1, 20))),
        padding=(draw(st.integers(0, 15)), draw(st.integers(0, 15))),
        bias=draw(st.booleans()),
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        groups=1,
    )


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
@given(case=direct_cases())
def test_direct_float32_matches_float64(case, isa):
    assume(_padded_fits(case))
    x, w, b = _conv_operands(case, torch.float32)
    with cpu_isa(isa):
        ours, ref = _float32_and_float64(fastops.conv2d, F.conv2d, [x, w, b], 3, **_args(case))
    for a, t in zip(ours, ref):
        if t is not None:
            _float32_close(a, t)


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
@pytest.mark.parametrize(
    "c_in,c_out,hw,kernel,rate,stride",
    [
        (160, 64, (33, 31), (3, 3), 12, 1),  # two chunks of input channels; rows of 33 and 21 pixels
        (64, 40, (9, 40), (3, 5), 2, 1),  # weight-gradient row tiles of 13 and 14; 40-pixel rows
        (32, 5, (6, 7), (1, 1), 1, 1),  # a 1x1 convolution; one short row tile
        (256, 256, (33, 33), (3, 3), 36, 1),  # only the centre tap sees the map
        (64, 64, (17, 40), (3, 3), 1, 2),  # a ResNet downsampling 3x3, stride 2
        (32, 32, (16, 9), (4, 2), 3, (3, 2)),  # vertical stride 3, horizontal 2
        (32, 32, (40, 41), (3, 3), 2, 1),  # 5 samples: accumulators for 2 at a time (3 groups)
    ],
)
def test_direct_fixed_shapes(isa, c_in, c_out, hw, kernel, rate, stride):
    g = torch.Generator().manual_seed(c_in + c_out)
    x = torch.randn(5 if hw == (40, 41) else 2, c_in, *hw, generator=g)
    w = torch.randn(c_out, c_in, *kernel, generator=g) / (c_in * kernel[0] * kernel[1]) ** 0.5
    b = torch.randn(c_out, generator=g)
    pad = (rate * (kernel[0] // 2), rate * (kernel[1] // 2))
    with cpu_isa(isa):
        ours, ref = _float32_and_float64(
            fastops.conv2d, F.conv2d, [x, w, b], 4, padding=pad, dilation=rate, stride=stride
        )
    for a, t in zip(ours, ref):
        _float32_close(a, t)


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
@pytest.mark.parametrize(
    "kernel,kw",
    [
        (3, dict(stride=1, padding=2, output_padding=1, dilation=3)),
        (4, dict(stride=2, padding=1)),  # U-Net's k4s2p1
        (3, dict(stride=(1, 2), padding=1, output_padding=(0, 1))),
    ],
)
def test_direct_transposed_and_aspp(isa, kernel, kw):
    """conv_transpose2d (the input-gradient kernel, writing every stride-th pixel; its backward
    runs the strided forward and weight gradient) and the fused ASPP op, whose branches skip their
    centre taps and accumulate into one output and one input gradient."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 64, 13, 17, generator=g)
    wt = torch.randn(64, 32, kernel, kernel, generator=g) / 24
    with cpu_isa(isa):
        ours, ref = _float32_and_float64(fastops.conv_transpose2d, F.conv_transpose2d, [x, wt], 5, **kw)
    for a, t in zip(ours, ref):
        _float32_close(a, t)
    rates = [2, 6, 15]
    ws = [torch.randn(32, 64, 1, 1, generator=g) / 8] + [torch.randn(32, 64, 3, 3, generator=g) / 24 for _ in rates]

    def separate(x, *ws):
        return torch.cat(
            [F.conv2d(x, ws[0])] + [F.conv2d(x, w, padding=r, dilation=r) for w, r in zip(ws[1:], rates)], 1
        )

    with cpu_isa(isa):
        ours, ref = _float32_and_float64(lambda x, *ws: fastops.aspp_conv(x, ws, rates), separate, [x, *ws], 6)
    for a, t in zip(ours, ref):
        _float32_close(a, t)


def test_direct_nan_and_thread_count_independence():
    """A NaN reaches the outputs whose taps see it; each output is summed by one thread in a
    fixed order, so 1, 2 or 3 threads give the same bits."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(1, 64, 15, 15, generator=g)
    w = torch.randn(96, 64, 3, 3, generator=g) / 24
    x[0, 5, 7, 7] = float("nan")
    out = fastops.conv2d(x, w, padding=6, dilation=6)
    assert torch.equal(out.isnan(), F.conv2d(x, w, padding=6, dilation=6).isnan())
    x[0, 5, 7, 7] = 0.0
    w32 = w[:32].clone()  # one block of output channels: threads split its rows
    wt = torch.randn(64, 32, 4, 4, generator=g) / 24  # k4s2p1: strided rows, one block too
    previous = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append(
                _forward_backward(fastops.conv2d, x, w, None, 2, padding=6, dilation=6)[:3]
                + _forward_backward(fastops.conv2d, x, w32, None, 2, padding=6, dilation=6)[:3]
                + _forward_backward(fastops.conv_transpose2d, x, wt, None, 2, stride=2, padding=1)[:3]
            )
    finally:
        torch.set_num_threads(previous)
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)
    ref = _float32_and_float64(fastops.conv_transpose2d, F.conv_transpose2d, [x, wt], 2, stride=2, padding=1)
    for a, t in zip(*ref):
        _float32_close(a, t)


# ---- empty inputs, NaN, determinism -------------------------------------------------------------


@pytest.mark.parametrize(
    "shape_x,shape_w", [((0, 3, 5, 5), (4, 3, 3, 3)), ((2, 0, 5, 5), (4, 0, 3, 3)), ((2, 3, 0, 5), (4, 3, 1, 3))]
)
def test_empty_inputs(shape_x, shape_w):
    """Empty batches as torch; no input channels or rows (torch: an error or a [N, 0, ...] result)
    give the mathematical answer, the bias (zeros), and zero gradients."""
    x = torch.randn(shape_x, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape_w, dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape_w[0], dtype=torch.float64, requires_grad=True)
    out = fastops.conv2d(x, w, b, padding=1)
    ref = reference_conv2d(x.detach(), w.detach(), b.detach(), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, **F64)
    out.sum().backward()
    assert x.grad.shape == x.shape and not x.grad.any()
    assert w.grad.shape == w.shape and not w.grad.any()
    torch.testing.assert_close(b.grad, torch.full_like(b, out[:, 0].numel()), **F64)
    if shape_x[0] == 0:
        assert F.conv2d(x, w, b, padding=1).shape == out.shape


def test_zero_output_channels_is_torchs_error():
    for fn in (F.conv2d, fastops.conv2d):
        with pytest.raises(RuntimeError, match="expected weight to be at least 1 at dimension 0"):
            fn(torch.randn(2, 3, 5, 5), torch.randn(0, 3, 3, 3))


def test_nan_propagates_like_torch_where_taps_see_the_map():
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    x[0, 1, 3, 4] = float("nan")
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    ours, theirs = fastops.conv2d(x, w, padding=2, dilation=2), F.conv2d(x, w, padding=2, dilation=2)
    assert torch.equal(ours.isnan(), theirs.isnan()) and ours.isnan().any()
    torch.testing.assert_close(ours.nan_to_num(), theirs.nan_to_num(), **F64)


def test_skipped_taps_never_multiply():
    """Documented difference: at rate 36 on a 33x33 map only the centre tap is computed, so a NaN in
    an off-centre weight does not reach the output (torch's dense convolution multiplies it by the
    zero padding and gives NaN)."""
    x = torch.randn(1, 2, 33, 33, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    w[:, :, 0, 0] = float("nan")
    out = fastops.conv2d(x, w, padding=36, dilation=36)
    assert not out.isnan().any()
    torch.testing.assert_close(out, F.conv2d(x, w[:, :, 1:2, 1:2]), **F64)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 2])
def test_channel_blocks_match_torch(threads, groups):
    """Enough channels that each thread gets its own block of output (input) channels."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(2, 96, 9, 8, dtype=torch.float64)
        w = torch.randn(130, 96 // groups, 3, 3, dtype=torch.float64)
        kw = dict(padding=4, dilation=(4, 3), groups=groups)
        for a, t in zip(
            _forward_backward(fastops.conv2d, x, w, None, 9, **kw), _forward_backward(F.conv2d, x, w, None, 9, **kw)
        ):
            if t is not None:
                torch.testing.assert_close(a, t, **F64)
        wt = torch.randn(96, 130 // groups, 4, 4, dtype=torch.float64)
        kw = dict(stride=2, padding=1, groups=groups)
        for a, t in zip(
            _forward_backward(fastops.conv_transpose2d, x, wt, None, 9, **kw),
            _forward_backward(F.conv_transpose2d, x, wt, None, 9, **kw),
        ):
            if t is not None:
                torch.testing.assert_close(a, t, **F64)
    finally:
        torch.set_num_threads(previous)


def test_deterministic():
    x = torch.randn(2, 32, 20, 20)
    w = torch.randn(16, 32, 3, 3)
    g = torch.randn(2, 16, 20, 20)
    runs = []
    for _ in range(2):
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        out = fastops.conv2d(xs, ws, padding=6, dilation=6)
        out.backward(g)
        runs.append((out, xs.grad, ws.grad))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


# ---- bad input: torch's errors ------------------------------------------------------------------


BAD_CONV = [
    (dict(x=(1, 4, 5, 5), w=(2, 3, 3, 3)), {}, "expected input.* to have 3 channels, but got 4 channels"),
    (dict(x=(1, 4, 5, 5), w=(3, 2, 3, 3)), dict(groups=2), "expected weight to be divisible by 2"),
    (dict(x=(1, 4, 5, 5), w=(2, 4, 7, 7)), {}, "Kernel size can't be greater than actual input size"),
    (dict(x=(1, 4, 5, 5), w=(2, 4, 3, 3)), dict(stride=0), "non-positive stride is not supported"),
    (dict(x=(1, 4, 5, 5), w=(2, 4, 3, 3)), dict(dilation=0), "dilation should be greater than zero"),
    (dict(x=(1, 4, 5, 5), w=(2, 4, 3, 3)), dict(padding=-1), "negative padding is not supported"),
    (dict(x=(1, 4, 5, 5), w=(2, 4, 3, 3)), dict(groups=0), "non-positive groups is not supported"),
    (dict(x=(4, 5), w=(2, 4, 3, 3)), {}, "Expected 3D \\(unbatched\\) or 4D \\(batched\\) input"),
    (dict(x=(1, 1, 4, 5, 5), w=(2, 4, 3, 3)), {}, "Expected 3D \\(unbatched\\) or 4D \\(batched\\) input"),
    (
        dict(x=(1, 4, 5, 5), w=(2, 4, 3, 3)),
        dict(stride=2, padding="same"),
        "padding='same' is not supported for strided convolutions",
    ),
    (dict(x=(1, 4, 5, 5), w=(2, 4, 3, 3), b=(3,)), {}, "expected bias to be 1-dimensional with 2 elements"),
]


@pytest.mark.parametrize("shapes,kw,message", BAD_CONV)
def test_conv2d_bad_input_raises_torchs_errors(shapes, kw, message):
    x, w = torch.randn(shapes["x"]), torch.randn(shapes["w"])
    b = torch.randn(shapes["b"]) if "b" in shapes else None
    with pytest.raises(RuntimeError, match=message):
        F.conv2d(x, w, b, **kw)  # the message is torch's own
    with pytest.raises(RuntimeError, match=message) as info:
        fastops.conv2d(x, w, b, **kw)
    assert isinstance(info.value, ValueError)


BAD_TRANSPOSE = [
    (dict(x=(1, 4, 5, 5), w=(3, 2, 3, 3)), {}, "expected input.* to have 3 channels, but got 4 channels"),
    (dict(x=(1, 4, 5, 5), w=(4, 2, 3, 3)), dict(stride=2, output_padding=2), "output padding must be smaller"),
    (dict(x=(1, 4, 5, 5), w=(4, 2, 3, 3)), dict(groups=3), "expected weight to be divisible by 3"),
    (dict(x=(1, 4, 5, 5), w=(4, 2, 3, 3)), dict(padding=5), "Output size is too small"),
    (dict(x=(1, 4, 5, 5), w=(4, 2, 3, 3)), dict(stride=0), "non-positive stride is not supported"),
    (dict(x=(4, 5), w=(4, 2, 3, 3)), {}, "Expected 3D \\(unbatched\\) or 4D \\(batched\\) input"),
]


@pytest.mark.parametrize("shapes,kw,message", BAD_TRANSPOSE)
def test_conv_transpose2d_bad_input_raises_torchs_errors(shapes, kw, message):
    x, w = torch.randn(shapes["x"]), torch.randn(shapes["w"])
    with pytest.raises(RuntimeError, match=message):
        F.conv_transpose2d(x, w, **kw)
    with pytest.raises(RuntimeError, match=message) as info:
        fastops.conv_transpose2d(x, w, **kw)
    assert isinstance(info.value, ValueError)


def test_ops_check_their_arguments_when_called_directly():
    x, w = torch.randn(1, 4, 5, 5), torch.randn(2, 3, 3, 3)
    with pytest.raises(ValueError, match="to have 3 channels"):
        torch.ops.fastops.conv2d(x, w, None, [1, 1], [0, 0, 0, 0], [1, 1], 1)
    with pytest.raises(ValueError, match="dilation should be greater than zero"):
        torch.ops.fastops.conv2d(x, torch.randn(2, 4, 3, 3), None, [1, 1], [0, 0, 0, 0], [0, 1], 1)
    with pytest.raises(TypeError, match="dtype"):
        torch.ops.fastops.conv2d(x, torch.randn(2, 4, 3, 3, dtype=torch.float64), None, [1, 1], [0] * 4, [1, 1], 1)
    with pytest.raises(TypeError):
        fastops.conv2d(x, torch.randn(2, 4, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="weights"):
        fastops.aspp_conv(x, [torch.randn(2, 4, 1, 1)], [6])


# ---- modules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["auto", "fastops", "torch"])
def test_conv2d_module_state_dict_round_trip(path):
    torch_conv = torch.nn.Conv2d(4, 6, 3, padding=12, dilation=12, groups=2).double()
    ours = fastops.nn.Conv2d(4, 6, 3, padding=12, dilation=12, groups=2, path=path).double()
    ours.load_state_dict(torch_conv.state_dict())
    assert set(ours.state_dict()) == {"weight", "bias"}
    x = torch.randn(2, 4, 15, 17, dtype=torch.float64)
    torch.testing.assert_close(ours(x), torch_conv(x), **F64)
    back = torch.nn.Conv2d(4, 6, 3, padding=12, dilation=12, groups=2).double()
    back.load_state_dict(ours.state_dict())
    torch.testing.assert_close(back(x), torch_conv(x), **F64)


@pytest.mark.parametrize("padding_mode", ["reflect", "circular", "replicate"])
def test_conv2d_module_padding_modes(padding_mode):
    torch_conv = torch.nn.Conv2d(3, 4, 3, padding=2, dilation=2, padding_mode=padding_mode).double()
    ours = fastops.nn.Conv2d(3, 4, 3, padding=2, dilation=2, padding_mode=padding_mode, path="fastops").double()
    ours.load_state_dict(torch_conv.state_dict())
    x = torch.randn(1, 3, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(ours(x), torch_conv(x), **F64)


@pytest.mark.parametrize("path", ["auto", "fastops", "torch"])
@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (4, 2, 1)])
def test_conv_transpose2d_module_state_dict_round_trip(path, kernel, stride, padding):
    torch_conv = torch.nn.ConvTranspose2d(6, 4, kernel, stride=stride, padding=padding).double()
    ours = fastops.nn.ConvTranspose2d(6, 4, kernel, stride=stride, padding=padding, path=path).double()
    ours.load_state_dict(torch_conv.state_dict())
    x = torch.randn(2, 6, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(x), torch_conv(x), **F64)
    torch.testing.assert_close(ours(x, output_size=[15, 11]), torch_conv(x, output_size=[15, 11]), **F64)
    back = torch.nn.ConvTranspose2d(6, 4, kernel, stride=stride, padding=padding).double()
    back.load_state_dict(ours.state_dict())
    torch.testing.assert_close(back(x), torch_conv(x), **F64)


@pytest.fixture
def fixed_rule():
    """path="auto" without measurement: the fixed rule alone."""
    previous = fastops.nn.set_conv_autotune(False)
    yield
    fastops.nn.set_conv_autotune(previous)


def test_auto_path_rule(fixed_rule):
    """The documented fixed rule: our kernels where at most 0.6 of the dense work sees the map."""
    assert useful_fraction((33, 33), (33, 33), (3, 3), (1, 1), (36, 36), (36, 36)) == pytest.approx(1 / 9)
    assert useful_fraction((33, 33), (33, 33), (3, 3), (1, 1), (12, 12), (12, 12)) == pytest.approx((75 / 99) ** 2)
    assert useful_fraction((64, 64), (64, 64), (3, 3), (1, 1), (1, 1), (1, 1)) == pytest.approx((190 / 192) ** 2)
    x33, x64 = torch.randn(1, 8, 33, 33), torch.randn(1, 8, 64, 64)
    assert fastops.nn.Conv2d(8, 8, 3, padding=24, dilation=24)._uses_fastops(x33)
    assert not fastops.nn.Conv2d(8, 8, 3, padding=1)._uses_fastops(x64)
    assert not fastops.nn.Conv2d(8, 8, 3, padding=6, dilation=6)._uses_fastops(x64)
    assert fastops.nn.Conv2d(8, 8, 3, padding=6, dilation=6, path="fastops")._uses_fastops(x64)
    assert not fastops.nn.Conv2d(8, 8, 3, padding=36, dilation=36, path="torch")._uses_fastops(x33)
    assert not fastops.nn.Conv2d(8, 8, 3, padding=24, dilation=24, groups=2)._uses_fastops(x33)
    assert fastops.nn.ConvTranspose2d(8, 4, 2, stride=2)._uses_fastops(x64)
    assert not fastops.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)._uses_fastops(x64)
    # k4s2p1 with channels the direct kernels tile: ours on a float32 CPU input with AVX-512 in use
    unet = fastops.nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
    x = torch.randn(1, 64, 8, 8)
    assert unet._uses_fastops(x) == (fastops.build_info()["cpu_isa"] == "avx512")
    assert not unet._uses_fastops(x.double())
    with cpu_isa("avx2"):
        assert not unet._uses_fastops(x)
    with pytest.raises(ValueError, match="path"):
        fastops.nn.Conv2d(8, 8, 3, path="cudnn")


def _torchvision_aspp(in_channels, out_channels, rates):
    from torchvision.models.segmentation.deeplabv3 import ASPP

    return ASPP(in_channels, rates, out_channels)


@pytest.mark.parametrize("path", ["auto", "fastops", "torch"])
def test_aspp_module_matches_torchvision(path):
    tv = _torchvision_aspp(16, 8, [12, 24, 36]).double()
    ours = fastops.nn.ASPP(16, 8, [12, 24, 36], path=path).double()
    assert set(ours.state_dict()) == set(tv.state_dict())
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for p in tv.parameters():
            p.normal_()
        for name, buf in tv.named_buffers():
            if "running_var" in name:
                buf.uniform_(0.5, 2)
            elif "running_mean" in name:
                buf.normal_()
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(2, 16, 33, 33, dtype=torch.float64)
    tv.eval(), ours.eval()
    torch.testing.assert_close(ours(x), tv(x), **F64)
    # training mode, gradients included (no dropout, so both are deterministic)
    tv.project[3].p = 0.0
    ours.project[3].p = 0.0
    tv.train(), ours.train()
    xs, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ours, out_tv = ours(xs), tv(xt)
    torch.testing.assert_close(out_ours, out_tv, **F64)
    g = torch.randn(out_tv.shape, dtype=torch.float64)
    out_ours.backward(g)
    out_tv.backward(g)
    torch.testing.assert_close(xs.grad, xt.grad, rtol=1e-9, atol=1e-10)
    for (name, p_ours), (_, p_tv) in zip(ours.named_parameters(), tv.named_parameters()):
        torch.testing.assert_close(p_ours.grad, p_tv.grad, rtol=1e-9, atol=1e-10, msg=name)
    for (name, b_ours), (_, b_tv) in zip(ours.named_buffers(), tv.named_buffers()):
        torch.testing.assert_close(b_ours, b_tv, **F64, msg=name)
    back = _torchvision_aspp(16, 8, [12, 24, 36]).double().eval()
    back.load_state_dict(ours.state_dict())
    ours.eval()
    torch.testing.assert_close(back(x), ours(x), **F64)


def test_aspp_uses_the_fused_op_when_auto(fixed_rule):
    ours = fastops.nn.ASPP(8, 4, [12, 24, 36])
    assert ours._uses_fused(torch.randn(1, 8, 33, 33))
    assert not ours._uses_fused(torch.randn(1, 8, 256, 256))
    assert fastops.nn.ASPP(8, 4, [1], path="fastops")._uses_fused(torch.randn(1, 8, 256, 256))


# ---- opcheck and torch.compile ------------------------------------------------------------------


def test_opcheck():
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    args = ([2, 1], [3, 1, 2, 0], [2, 3], 2)
    torch.library.opcheck(torch.ops.fastops.conv2d, (x, w, b, *args))
    out = torch.ops.fastops.conv2d(x, w, b, *args)
    g = torch.randn(out.shape, dtype=torch.float64)
    torch.library.opcheck(torch.ops.fastops.conv2d_input_grad, (g, w.detach(), list(x.shape), *args))
    torch.library.opcheck(torch.ops.fastops.conv2d_weight_grad, (g, x.detach(), list(w.shape), *args))
    wt = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    bt = torch.randn(6, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.fastops.conv_transpose2d, (x, wt, bt, [2, 2], [1, 0], [1, 0], 2, [1, 1]))
    ws = [
        torch.randn(3, 4, 1, 1, dtype=torch.float64, requires_grad=True),
        torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True),
    ]
    torch.library.opcheck(torch.ops.fastops.aspp_conv, (x, ws, [5]))
    ga = torch.randn(2, 6, 7, 6, dtype=torch.float64)
    torch.library.opcheck(torch.ops.fastops.aspp_conv_backward, (ga, x.detach(), [w.detach() for w in ws], [5], True))


def test_compile_fullgraph_auto_path():
    """The auto rule (shapes, dtype, device and the instruction set in use) is decided while
    tracing, without a graph break."""
    up = fastops.nn.ConvTranspose2d(32, 32, 4, stride=2, padding=1)
    down = fastops.nn.Conv2d(32, 32, 3, padding=12, dilation=12)
    compiled = torch.compile(lambda x: down(up(x)).sum(), fullgraph=True, backend="aot_eager")
    x = torch.randn(1, 32, 6, 7)
    torch.testing.assert_close(compiled(x), down(up(x)).sum())


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph(dynamic):
    conv = fastops.nn.Conv2d(4, 6, 3, padding=12, dilation=12, path="fastops")
    up = fastops.nn.ConvTranspose2d(6, 3, 2, stride=2, path="fastops")

    def model(x):
        y = up(torch.relu(conv(x)))
        return y.sum() + fastops.aspp_conv(x, [conv.weight[:, :, 1:2, 1:2], conv.weight], [3]).square().sum()

    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for shape in [(2, 4, 9, 10), (1, 4, 7, 12)]:
        x = torch.randn(shape)
        xs, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
        expected, got = model(xs), compiled(xc)
        torch.testing.assert_close(got, expected)
        expected.backward()
        got.backward()
        torch.testing.assert_close(xc.grad, xs.grad)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    """The CUDA registration (cuBLAS GEMMs) against the CPU's, float64, forward and gradients."""
    x = torch.randn(2, 6, 13, 11, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    wt = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    for fn, weight, kw in [
        (fastops.conv2d, w, dict(padding=7, dilation=(7, 5), groups=2, stride=(1, 2))),
        (fastops.conv_transpose2d, wt, dict(stride=2, padding=1, groups=2)),
    ]:
        cpu = _forward_backward(fn, x, weight, None, 8, **kw)
        gpu = _forward_backward(fn, x.cuda(), weight.cuda(), None, 8, **kw)
        for a, b in zip(cpu[:3], gpu[:3]):
            torch.testing.assert_close(b.cpu(), a, **F64)
    aspp = fastops.nn.ASPP(6, 4, [2, 12], path="fastops").double().eval()
    torch.testing.assert_close(aspp.cuda()(x.cuda()).cpu(), aspp.cpu()(x), **F64)
