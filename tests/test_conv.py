"""conv2d and conv_transpose2d against torch's (F.conv2d, F.conv_transpose2d) and a float64
reference written from the definition: values, gradients, precision, edge inputs, torch's errors,
opcheck and torch.compile."""

import pytest
import torch
import torch.nn.functional as F
from common import DEVICES
from conv_cases import (
    F64,
    conv_args,
    conv_cases,
    conv_operands,
    forward_backward,
    padded_fits,
    transpose_args,
    transpose_cases,
    transpose_operands,
    transpose_out_positive,
)
from hypothesis import assume, given
from reference.conv import reference_conv2d

import fastops
import fastops.nn

# ---- conv2d against F.conv2d (float64): values and gradients over a drawn grid ------------------


@given(case=conv_cases())
def test_conv2d_matches_torch_float64(case):
    assume(padded_fits(case))
    x, w, b = conv_operands(case)
    ours = forward_backward(fastops.conv2d, x, w, b, 1, **conv_args(case))
    theirs = forward_backward(F.conv2d, x, w, b, 1, **conv_args(case))
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
    ours = forward_backward(fastops.conv2d, x, w, b, 2, padding=padding, dilation=rate)
    theirs = forward_backward(F.conv2d, x, w, b, 2, padding=padding, dilation=rate)
    for a, t in zip(ours, theirs):
        torch.testing.assert_close(a, t, **F64)
    ref = reference_conv2d(x, w, b, (1, 1), (*padding, *padding), rate, 1)
    torch.testing.assert_close(ours[0], ref, **F64)


@given(case=conv_cases())
def test_conv2d_matches_definition(case):
    assume(padded_fits(case) and case["padding"] != "same")
    x, w, b = conv_operands(case)
    p = (0, 0) if case["padding"] == "valid" else case["padding"]
    out = fastops.conv2d(x, w, b, **conv_args(case))
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


CL = torch.channels_last
# error bounds against float64 for sums of up to ~1200 products of standard normals (|sum| ~ 35)
CL_TOL = {torch.float64: F64, torch.float32: {"rtol": 1e-5, "atol": 2e-4}, torch.bfloat16: {"rtol": 0, "atol": 1.0}}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("channels, hw", [(3, (8, 9)), (70, (13, 11)), (130, (9, 10))])
@pytest.mark.parametrize(
    "kernel, args",
    [
        (3, {"padding": 2, "dilation": 2}),  # column windows and narrow accumulators
        (1, {}),  # one GEMM over the batch's pixels
        (1, {"stride": 2}),  # a strided window
        (3, {"stride": 2, "padding": 1}),  # row phases
        (3, {"padding": (3, 0), "dilation": (3, 1)}),
    ],
)
@pytest.mark.parametrize("grad_layout", [CL, torch.contiguous_format])
def test_channels_last_maps(dtype, channels, hw, kernel, args, grad_layout):
    # A channels_last map runs as it is (the GEMMs read and write [H * W, C] matrices; channel and
    # pixel counts cross the 64 x 64 tiles of the layout transposes): values and gradients against
    # float64 torch, results in the map's layout, the same bits on a second call. A grad_out in
    # the other layout than the input makes the weight gradient's maps NCHW.
    g = torch.Generator().manual_seed(channels + kernel)
    x = torch.randn(2, channels, *hw, generator=g).to(dtype)
    w = torch.randn(5, channels, kernel, kernel, generator=g).to(dtype)
    xl = x.contiguous(memory_format=CL).requires_grad_()
    wl = w.clone().requires_grad_()
    out = fastops.conv2d(xl, wl, **args)
    gout = torch.randn(out.shape, generator=g).to(dtype).contiguous(memory_format=grad_layout)
    grads = torch.autograd.grad(out, (xl, wl), gout)
    x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
    ref = F.conv2d(x64, w64, **args)
    ref_grads = torch.autograd.grad(ref, (x64, w64), gout.double())
    for a, t in zip((out, *grads), (ref, *ref_grads)):
        torch.testing.assert_close(a.double(), t, **CL_TOL[dtype])
    assert out.is_contiguous(memory_format=CL)
    assert grads[0].is_contiguous(memory_format=grad_layout)
    again = fastops.conv2d(xl, wl, **args)
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    torch.testing.assert_close(torch.autograd.grad(again, (xl, wl), gout), grads, rtol=0, atol=0)


