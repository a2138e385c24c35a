"""RoIAlign, RoIPool, multi-level RoIAlign: values, gradients, layouts, determinism, bad input."""

import math

import pytest
import torch
import torchvision.ops as tvops
from common import DEVICES, assert_same_across_isas
from hypothesis import given, settings
from hypothesis import strategies as st
from reference.roi import roi_align_reference, roi_pool_reference

import fastops


def make_case(n=2, c=3, h=20, w=24, k=17, scale=0.5, dtype=torch.float64, seed=0, device="cpu"):
    """Features and boxes in image coordinates (1 / scale times the map), some partly outside."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    size = torch.tensor([w / scale, h / scale], dtype=torch.float64)
    xy = torch.rand(k, 2, generator=g, dtype=torch.float64) * size * 1.1 - 0.05 * size
    wh = torch.rand(k, 2, generator=g, dtype=torch.float64) * size * 0.6
    b = torch.randint(0, n, (k, 1), generator=g).double()
    rois = torch.cat([b, xy, xy + wh], dim=1)
    return x.to(device, dtype), rois.to(device, dtype)


# ---- values --------------------------------------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("output_size", [(7, 7), (3, 5)])
def test_roi_align_matches_float64_reference(aligned, sampling_ratio, output_size):
    x, rois = make_case()
    got = fastops.roi_align(x, rois, output_size, 0.5, sampling_ratio, aligned)
    ref = roi_align_reference(x, rois, output_size, 0.5, sampling_ratio, aligned)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_float32_is_torchvision_bits(channels_last, aligned, sampling_ratio):
    """float32 forward and backward equal torchvision's to the bit (same operations, same order)."""
    x, rois = make_case(c=21, k=40, dtype=torch.float32)  # 21 channels: one full 16-channel tile and a partial one
    grad = torch.randn(40, 21, 7, 7)
    xt = x.clone().requires_grad_()
    want = tvops.roi_align(xt, rois, 7, 0.5, sampling_ratio, aligned)
    want.backward(grad)
    xf = (x.contiguous(memory_format=torch.channels_last) if channels_last else x.clone()).requires_grad_()
    got = fastops.roi_align(xf, rois, 7, 0.5, sampling_ratio, aligned)
    got.backward(grad)
    assert torch.equal(got, want)
    assert torch.equal(xf.grad, xt.grad)


def test_roi_align_detectron2_published_values():
    """detectron2 tests/layers/test_roi_align.py: a 5 x 5 ramp, box (1, 1, 3, 3), 4 x 4 bins,
    adaptive sampling, with and without the half-pixel shift."""
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    rois = torch.tensor([[0.0, 1, 1, 3, 3]])
    unaligned = [[7.5, 8, 8.5, 9], [10, 10.5, 11, 11.5], [12.5, 13, 13.5, 14], [15, 15.5, 16, 16.5]]
    aligned = [[4.5, 5.0, 5.5, 6.0], [7.0, 7.5, 8.0, 8.5], [9.5, 10.0, 10.5, 11.0], [12.0, 12.5, 13.0, 13.5]]
    assert fastops.roi_align(x, rois, 4, 1.0, 0, False)[0, 0].tolist() == unaligned
    assert fastops.roi_align(x, rois, 4, 1.0, 0, True)[0, 0].tolist() == aligned


