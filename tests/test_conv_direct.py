"""The direct float32 convolution kernels (AVX-512 copy) against float64, and the per-tap GEMM path
they fall back to under a lower instruction set."""

import pytest
import torch
import torch.nn.functional as F
from common import assert_float32_close, cpu_isa, float32_and_float64
from conv_cases import (
    conv_args,
    conv_operands,
    forward_backward,
    padded_fits,
)
from hypothesis import assume, given
from hypothesis import strategies as st

import fastops
import fastops.nn

# ---- the direct kernel (float32, horizontal stride 1 or 2, one group; the AVX-512 copy) -----------
# Channel counts that it tiles (input channels a multiple of 32, output channels of 32 for the
# forward, any for the weight gradient), under the AVX-512 copy (the direct kernel, where the CPU
# has it) and the AVX2 one (per-tap GEMMs), against float64 on the same float32 operands.


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
    assume(padded_fits(case))
    x, w, b = conv_operands(case, torch.float32)
    with cpu_isa(isa):
        ours, ref = float32_and_float64(fastops.conv2d, F.conv2d, [x, w, b], 3, **conv_args(case))
    for a, t in zip(ours, ref):
        if t is not None:
            assert_float32_close(a, t)


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
        ours, ref = float32_and_float64(
            fastops.conv2d, F.conv2d, [x, w, b], 4, padding=pad, dilation=rate, stride=stride
        )
    for a, t in zip(ours, ref):
        assert_float32_close(a, t)


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
        ours, ref = float32_and_float64(fastops.conv_transpose2d, F.conv_transpose2d, [x, wt], 5, **kw)
    for a, t in zip(ours, ref):
        assert_float32_close(a, t)
    rates = [2, 6, 15]
    ws = [torch.randn(32, 64, 1, 1, generator=g) / 8] + [torch.randn(32, 64, 3, 3, generator=g) / 24 for _ in rates]

    def separate(x, *ws):
        return torch.cat(
            [F.conv2d(x, ws[0])] + [F.conv2d(x, w, padding=r, dilation=r) for w, r in zip(ws[1:], rates)], 1
        )

    with cpu_isa(isa):
        ours, ref = float32_and_float64(lambda x, *ws: fastops.aspp_conv(x, ws, rates), separate, [x, *ws], 6)
    for a, t in zip(ours, ref):
        assert_float32_close(a, t)


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
                forward_backward(fastops.conv2d, x, w, None, 2, padding=6, dilation=6)[:3]
                + forward_backward(fastops.conv2d, x, w32, None, 2, padding=6, dilation=6)[:3]
                + forward_backward(fastops.conv_transpose2d, x, wt, None, 2, stride=2, padding=1)[:3]
            )
    finally:
        torch.set_num_threads(previous)
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)
    ref = float32_and_float64(fastops.conv_transpose2d, F.conv_transpose2d, [x, wt], 2, stride=2, padding=1)
    for a, t in zip(*ref):
        assert_float32_close(a, t)