@pytest.mark.parametrize(
    "groups, kernel, args",
    [(3, 3, {"stride": 2, "padding": 2, "dilation": 2}), (2, 3, {"stride": (2, 1), "padding": (1, 0)}), (3, 1, {})],
)
def test_grouped_channels_last_maps(groups, kernel, args):
    # a group's channels are a column slice of the [H * W, C] matrices
    g = torch.Generator().manual_seed(groups)
    x = torch.randn(2, 12, 11, 10, generator=g, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    w = torch.randn(6, 12 // groups, kernel, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(12, 6 // groups, kernel, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    for ours, theirs, weight in ((fastops.conv2d, F.conv2d, w), (fastops.conv_transpose2d, F.conv_transpose2d, wt)):
        out = ours(x, weight, None, groups=groups, **args)
        ref = theirs(x, weight, None, groups=groups, **args)
        gout = torch.randn(out.shape, generator=g, dtype=torch.float64).contiguous(memory_format=CL)
        torch.testing.assert_close(out, ref, **F64)
        assert out.is_contiguous(memory_format=CL)
        for a, t in zip(torch.autograd.grad(out, (x, weight), gout), torch.autograd.grad(ref, (x, weight), gout)):
            torch.testing.assert_close(a, t, **F64)


@pytest.mark.parametrize("channels", [3, 70])
@pytest.mark.parametrize("kernel, stride, padding, output_padding", [(2, 2, 0, 0), (3, 2, 1, 1), (3, 1, 2, 0)])
def test_conv_transpose2d_channels_last(channels, kernel, stride, padding, output_padding):
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(2, channels, 9, 10, generator=g, dtype=torch.float64)
    w = torch.randn(channels, 4, kernel, kernel, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    args = {"stride": stride, "padding": padding, "output_padding": output_padding}

    def run(fn, layout):
        xs, ws, bs = x.contiguous(memory_format=layout).requires_grad_(), w.clone().requires_grad_(), b.clone()
        out = fn(xs, ws, bs.requires_grad_(), **args)
        gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
        return (out, *torch.autograd.grad(out, (xs, ws, bs), gout.contiguous(memory_format=layout)))

    ours = run(fastops.conv_transpose2d, CL)
    for a, t in zip(ours, run(F.conv_transpose2d, torch.contiguous_format)):
        torch.testing.assert_close(a, t, **F64)
    assert ours[0].is_contiguous(memory_format=CL) and ours[1].is_contiguous(memory_format=CL)


# ---- conv_transpose2d ---------------------------------------------------------------------------


@given(case=transpose_cases())
def test_conv_transpose2d_matches_torch_float64(case):
    assume(transpose_out_positive(case))
    x, w, b = transpose_operands(case)
    ours = forward_backward(fastops.conv_transpose2d, x, w, b, 3, **transpose_args(case))
    theirs = forward_backward(F.conv_transpose2d, x, w, b, 3, **transpose_args(case))
    for a, t in zip(ours, theirs):
        if t is not None:
            torch.testing.assert_close(a, t, **F64)


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (4, 2, 1), (3, 2, 1), (3, 1, 1), (2, 3, 0)])
def test_conv_transpose2d_unet_shapes(kernel, stride, padding):
    x = torch.randn(2, 6, 9, 8, dtype=torch.float64)
    w = torch.randn(6, 4, kernel, kernel, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    ours = forward_backward(fastops.conv_transpose2d, x, w, b, 4, stride=stride, padding=padding)
    theirs = forward_backward(F.conv_transpose2d, x, w, b, 4, stride=stride, padding=padding)
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
    ours = forward_backward(fastops.conv2d, x, w, None, 6, padding=4, dilation=4, groups=2)
    theirs = forward_backward(F.conv2d, x, w, None, 6, padding=4, dilation=4, groups=2)
    for a, t in zip(ours[:3], theirs[:3]):
        torch.testing.assert_close(a, t, rtol=1e-4, atol=1e-4)
    wt = torch.randn(8, 3, 2, 2, device=device)
    ours = forward_backward(fastops.conv_transpose2d, x, wt, None, 7, stride=2)
    theirs = forward_backward(F.conv_transpose2d, x, wt, None, 7, stride=2)
    for a, t in zip(ours[:3], theirs[:3]):
        torch.testing.assert_close(a, t, rtol=1e-4, atol=1e-4)


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
            forward_backward(fastops.conv2d, x, w, None, 9, **kw), forward_backward(F.conv2d, x, w, None, 9, **kw)
        ):
            if t is not None:
                torch.testing.assert_close(a, t, **F64)
        wt = torch.randn(96, 130 // groups, 4, 4, dtype=torch.float64)
        kw = dict(stride=2, padding=1, groups=groups)
        for a, t in zip(
            forward_backward(fastops.conv_transpose2d, x, wt, None, 9, **kw),
            forward_backward(F.conv_transpose2d, x, wt, None, 9, **kw),
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


@pytest.mark.parametrize("stride", [(2**27, 1), (1, 2**31), (2**40, 3), (5, 2**35)])
def test_huge_strides_cost_what_the_output_costs(stride):
    """A stride along an axis with one output pixel changes nothing but the output size: the work
    (and memory) follows the taps, never the stride's value."""
    x = torch.randn(2, 3, 13, 11, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    got = fastops.conv2d(x, w, stride=stride, padding=1, dilation=(2, 1))
    # torch's own check overflows at 2^31: the same output from a stride that fits
    expected = F.conv2d(x, w, stride=[min(s, 1000) for s in stride], padding=1, dilation=(2, 1))
    torch.testing.assert_close(got, expected)
    g = torch.randn_like(expected)
    torch.testing.assert_close(torch.autograd.grad(got, (x, w), g), torch.autograd.grad(expected, (x, w), g))
    xt = torch.randn(1, 4, 1, 1, dtype=torch.float64)  # one input pixel: any stride gives the same map
    expected_t = F.conv_transpose2d(xt, w, stride=[min(s, 1000) for s in stride])
    torch.testing.assert_close(fastops.conv_transpose2d(xt, w, stride=stride), expected_t)


def test_strides_past_two_to_the_forty_raise():
    x, w = torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)
    with pytest.raises(ValueError, match="must be at most 2\\^40"):
        fastops.conv2d(x, w, stride=(2**41, 1))
    huge = 2**41
    for stride, padding, dilation in (
        ([huge, 1], [0] * 4, [1, 1]),
        ([1, 1], [huge] * 4, [1, 1]),
        ([1, 1], [0] * 4, [1, huge]),
    ):
        with pytest.raises(ValueError, match="must be at most 2\\^40"):
            torch.ops.fastops.conv2d(x, w, None, stride, padding, dilation, 1)


# ---- opcheck and torch.compile ------------------------------------------------------------------


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_opcheck(layout):
    # the fake kernels give the layout the kernels give (channels_last maps: channels_last results)
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    args = ([2, 1], [3, 1, 2, 0], [2, 3], 2)
    torch.library.opcheck(torch.ops.fastops.conv2d, (x, w, b, *args))
    out = torch.ops.fastops.conv2d(x, w, b, *args)
    g = torch.randn(out.shape, dtype=torch.float64).contiguous(memory_format=layout)
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
    ga = torch.randn(2, 6, 7, 6, dtype=torch.float64).contiguous(memory_format=layout)
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
        cpu = forward_backward(fn, x, weight, None, 8, **kw)
        gpu = forward_backward(fn, x.cuda(), weight.cuda(), None, 8, **kw)
        for a, b in zip(cpu[:3], gpu[:3]):
            torch.testing.assert_close(b.cpu(), a, **F64)
    aspp = fastops.nn.ASPP(6, 4, [2, 12], path="fastops").double().eval()
    torch.testing.assert_close(aspp.cuda()(x.cuda()).cpu(), aspp.cpu()(x), **F64)