MMCV_CASES = [  # mmcv tests/test_ops/test_roi_align.py: (input, rois, output, grad of output.sum())
    (
        [[[[1.0, 2.0], [3.0, 4.0]]]],
        [[0.0, 0.0, 0.0, 1.0, 1.0]],
        [[[[1.0, 1.25], [1.5, 1.75]]]],
        [[[[3.0625, 0.4375], [0.4375, 0.0625]]]],
    ),
    (
        [[[[1.0, 2.0], [3.0, 4.0]], [[4.0, 3.0], [2.0, 1.0]]]],
        [[0.0, 0.0, 0.0, 1.0, 1.0]],
        [[[[1.0, 1.25], [1.5, 1.75]], [[4.0, 3.75], [3.5, 3.25]]]],
        [[[[3.0625, 0.4375], [0.4375, 0.0625]], [[3.0625, 0.4375], [0.4375, 0.0625]]]],
    ),
    (
        [[[[1.0, 2.0, 5.0, 6.0], [3.0, 4.0, 7.0, 8.0], [9.0, 10.0, 13.0, 14.0], [11.0, 12.0, 15.0, 16.0]]]],
        [[0.0, 0.0, 0.0, 3.0, 3.0]],
        [[[[1.9375, 4.75], [7.5625, 10.375]]]],
        [
            [
                [
                    [0.47265625, 0.42968750, 0.42968750, 0.04296875],
                    [0.42968750, 0.39062500, 0.39062500, 0.03906250],
                    [0.42968750, 0.39062500, 0.39062500, 0.03906250],
                    [0.04296875, 0.03906250, 0.03906250, 0.00390625],
                ]
            ]
        ],
    ),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", range(len(MMCV_CASES)))
def test_roi_align_mmcv_published_values(case, dtype):
    inp, rois, out, grad = MMCV_CASES[case]
    x = torch.tensor(inp, dtype=dtype, requires_grad=True)
    y = fastops.roi_align(x, torch.tensor(rois, dtype=dtype), (2, 2), 1.0, 2, True)
    y.backward(torch.ones_like(y))
    assert y.dtype == dtype and x.grad.dtype == dtype
    torch.testing.assert_close(y.double(), torch.tensor(out, dtype=torch.float64), rtol=0, atol=1e-3)
    torch.testing.assert_close(x.grad.double(), torch.tensor(grad, dtype=torch.float64), rtol=0, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_roi_align_reduced_precision_computes_in_float32(dtype):
    x, rois = make_case(dtype=dtype)
    got = fastops.roi_align(x, rois, 5, 0.5, 2, True)
    ref = roi_align_reference(x, rois, (5, 5), 0.5, 2, True)  # the rounded inputs, in float64
    assert got.dtype == dtype
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(got.double(), ref, rtol=eps, atol=eps)  # one rounding of a float32 result


@pytest.mark.parametrize("output_size", [(7, 7), (2, 3)])
def test_roi_pool_matches_reference_and_torchvision(output_size):
    x, rois = make_case()
    got = fastops.roi_pool(x, rois, output_size, 0.5)
    torch.testing.assert_close(got, roi_pool_reference(x, rois, output_size, 0.5), rtol=0, atol=0)
    x32, r32 = x.float(), rois.float()
    xt, xf = x32.clone().requires_grad_(), x32.clone().requires_grad_()
    want = tvops.roi_pool(xt, r32, output_size, 0.5)
    got = fastops.roi_pool(xf, r32, output_size, 0.5)
    grad = torch.randn_like(want)
    want.backward(grad)
    got.backward(grad)
    assert torch.equal(got, want) and torch.equal(xf.grad, xt.grad)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 20),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    k=st.integers(0, 12),
    ph=st.integers(1, 4),
    pw=st.integers(1, 4),
    sampling_ratio=st.integers(-1, 3),
    aligned=st.booleans(),
    scale=st.sampled_from([1.0, 0.5, 0.25, 0.3]),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_roi_align_property_torchvision_bits(
    n, c, h, w, k, ph, pw, sampling_ratio, aligned, scale, channels_last, seed
):
    """Any shape, scale and box (including degenerate and outside ones): torchvision's float32 bits."""
    x, rois = make_case(n, c, h, w, k, scale, torch.float32, seed)
    if k > 2:
        rois[0, 3:] = rois[0, 1:3]  # a zero-size box
        rois[1, 1:] = rois[1, [3, 4, 1, 2]]  # a reversed box
    xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    want = tvops.roi_align(x, rois, (ph, pw), scale, sampling_ratio, aligned)
    assert torch.equal(fastops.roi_align(xin, rois, (ph, pw), scale, sampling_ratio, aligned), want)
    grad = torch.randn(want.shape, generator=torch.Generator().manual_seed(seed))
    want_g = torch.ops.torchvision._roi_align_backward(grad, rois, scale, ph, pw, n, c, h, w, sampling_ratio, aligned)
    got_g = torch.ops.fastops.roi_align_backward(grad, rois, scale, ph, pw, n, c, h, w, sampling_ratio, aligned, False)
    assert torch.equal(got_g, want_g)
    assert torch.equal(fastops.roi_pool(xin, rois, (ph, pw), scale), tvops.roi_pool(x, rois, (ph, pw), scale))


# ---- gradients, layouts, determinism ------------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_roi_align_gradcheck(aligned, channels_last):
    x, rois = make_case(n=2, c=2, h=6, w=7, k=5, scale=1.0)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: fastops.roi_align(t, rois, (3, 2), 1.0, -1, aligned), (x,))


def test_roi_pool_gradcheck():
    x, rois = make_case(n=2, c=2, h=6, w=7, k=5, scale=1.0)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: fastops.roi_pool(t, rois, (3, 2), 1.0), (x,))


def test_multi_scale_gradcheck():
    feats, rois, scales = make_pyramid(c=2, k=6, dtype=torch.float64, size=64)
    feats = [f.requires_grad_() for f in feats]
    assert torch.autograd.gradcheck(lambda *f: fastops.multi_scale_roi_align(list(f), rois, 3, scales, 2), tuple(feats))


@pytest.mark.parametrize("op", ["align", "pool"])
def test_channels_last_equals_nchw_and_keeps_layout(op):
    x, rois = make_case(c=70, k=30, dtype=torch.float32)  # 70 channels: a full 64-channel block and a partial one
    fn = (
        (lambda t: fastops.roi_align(t, rois, 7, 0.5, 2, True))
        if op == "align"
        else (lambda t: fastops.roi_pool(t, rois, 7, 0.5))
    )
    grad = torch.randn(30, 70, 7, 7)
    xa = x.clone().requires_grad_()
    xb = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    ya, yb = fn(xa), fn(xb)
    ya.backward(grad)
    yb.backward(grad)
    assert torch.equal(ya, yb) and torch.equal(xa.grad, xb.grad)
    assert yb.is_contiguous(memory_format=torch.channels_last) and not yb.is_contiguous()
    assert xb.grad.is_contiguous(memory_format=torch.channels_last)
    assert ya.is_contiguous() and xa.grad.is_contiguous()


def test_backward_is_deterministic_across_runs_and_threads():
    _, rois = make_case(c=8, k=200, dtype=torch.float32)
    rois[:, 1:] = rois[:1, 1:] + torch.randn(200, 4) * 2  # many RoIs on the same pixels
    grad = torch.randn(200, 8, 7, 7)
    args = (0.5, 7, 7, 2, 8, 20, 24, 2, True, False)
    threads = torch.get_num_threads()
    try:
        runs = [torch.ops.fastops.roi_align_backward(grad, rois, *args) for _ in range(2)]
        torch.set_num_threads(1)
        runs.append(torch.ops.fastops.roi_align_backward(grad, rois, *args))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("channels_last", [False, True])
def test_same_bits_on_every_cpu_isa(channels_last):
    def run():
        x, rois = make_case(c=20, k=25, dtype=torch.float32)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        y = fastops.roi_align(x, rois, 7, 0.5, -1, True)
        y.backward(torch.ones_like(y))
        return y, x.grad, fastops.roi_pool(x.detach(), rois, 7, 0.5)

    assert_same_across_isas(run)


# ---- multi-level (FPN) ---------------------------------------------------------------------------


def make_pyramid(n=2, c=5, k=60, dtype=torch.float32, size=256, seed=0):
    """Four levels (strides 4 to 32) of an image size x (size + 64), boxes of every scale."""
    g = torch.Generator().manual_seed(seed)
    h, w = size, size + 64
    feats = [torch.randn(n, c, h // s, w // s, generator=g).to(dtype) for s in (4, 8, 16, 32)]
    side = torch.exp(torch.rand(k, 1, generator=g) * math.log(2 * size)) + 2  # log-uniform box sizes
    xy = torch.rand(k, 2, generator=g) * torch.tensor([w, h])
    wh = side * (0.5 + torch.rand(k, 2, generator=g))
    rois = torch.cat([torch.randint(0, n, (k, 1), generator=g).float(), xy, xy + wh], dim=1).to(dtype)
    return feats, rois, [0.25, 0.125, 0.0625, 0.03125]


@pytest.mark.parametrize("channels_last", [False, True])
def test_multi_scale_equals_torchvision(channels_last):
    feats, rois, _ = make_pyramid()
    names = ["p2", "p3", "p4", "p5"]
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    order = torch.cat([torch.nonzero(rois[:, 0] == i).flatten() for i in range(2)])
    tv = tvops.MultiScaleRoIAlign(names, 7, 2)
    ours = fastops.MultiScaleRoIAlign(names, 7, 2)
    ft = [f.clone().requires_grad_() for f in feats]
    fo = [
        (f.contiguous(memory_format=torch.channels_last) if channels_last else f.clone()).requires_grad_()
        for f in feats
    ]
    shapes = [(256, 320), (250, 300)]
    want = tv(dict(zip(names, ft)), boxes, shapes)
    got = ours(dict(zip(names, fo)), boxes, shapes)
    assert torch.equal(got, want)
    levels_used = {
        int(v)
        for v in torch.floor(
            4 + torch.log2(torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2])) / 224) + 1e-6
        ).clamp(2, 5)
    }
    assert levels_used == {2, 3, 4, 5}  # the case exercises every level
    grad = torch.randn_like(want)
    want.backward(grad)
    got.backward(grad)
    for a, b in zip(fo, ft):
        assert torch.equal(a.grad, b.grad)
    # boxes as Tensor[K, 5] in any order give the same rows
    direct = fastops.multi_scale_roi_align(feats, rois, 7, [0.25, 0.125, 0.0625, 0.03125], 2)
    assert torch.equal(direct[order], want.detach())


def test_multi_scale_single_level_and_aligned():
    feats, rois, scales = make_pyramid(c=3, k=20)
    got = fastops.multi_scale_roi_align(feats[:1], rois, 5, scales[:1], -1, True)
    assert torch.equal(got, tvops.roi_align(feats[0], rois, 5, 0.25, -1, True))
    got = fastops.multi_scale_roi_align(feats, rois, 5, scales, -1, True)
    ref_levels = (
        torch.floor(4 + torch.log2(torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2])) / 224) + 1e-6)
        .clamp(2, 5)
        .long()
        - 2
    )
    for lvl in range(4):
        idx = torch.nonzero(ref_levels == lvl).flatten()
        assert torch.equal(got[idx], tvops.roi_align(feats[lvl], rois[idx], 5, scales[lvl], -1, True))


def test_multi_scale_custom_canonical_level():
    feats, rois, scales = make_pyramid(c=2, k=30)
    got = fastops.multi_scale_roi_align(feats, rois, 3, scales, 2, canonical_scale=112, canonical_level=3)
    tv = tvops.MultiScaleRoIAlign(["a", "b", "c", "d"], 3, 2, canonical_scale=112, canonical_level=3)
    boxes = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    order = torch.cat([torch.nonzero(rois[:, 0] == i).flatten() for i in range(2)])
    want = tv(dict(zip("abcd", feats)), boxes, [(256, 320)])
    assert torch.equal(got[order], want)


# ---- edge cases and bad input -------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_empty_rois_give_empty_output_and_zero_grad(device):
    x = torch.randn(2, 3, 8, 8, device=device, requires_grad=True)
    rois = torch.zeros(0, 5, device=device)
    for fn in (lambda: fastops.roi_align(x, rois, 4, 1.0, 2), lambda: fastops.roi_pool(x, rois, 4, 1.0)):
        y = fn()
        assert y.shape == (0, 3, 4, 4)
        (g,) = torch.autograd.grad(y.sum(), x)
        assert torch.equal(g, torch.zeros_like(x))
    feats = [torch.randn(2, 3, 8, 8, device=device), torch.randn(2, 3, 4, 4, device=device)]
    assert fastops.multi_scale_roi_align(feats, rois, 2, [0.5, 0.25], 2).shape == (0, 3, 2, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_non_finite_boxes_give_zeros_and_no_gradient(device):
    x = torch.randn(1, 2, 10, 10, device=device, requires_grad=True)
    rois = torch.tensor(
        [[0, 1.0, 1, 5, 5], [0, float("nan"), 1, 5, 5], [0, 1, 1, float("inf"), 5], [0, -float("inf"), 1, 5, 5]],
        device=device,
    )
    for fn in (lambda t: fastops.roi_align(t, rois, 3, 1.0, -1), lambda t: fastops.roi_pool(t, rois, 3, 1.0)):
        y = fn(x)
        assert torch.isfinite(y).all() and (y[1:] == 0).all() and (y[0] != 0).any()
        (g,) = torch.autograd.grad(y[1:].sum(), x)
        assert (g == 0).all()


def test_nan_feature_reaches_only_the_bins_that_sample_it():
    """A NaN feature value propagates to the outputs whose samples read it, as in torchvision."""
    x, rois = make_case(c=3, k=30, dtype=torch.float32)
    rois[0] = torch.tensor([0.0, 8, 8, 30, 30])  # samples pixels 3.5 to 14.5 of image 0
    x[0, 1, 9, 11] = float("nan")
    got = fastops.roi_align(x, rois, 5, 0.5, 2, True)
    want = tvops.roi_align(x, rois, 5, 0.5, 2, True)
    assert torch.isnan(got).any() and not torch.isnan(got[:, [0, 2]]).any()
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("aligned", [False, True])
def test_sparse_rois_read_every_pixel_they_sample(aligned):
    """The NCHW forward copies into its per-thread tile only the pixels its RoIs sample (the tile
    is kept between calls, uninitialized). Fill every thread's tile with NaN through a call that
    samples everywhere, then pool a few small or clipped boxes (edges, corners, the last row and
    column, outside the map) from other features: a pixel sampled but not copied would be NaN."""
    g = torch.Generator().manual_seed(3)
    h, w = 37, 45
    nan = torch.full((2, 32, h, w), float("nan"))
    whole = torch.tensor([[0, 0, 0, w, h], [1, 0, 0, w, h]], dtype=torch.float32)
    fastops.roi_align(nan, whole, (7, 7), 1.0, 2, aligned)
    x = torch.randn(2, 32, h, w, generator=g)
    rois = torch.tensor(
        [
            [0, 0, 0, 3, 2],
            [0, w - 2.5, h - 1.5, w + 4, h + 3],
            [1, 17.3, 5.1, 19.0, 30.2],
            [1, -3, 10, 1.2, 11],
            [0, 40.1, 0.2, 44.9, 2.0],
            [1, 5, h - 0.6, 6, h + 9],
            [0, w + 1, 0, w + 5, 3],
            [1, 30.5, 20.5, 30.6, 20.6],
        ],
        dtype=torch.float32,
    )
    for size, ratio in (((7, 7), 2), ((3, 5), -1)):
        got = fastops.roi_align(x, rois, size, 1.0, ratio, aligned)
        assert not got.isnan().any()
        torch.testing.assert_close(got, tvops.roi_align(x, rois, size, 1.0, ratio, aligned), rtol=0, atol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_sparse_rois_backward_writes_every_gradient_value(channels_last):
    """The backward zeroes and writes back only the tile chunks its RoIs sample and writes zeros
    elsewhere directly: after a call that leaves NaN in every thread's tile, the gradient of a few
    small boxes is still torchvision's, zeros included."""
    h, w = 37, 45
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    nan_grad = torch.full((2, 7, 7, 32), float("nan")).permute(0, 3, 1, 2)
    whole = torch.tensor([[0, 0, 0, w, h], [1, 0, 0, w, h]], dtype=torch.float32)
    xn = torch.zeros(2, 32, h, w).to(memory_format=fmt).requires_grad_()
    fastops.roi_align(xn, whole, (7, 7), 1.0, 2, True).backward(nan_grad)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 32, h, w, generator=g).to(memory_format=fmt)
    rois = torch.tensor(
        [
            [0, 0, 0, 3, 2],
            [0, w - 2.5, h - 1.5, w + 4, h + 3],
            [1, 17.3, 5.1, 19.0, 30.2],
            [1, 5, h - 0.6, 6, h + 9],
            [0, w + 1, 0, w + 5, 3],
        ],
        dtype=torch.float32,
    )
    upstream = torch.randn(5, 32, 7, 7, generator=g)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    fastops.roi_align(ours, rois, (7, 7), 1.0, 2, True).backward(upstream)
    tvops.roi_align(theirs, rois, (7, 7), 1.0, 2, True).backward(upstream)
    assert not ours.grad.isnan().any()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=0)


def test_huge_box_with_adaptive_grid_finishes():
    """A finite but enormous box: torchvision's adaptive grid would visit ~1e16 samples; ours only
    the ones inside the map."""
    x = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    rois = torch.tensor([[0, -1e9, -1e9, 1e9, 1e9], [0, 0, 0, 1e7, 1e7]], dtype=torch.float64)
    y = fastops.roi_align(x, rois, 2, 1.0, -1, True)
    assert torch.isfinite(y).all()
    # the second box: each bin covers the map once per 5e6 pixels; the mean is tiny but defined
    assert y.abs().max() < 1e-3


@pytest.mark.parametrize("bad", [2.0, -1.0, 0.5, float("nan")])
def test_bad_batch_index_raises(bad):
    x = torch.randn(2, 3, 8, 8)
    rois = torch.tensor([[0, 1.0, 1, 4, 4], [bad, 1, 1, 4, 4]])
    for fn in (fastops.roi_align, fastops.roi_pool):
        with pytest.raises(ValueError, match=r"boxes\[1, 0\]"):
            fn(x, rois, 2, 1.0)
    with pytest.raises(ValueError, match=r"boxes\[1, 0\]"):
        fastops.multi_scale_roi_align([x, x[..., ::2, ::2]], rois, 2, [1.0, 0.5])


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(2, 3, 8, 8)
    rois = torch.tensor([[0, 1.0, 1, 4, 4]])
    with pytest.raises(TypeError, match="dtype"):
        fastops.roi_align(x, rois.double(), 2)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        fastops.roi_align(x[0], rois, 2)
    with pytest.raises(ValueError, match=r"\[K, 5\]"):
        fastops.roi_align(x, rois[:, :4], 2)
    with pytest.raises(ValueError, match="output_size"):
        fastops.roi_align(x, rois, 0)
    with pytest.raises(ValueError, match="spatial_scale"):
        fastops.roi_align(x, rois, 2, -1.0)
    with pytest.raises(TypeError, match="dtype"):
        fastops.roi_align(x.long(), rois.long(), 2)
    with pytest.raises(ValueError, match=r"boxes\[0\]"):
        fastops.roi_align(x, [torch.zeros(3, 5)], 2)
    with pytest.raises(ValueError, match="consecutive"):
        fastops.multi_scale_roi_align([x, x[..., ::4, ::4]], rois, 2, [1.0, 0.25])
    with pytest.raises(ValueError, match="batch size and channels"):
        fastops.multi_scale_roi_align([x, x[:, :2, ::2, ::2]], rois, 2, [1.0, 0.5])


def test_backward_ops_check_their_arguments():
    rois = torch.tensor([[0, 1.0, 1, 4, 4]])
    grad = torch.randn(1, 3, 2, 2)
    args = (1.0, 2, 2, 1, 3, 8, 8, 2, False, False)
    with pytest.raises(ValueError, match="grad must be"):
        torch.ops.fastops.roi_align_backward(grad[:, :2], rois, *args)
    with pytest.raises(TypeError, match="dtype"):
        torch.ops.fastops.roi_align_backward(grad.double(), rois, *args)
    argmax = torch.zeros(1, 3, 2, 2, dtype=torch.int32)
    with pytest.raises(ValueError, match="argmax"):
        torch.ops.fastops.roi_pool_backward(grad, rois, argmax.long(), 1.0, 2, 2, 1, 3, 8, 8, False)
    empty = torch.ops.fastops.roi_align_backward(torch.zeros(0, 3, 2, 2), rois[:0], *args)
    assert empty.shape == (1, 3, 8, 8) and (empty == 0).all()


@pytest.mark.cuda
def test_cuda_matches_cpu_and_is_deterministic():
    for channels_last in (False, True):
        x, rois = make_case(c=20, k=60, dtype=torch.float32)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        grad = torch.randn(60, 20, 7, 7)
        xc = x.cuda().requires_grad_()
        y = fastops.roi_align(xc, rois.cuda(), 7, 0.5, -1, True)
        torch.testing.assert_close(y.cpu(), fastops.roi_align(x, rois, 7, 0.5, -1, True), rtol=1e-5, atol=1e-5)
        assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
        args = (0.5, 7, 7, 2, 20, 20, 24, -1, True, channels_last)
        g1 = torch.ops.fastops.roi_align_backward(grad.cuda(), rois.cuda(), *args)
        g2 = torch.ops.fastops.roi_align_backward(grad.cuda(), rois.cuda(), *args)
        assert torch.equal(g1, g2)
        torch.testing.assert_close(
            g1.cpu(), torch.ops.fastops.roi_align_backward(grad, rois, *args), rtol=1e-5, atol=1e-5
        )
        p, _ = torch.ops.fastops.roi_pool(xc, rois.cuda(), 0.5, 7, 7)
        assert torch.equal(p.cpu(), fastops.roi_pool(x, rois, 7, 0.5))
        xp = xc.detach().clone().requires_grad_()
        fastops.roi_pool(xp, rois.cuda(), 7, 0.5).backward(grad.cuda())
        xq = x.clone().requires_grad_()
        fastops.roi_pool(xq, rois, 7, 0.5).backward(grad)
        torch.testing.assert_close(xp.grad.cpu(), xq.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
def test_cuda_multi_scale_matches_cpu():
    feats, rois, scales = make_pyramid()
    fc = [f.cuda().requires_grad_() for f in feats]
    y = fastops.multi_scale_roi_align(fc, rois.cuda(), 7, scales, 2)
    torch.testing.assert_close(y.cpu(), fastops.multi_scale_roi_align(feats, rois, 7, scales, 2), rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(y)
    g1 = torch.autograd.grad(y, fc, grad, retain_graph=True)
    g2 = torch.autograd.grad(y, fc, grad)
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)


@pytest.mark.cuda
def test_cuda_bad_device_and_half():
    x = torch.randn(1, 2, 8, 8, device="cuda")
    with pytest.raises(RuntimeError, match="device"):
        fastops.roi_align(x, torch.tensor([[0, 1.0, 1, 4, 4]]), 2)
    for dtype in (torch.float16, torch.bfloat16):
        xh, rois = make_case(dtype=dtype, device="cuda")
        ref = roi_align_reference(xh.cpu(), rois.cpu(), (5, 5), 0.5, 2, True)
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(fastops.roi_align(xh, rois, 5, 0.5, 2, True).double().cpu(), ref, rtol=eps, atol=eps)


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_runs_in_float32_like_torchvision(device):
    """Under autocast, reduced-precision features with float32 boxes: computed in float32, returned in
    the features' dtype (torchvision's autocast rule), with a gradient."""
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    x, rois = make_case(c=4, k=9, dtype=torch.float32, device=device)
    xl = x.to(dtype).requires_grad_()
    feats, prois, scales = make_pyramid(c=3, k=10)
    with torch.autocast(device, dtype=dtype):
        y = fastops.roi_align(xl, rois, 3, 0.5, 2, True)
        p = fastops.roi_pool(xl, rois, 3, 0.5)
        m = fastops.multi_scale_roi_align([f.to(device, dtype) for f in feats], prois.to(device), 3, scales, 2)
    assert y.dtype == p.dtype == m.dtype == dtype
    assert torch.equal(y, fastops.roi_align(xl.float(), rois, 3, 0.5, 2, True).to(dtype))
    assert torch.equal(p, fastops.roi_pool(xl.float(), rois, 3, 0.5).to(dtype))
    want_m = fastops.multi_scale_roi_align([f.to(device, dtype).float() for f in feats], prois.to(device), 3, scales, 2)
    assert torch.equal(m, want_m.to(dtype))
    y.float().sum().backward()
    assert xl.grad.dtype == dtype and xl.grad.abs().sum() > 0


# ---- registration: opcheck, compile ------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    ops = torch.ops.fastops
    x, rois = make_case(c=4, k=6, dtype=torch.float32, device=device)
    x.requires_grad_()
    torch.library.opcheck(ops.roi_align.default, (x, rois, 0.5, 3, 2, 2, True))
    torch.library.opcheck(
        ops.roi_align.default,
        (x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(), rois, 0.5, 3, 2, -1, False),
    )
    torch.library.opcheck(ops.roi_pool.default, (x, rois, 0.5, 3, 2))
    feats, prois, scales = make_pyramid(c=3, k=10)
    feats = [f.to(device).requires_grad_() for f in feats]
    torch.library.opcheck(
        ops.multi_scale_roi_align.default, (feats, prois.to(device), scales, 2, 2, 2, False, 224.0, 4)
    )
    grad = torch.randn(6, 4, 3, 2, device=device)
    torch.library.opcheck(ops.roi_align_backward.default, (grad, rois, 0.5, 3, 2, 2, 4, 20, 24, 2, True, False))


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph(dynamic):
    feats, rois, scales = make_pyramid(c=3, k=12)

    def step(x, f0, f1, f2, f3, rois):
        a = fastops.roi_align(x, rois, 4, 0.25, 2, True)
        b = fastops.roi_pool(x, rois, 4, 0.25)
        c = fastops.multi_scale_roi_align([f0, f1, f2, f3], rois, 4, scales, 2)
        return a * 2, b + 1, c - 1

    compiled = torch.compile(step, fullgraph=True, dynamic=dynamic)
    args = [feats[0], *feats, rois]
    for got, want in zip(compiled(*args), step(*args)):
        assert torch.equal(got, want)
