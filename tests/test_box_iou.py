"""IoU family: fastops.box_overlap and the torchvision-compatible functions and losses."""

import math

import pytest
import torch
import torchvision.ops as tvops
from common import DEVICES, FLOAT_DTYPES, rand_boxes_xyxy, special_boxes_xyxy, xyxy_to
from hypothesis import given
from hypothesis import strategies as st
from reference import boxes as reference

import fastops

MODES = ["iou", "giou", "diou", "ciou", "iof"]
FORMATS = ["xyxy", "xywh", "cxcywh"]
TV_PAIRWISE = {
    "iou": (fastops.box_iou, tvops.box_iou),
    "giou": (fastops.generalized_box_iou, tvops.generalized_box_iou),
    "diou": (fastops.distance_box_iou, tvops.distance_box_iou),
    "ciou": (fastops.complete_box_iou, tvops.complete_box_iou),
}
TV_LOSSES = {
    "giou": (fastops.generalized_box_iou_loss, tvops.generalized_box_iou_loss),
    "diou": (fastops.distance_box_iou_loss, tvops.distance_box_iou_loss),
    "ciou": (fastops.complete_box_iou_loss, tvops.complete_box_iou_loss),
}


def tolerance(dtype):
    # Half inputs are exact in float32, so every dtype but float64 computes in float32.
    return dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)


def mixed_boxes(n, dtype=torch.float64, device="cpu"):
    """Random boxes followed by the edge cases."""
    boxes = torch.cat([rand_boxes_xyxy(n), special_boxes_xyxy()])
    return boxes.to(dtype=dtype, device=device)


def raw_op(boxes1, boxes2, mode, fmt="xyxy", aligned=False, eps=1e-7, loss_form=False):
    return torch.ops.fastops.box_overlap(boxes1, boxes2, mode, fmt, aligned, eps, loss_form)


# ---- values against the float64 reference -------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("loss_form", [False, True])
def test_pairwise_matches_reference(mode, fmt, dtype, device, loss_form):
    b1 = xyxy_to(mixed_boxes(13), fmt).to(dtype=dtype, device=device)
    b2 = xyxy_to(mixed_boxes(9), fmt).to(dtype=dtype, device=device)
    out = raw_op(b1, b2, mode, fmt, loss_form=loss_form)
    expected = reference.overlap(b1.cpu(), b2.cpu(), mode, fmt, loss_form=loss_form)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert out.shape == (b1.shape[0], b2.shape[0])
    torch.testing.assert_close(out.cpu().double(), expected, **tolerance(dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("loss_form", [False, True])
def test_aligned_matches_reference(mode, fmt, dtype, device, loss_form):
    n = 40
    b1 = xyxy_to(mixed_boxes(n - 8), fmt).to(dtype=dtype, device=device)
    b2 = xyxy_to(mixed_boxes(n - 8).flip(0), fmt).to(dtype=dtype, device=device)
    out = raw_op(b1, b2, mode, fmt, aligned=True, loss_form=loss_form)
    expected = reference.overlap(b1.cpu(), b2.cpu(), mode, fmt, aligned=True, loss_form=loss_form)
    assert out.shape == (n,)
    torch.testing.assert_close(out.cpu().double(), expected, **tolerance(dtype))


@pytest.mark.parametrize("mode", MODES)
def test_batched_pairwise_equals_per_batch(mode):
    b1 = rand_boxes_xyxy(2 * 3 * 7).reshape(2, 3, 7, 4)
    b2 = rand_boxes_xyxy(2 * 3 * 5).reshape(2, 3, 5, 4)
    out = fastops.box_overlap(b1, b2, mode=mode)
    assert out.shape == (2, 3, 7, 5)
    for i in range(2):
        for j in range(3):
            assert torch.equal(out[i, j], fastops.box_overlap(b1[i, j], b2[i, j], mode=mode))
    # leading dimensions broadcast, as torchvision's do
    single = fastops.box_overlap(b1, b2[0, 0], mode=mode)
    assert torch.equal(single[1, 2], fastops.box_overlap(b1[1, 2], b2[0, 0], mode=mode))


def test_noncontiguous_inputs():
    base = rand_boxes_xyxy(20)
    b1 = torch.cat([base, base], dim=1)[:, ::2]  # strided view
    assert not b1.is_contiguous()
    b2 = rand_boxes_xyxy(6).t().contiguous().t()
    assert torch.equal(fastops.box_iou(b1, b2), fastops.box_iou(b1.contiguous(), b2.contiguous()))


# ---- torchvision as an oracle ------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.int64]
)
@pytest.mark.parametrize("mode", list(TV_PAIRWISE))
def test_pairwise_matches_torchvision(mode, dtype):
    ours, theirs = TV_PAIRWISE[mode]
    if dtype.is_floating_point:
        b1, b2 = rand_boxes_xyxy(31).to(dtype), rand_boxes_xyxy(17).to(dtype)
    else:
        b1 = (rand_boxes_xyxy(31) * 10).round().to(dtype)
        b2 = (rand_boxes_xyxy(17) * 10).round().to(dtype)
    out, expected = ours(b1, b2), theirs(b1, b2)
    assert out.dtype == expected.dtype
    # torchvision subtracts half-precision corners in half precision; we read them exactly into
    # float32 (test_pairwise_matches_reference checks ours at 2e-5), so its rounding sets the bound.
    tol = {torch.float16: dict(rtol=0, atol=5e-3), torch.bfloat16: dict(rtol=0, atol=5e-2)}
    torch.testing.assert_close(
        out, expected, **tol.get(dtype, tolerance(dtype if dtype == torch.float64 else torch.float32))
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_box_iou_formats_match_torchvision(fmt):
    b1, b2 = xyxy_to(rand_boxes_xyxy(12), fmt), xyxy_to(rand_boxes_xyxy(9), fmt)
    torch.testing.assert_close(fastops.box_iou(b1, b2, fmt=fmt), tvops.box_iou(b1, b2, fmt=fmt), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", list(TV_PAIRWISE))
def test_pairwise_gradients_match_torchvision(mode, dtype):
    """Autograd through the fused kernel equals torchvision's autograd, ties included."""
    ours, theirs = TV_PAIRWISE[mode]
    base1 = torch.cat([rand_boxes_xyxy(10), special_boxes_xyxy()[:6]]).to(dtype)
    base2 = torch.cat([rand_boxes_xyxy(7), special_boxes_xyxy()[:6]]).to(dtype)
    weights = torch.randn(base1.shape[0], base2.shape[0], dtype=dtype)
    grads = []
    for fn in (ours, theirs):
        b1, b2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
        (fn(b1, b2) * weights).sum().backward()
        grads.append((b1.grad, b2.grad))
    for g_ours, g_theirs in zip(*grads):
        torch.testing.assert_close(
            g_ours,
            g_theirs,
            **({"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}),
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("mode", list(TV_LOSSES))
def test_losses_match_torchvision(mode, reduction, dtype):
    ours, theirs = TV_LOSSES[mode]
    base1 = torch.cat([rand_boxes_xyxy(20), special_boxes_xyxy()[:6]]).to(dtype)
    base2 = torch.cat([rand_boxes_xyxy(20), special_boxes_xyxy()[:6].flip(0)]).to(dtype)
    base2[-6:-3] = base1[-6:-3]  # identical pairs: every max/min ties
    results = []
    for fn in (ours, theirs):
        b1, b2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
        loss = fn(b1, b2, reduction=reduction)
        (loss * torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)).sum().backward()
        results.append((loss, b1.grad, b2.grad))
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    if dtype == torch.float16:
        tol = {"rtol": 1e-2, "atol": 1e-2}  # gradients are rounded to float16
    for a, b in zip(*results):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, **tol)


# Published expected values: torchvision's test/test_ops.py (TestBoxIou and the loss tests).
TV_INT_BOXES = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300], [0, 0, 25, 25]]
TV_INT_BOXES2 = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300]]
TV_FLOAT_BOXES = [
    [285.3538, 185.5758, 1193.5110, 851.4551],
    [285.1472, 188.7374, 1192.4984, 851.0669],
    [279.2440, 197.9812, 1189.4746, 849.2019],
]
TV_FLOAT_EXPECTED = [[1.0, 0.9933, 0.9673], [0.9933, 1.0, 0.9737], [0.9673, 0.9737, 1.0]]
TV_INT_EXPECTED = {
    "iou": [[1.0, 0.25, 0.0], [0.25, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0625, 0.25, 0.0]],
    "giou": [[1.0, 0.25, -0.7778], [0.25, 1.0, -0.8611], [-0.7778, -0.8611, 1.0], [0.0625, 0.25, -0.8819]],
    "diou": [[1.0, 0.1875, -0.4444], [0.1875, 1.0, -0.5625], [-0.4444, -0.5625, 1.0], [-0.0781, 0.1875, -0.6267]],
    "ciou": [[1.0, 0.1875, -0.4444], [0.1875, 1.0, -0.5625], [-0.4444, -0.5625, 1.0], [-0.0781, 0.1875, -0.6267]],
}


@pytest.mark.parametrize("mode", list(TV_PAIRWISE))
def test_torchvision_published_values(mode):
    fn = TV_PAIRWISE[mode][0]
    for dtype in (torch.int16, torch.int32, torch.int64):
        out = fn(torch.tensor(TV_INT_BOXES, dtype=dtype), torch.tensor(TV_INT_BOXES2, dtype=dtype))
        torch.testing.assert_close(out, torch.tensor(TV_INT_EXPECTED[mode]), rtol=0, atol=1e-4)
    for dtype, atol in ((torch.float16, 2e-3), (torch.float32, 1e-3), (torch.float64, 1e-3)):
        boxes = torch.tensor(TV_FLOAT_BOXES, dtype=dtype)
        torch.testing.assert_close(
            fn(boxes, boxes), torch.tensor(TV_FLOAT_EXPECTED), rtol=0, atol=atol, check_dtype=False
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_torchvision_published_loss_values(dtype, device):
    box1 = torch.tensor([-1, -1, 1, 1], dtype=dtype, device=device)
    box2 = torch.tensor([0, 0, 1, 1], dtype=dtype, device=device)
    box3 = torch.tensor([0, 1, 1, 2], dtype=dtype, device=device)
    box4 = torch.tensor([1, 1, 2, 2], dtype=dtype, device=device)
    box1s, box2s = torch.stack([box2, box2]), torch.stack([box3, box4])

    def check(fn, a, b, expected, reduction="none"):
        torch.testing.assert_close(
            fn(a, b, reduction=reduction), torch.tensor(expected, device=device), rtol=1.3e-6, atol=1e-4
        )

    giou = fastops.generalized_box_iou_loss
    check(giou, box1, box1, 0.0)
    check(giou, box1, box2, 0.75)
    check(giou, box2, box3, 1.0)
    check(giou, box2, box4, 1.5)
    check(giou, box1s, box2s, 2.5, "sum")
    check(giou, box1s, box2s, 1.25, "mean")
    for fn in (fastops.distance_box_iou_loss, fastops.complete_box_iou_loss):
        check(fn, box1, box1, 0.0)
        check(fn, box1, box2, 0.8125)
        check(fn, box1, box3, 1.1923)
        check(fn, box1, box4, 1.2500)
        check(fn, box1s, box2s, 1.2250, "mean")
        check(fn, box1s, box2s, 2.4500, "sum")


def test_mmcv_published_values():
    """mmcv's bbox_overlaps test cases (tests/test_ops/test_bbox.py). Their offset=1 (the legacy
    pixel convention, w = x2 - x1 + 1) equals shifting x2 and y2 by 1 with offset 0."""
    shift = torch.tensor([0.0, 0.0, 1.0, 1.0])
    b1 = torch.tensor([[1.0, 1.0, 3.0, 4.0], [2.0, 2.0, 3.0, 4.0], [7.0, 7.0, 8.0, 8.0]])
    b2 = torch.tensor([[0.0, 2.0, 2.0, 5.0], [2.0, 1.0, 3.0, 3.0]])
    torch.testing.assert_close(
        fastops.box_overlap(b1 + shift, b2 + shift), torch.tensor([[0.33333334, 0.5], [0.2, 0.5], [0.0, 0.0]])
    )
    torch.testing.assert_close(
        fastops.box_overlap(b1[:2] + shift, b2 + shift, aligned=True), torch.tensor([0.33333334, 0.5])
    )
    b1 = torch.tensor([[0.0, 0.0, 3.0, 3.0]])
    b2 = torch.tensor([[4.0, 0.0, 5.0, 3.0], [3.0, 0.0, 4.0, 3.0], [2.0, 0.0, 3.0, 3.0], [1.0, 0.0, 2.0, 3.0]])
    torch.testing.assert_close(fastops.box_overlap(b1 + shift, b2 + shift)[0], torch.tensor([0, 0.2, 0.5, 0.5]))
    i = torch.arange(1000.0)[:, None]
    b1 = torch.tensor([10.0, 10.0, 30.0, 30.0]) + i
    b2 = torch.tensor([20.0, 20.0, 40.0, 40.0]) + i
    torch.testing.assert_close(fastops.box_overlap(b1, b2, aligned=True), torch.full((1000,), 1 / 7))


# ---- gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("loss_form", [False, True])
def test_gradients(mode, fmt, aligned, loss_form, device):
    """gradcheck in float64, and the gradient of the autograd-differentiated float64 reference
    (CIoU only the latter: its alpha is a constant, as in torchvision, so finite differences of the
    value do not match its gradient by design)."""
    n = 5
    b1 = xyxy_to(rand_boxes_xyxy(n), fmt).to(device).requires_grad_()
    b2 = xyxy_to(rand_boxes_xyxy(n if aligned else 4), fmt).to(device).requires_grad_()
    fn = lambda x, y: raw_op(x, y, mode, fmt, aligned, 1e-7, loss_form)
    if mode != "ciou":
        assert torch.autograd.gradcheck(fn, (b1, b2), eps=1e-6, atol=1e-6, rtol=1e-5)
    # edge cases too: ties, touching edges, zero-area boxes
    s1 = torch.cat([b1.detach().cpu(), special_boxes_xyxy()])
    s2 = torch.cat([b2.detach().cpu(), special_boxes_xyxy().flip(0)])
    weights = torch.randn(s1.shape[0]) if aligned else torch.randn(s1.shape[0], s2.shape[0])
    grads = []
    for f, dev in ((fn, device), (lambda x, y: reference.overlap(x, y, mode, fmt, aligned, 1e-7, loss_form), "cpu")):
        x, y = s1.to(dev).requires_grad_(), s2.to(dev).requires_grad_()
        (f(x, y) * weights.to(dev)).sum().backward()
        grads.append((x.grad.cpu(), y.grad.cpu()))
    for ours, expected in zip(*grads):
        torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_gradient_dtype_follows_input(dtype):
    b1 = rand_boxes_xyxy(6).to(dtype).requires_grad_()
    b2 = rand_boxes_xyxy(4).to(dtype).requires_grad_()
    fastops.complete_box_iou(b1, b2).sum().backward()
    assert b1.grad.dtype == dtype and b2.grad.dtype == dtype
    r1, r2 = b1.detach().double().requires_grad_(), b2.detach().double().requires_grad_()
    fastops.complete_box_iou(r1, r2).sum().backward()
    tol = 1e-2 if dtype != torch.float32 else 1e-5
    torch.testing.assert_close(b1.grad.double(), r1.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(b2.grad.double(), r2.grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("aligned", [False, True])
def test_backward_is_deterministic_and_thread_independent(aligned):
    b1 = rand_boxes_xyxy(300, dtype=torch.float32).requires_grad_()
    b2 = rand_boxes_xyxy(300 if aligned else 257, dtype=torch.float32).requires_grad_()
    weights = torch.randn(300) if aligned else torch.randn(300, 257)
    threads = torch.get_num_threads()
    grads = []
    try:
        for n_threads in (threads, threads, 1):
            torch.set_num_threads(n_threads)
            b1.grad = b2.grad = None
            (fastops.box_overlap(b1, b2, mode="ciou", aligned=aligned) * weights).sum().backward()
            grads.append((b1.grad.clone(), b2.grad.clone()))
    finally:
        torch.set_num_threads(threads)
    for g in grads[1:]:
        assert torch.equal(g[0], grads[0][0]) and torch.equal(g[1], grads[0][1])


# ---- properties ----------------------------------------------------------------------------------

coord = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)
side = st.floats(min_value=0.0, max_value=1e3, allow_nan=False, width=32)
box = st.tuples(coord, coord, side, side).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
box_lists = st.lists(box, min_size=1, max_size=12)
# Sides of 0 or at least 2^-7: converting formats rounds coordinates by ~1e-13, which a
# near-degenerate box (a side of 1e-12, say) turns into a large relative change of its area.
well_sized_side = st.one_of(st.just(0.0), st.floats(min_value=2**-7, max_value=1e3, width=32))
well_sized_box = st.tuples(coord, coord, well_sized_side, well_sized_side).map(
    lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]
)
well_sized_box_lists = st.lists(well_sized_box, min_size=1, max_size=12)


@given(box_lists, box_lists)
def test_properties_pairwise(l1, l2):
    b1, b2 = torch.tensor(l1, dtype=torch.float64), torch.tensor(l2, dtype=torch.float64)
    iou = fastops.box_iou(b1, b2)
    giou = fastops.generalized_box_iou(b1, b2)
    diou = fastops.distance_box_iou(b1, b2)
    ciou = fastops.complete_box_iou(b1, b2)
    iof = fastops.box_overlap(b1, b2, mode="iof")
    for t in (iou, giou, diou, ciou, iof):
        assert torch.isfinite(t).all()
    assert ((iou >= 0) & (iou <= 1 + 1e-12)).all()
    assert ((giou >= -1 - 1e-12) & (giou <= iou + 1e-12)).all()
    assert (diou <= iou + 1e-12).all() and (ciou <= diou + 1e-12).all()
    assert (iof >= iou - 1e-12).all()
    torch.testing.assert_close(fastops.box_iou(b2, b1), iou.t(), rtol=0, atol=0)
    torch.testing.assert_close(fastops.generalized_box_iou(b2, b1), giou.t(), rtol=0, atol=0)


@given(box_lists, st.sampled_from(MODES), st.sampled_from(FORMATS))
def test_aligned_is_the_diagonal_of_pairwise(boxes, mode, fmt):
    b = xyxy_to(torch.tensor(boxes, dtype=torch.float32), fmt)
    other = b.flip(0)
    pairwise = fastops.box_overlap(b, other, mode=mode, fmt=fmt)
    aligned = fastops.box_overlap(b, other, mode=mode, fmt=fmt, aligned=True)
    assert torch.equal(aligned, pairwise.diagonal())


@given(well_sized_box_lists, well_sized_box_lists, st.sampled_from(MODES))
def test_formats_agree(l1, l2, mode):
    b1, b2 = torch.tensor(l1, dtype=torch.float64), torch.tensor(l2, dtype=torch.float64)
    expected = fastops.box_overlap(b1, b2, mode=mode)
    for fmt in ("xywh", "cxcywh"):
        got = fastops.box_overlap(xyxy_to(b1, fmt), xyxy_to(b2, fmt), mode=mode, fmt=fmt)
        torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-7)


# ---- edge values -------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_degenerate_boxes_are_finite_and_documented(device):
    zero = torch.tensor([[5.0, 5.0, 5.0, 5.0], [1.0, 1.0, 1.0, 9.0]], device=device)
    for mode in MODES:
        out = fastops.box_overlap(zero, zero, mode=mode)
        assert torch.isfinite(out).all(), mode
    # zero-area boxes have no overlap: IoU 0 (torchvision: NaN)
    assert torch.equal(fastops.box_iou(zero, zero).cpu(), torch.zeros(2, 2))
    assert torch.isnan(tvops.box_iou(zero.cpu(), zero.cpu())).any()
    # CIoU of point boxes: no aspect term, finite value and gradient (torchvision: NaN)
    p = torch.tensor([[5.0, 5.0, 5.0, 5.0]], device=device, requires_grad=True)
    q = torch.tensor([[6.0, 6.0, 6.0, 6.0]], device=device, requires_grad=True)
    value = fastops.complete_box_iou(p, q)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(p.grad).all() and torch.isfinite(q.grad).all()
    expected_diou = -(2.0 / (2.0 + 1e-7))  # IoU 0, centre distance^2 2, diagonal^2 2 + eps
    torch.testing.assert_close(value.cpu(), torch.tensor([[expected_diou]]))
    # a flat box (zero height, non-zero width) has aspect angle pi/2, still finite
    flat = torch.tensor([[0.0, 0.0, 4.0, 0.0]], device=device, requires_grad=True)
    sq = torch.tensor([[0.0, 0.0, 2.0, 2.0]], device=device)
    v = fastops.complete_box_iou_loss(flat, sq)
    v.sum().backward()
    assert torch.isfinite(v).all() and torch.isfinite(flat.grad).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("mode", MODES)
def test_non_finite_coordinates_give_nan_for_their_pairs_only(mode, bad, device):
    b1 = rand_boxes_xyxy(5, dtype=torch.float32, device=device)
    b2 = rand_boxes_xyxy(4, dtype=torch.float32, device=device)
    clean = fastops.box_overlap(b1, b2, mode=mode)
    b1[2, 3] = bad
    b2[1, 0] = bad
    out = fastops.box_overlap(b1, b2, mode=mode)
    nan_mask = torch.zeros(5, 4, dtype=torch.bool, device=device)
    nan_mask[2, :] = True
    nan_mask[:, 1] = True
    assert torch.isnan(out[nan_mask]).all()
    assert torch.equal(out[~nan_mask], clean[~nan_mask])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", MODES)
def test_empty_inputs(mode, device):
    e = torch.zeros(0, 4, device=device, requires_grad=True)
    b = rand_boxes_xyxy(3, dtype=torch.float32, device=device).requires_grad_()
    assert fastops.box_overlap(e, b, mode=mode).shape == (0, 3)
    out = fastops.box_overlap(b, e, mode=mode)
    assert out.shape == (3, 0)
    out.sum().backward()
    assert torch.equal(b.grad, torch.zeros_like(b))
    assert fastops.box_overlap(torch.zeros(2, 0, 4), torch.zeros(2, 5, 4), mode=mode).shape == (2, 0, 5)
    assert fastops.box_overlap(torch.zeros(0, 7, 4), torch.zeros(0, 5, 4), mode=mode).shape == (0, 7, 5)
    assert fastops.box_overlap(e, e, mode=mode, aligned=True).shape == (0,)


@pytest.mark.parametrize("fn", [v[0] for v in TV_LOSSES.values()])
def test_empty_loss_mean_is_zero_with_gradient(fn):
    b1 = torch.zeros(0, 4, requires_grad=True)
    b2 = torch.zeros(0, 4, requires_grad=True)
    loss = fn(b1, b2, reduction="mean")
    loss.backward()
    assert loss.item() == 0.0 and b1.grad is not None and b2.grad.shape == (0, 4)
    assert fn(b1, b2).numel() == 0


# ---- bad input -----------------------------------------------------------------------------------


def test_errors_name_the_argument():
    good = rand_boxes_xyxy(3, dtype=torch.float32)
    with pytest.raises(ValueError, match="boxes1 must have shape"):
        fastops.box_iou(torch.zeros(3, 5), good)
    with pytest.raises(ValueError, match="boxes2 must have shape"):
        raw_op(good, torch.zeros(4), "iou")
    with pytest.raises(ValueError, match="aligned boxes1 and boxes2 must have the same shape"):
        raw_op(good, torch.zeros(2, 4), "iou", aligned=True)
    with pytest.raises(RuntimeError):  # not broadcastable
        fastops.box_overlap(good, torch.zeros(2, 4), aligned=True)
    with pytest.raises(ValueError, match="same leading dimensions"):
        raw_op(torch.zeros(2, 3, 4), torch.zeros(3, 3, 4), "iou")
    with pytest.raises(TypeError, match="boxes1 must hold real numbers"):
        fastops.box_iou(torch.zeros(3, 4, dtype=torch.bool), good)
    with pytest.raises(TypeError, match="boxes2 must hold real numbers"):
        fastops.box_iou(good, torch.zeros(3, 4, dtype=torch.complex64))
    with pytest.raises(TypeError, match=r"boxes1 must be a torch\.Tensor"):
        fastops.box_iou([[0, 0, 1, 1]], good)
    with pytest.raises(TypeError, match="same dtype"):
        raw_op(good, good.double(), "iou")
    with pytest.raises(TypeError, match="boxes1 must be float16, bfloat16, float32 or float64"):
        raw_op(good.int(), good.int(), "iou")
    with pytest.raises(ValueError, match="mode must be one of"):
        fastops.box_overlap(good, good, mode="xiou")
    with pytest.raises(ValueError, match="mode must be one of"):
        raw_op(good, good, "xiou")
    with pytest.raises(ValueError, match="fmt must be one of"):
        fastops.box_overlap(good, good, fmt="yxyx")
    with pytest.raises(ValueError, match="rotated format"):
        fastops.box_iou(good, good, fmt="cxcywhr")
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        fastops.distance_box_iou(good, good, eps=-1.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fastops.generalized_box_iou_loss(good, good, reduction="xyz")
    with pytest.raises(ValueError, match="grad must have shape"):
        torch.ops.fastops.box_overlap_backward(torch.zeros(2, 2), good, good, "iou", "xyxy", False, 1e-7, False)


def test_mixed_dtypes_promote_as_torchvision():
    b1 = rand_boxes_xyxy(4, dtype=torch.float32)
    b2 = rand_boxes_xyxy(3, dtype=torch.float64)
    out = fastops.box_iou(b1, b2)
    assert out.dtype == tvops.box_iou(b1, b2).dtype == torch.float64


@pytest.mark.cuda
def test_device_mismatch_is_an_error():
    with pytest.raises(RuntimeError, match="same device"):
        raw_op(rand_boxes_xyxy(3, dtype=torch.float32), rand_boxes_xyxy(3, dtype=torch.float32, device="cuda"), "iou")


# ---- registration: opcheck, compile, autocast ---------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aligned", [False, True])
def test_opcheck(mode, aligned, device):
    b1 = rand_boxes_xyxy(6, device=device).requires_grad_()
    b2 = rand_boxes_xyxy(6 if aligned else 5, device=device).requires_grad_()
    torch.library.opcheck(torch.ops.fastops.box_overlap.default, (b1, b2, mode, "cxcywh", aligned, 1e-7, False))
    out_shape = (6,) if aligned else (6, 5)
    grad = torch.randn(out_shape, dtype=torch.float64, device=device)
    torch.library.opcheck(
        torch.ops.fastops.box_overlap_backward.default,
        (grad, b1.detach(), b2.detach(), mode, "xyxy", aligned, 1e-7, True),
    )


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph(dynamic):
    def step(pred, target, anchors):
        match = fastops.box_iou(anchors, target).amax(dim=1)
        return fastops.generalized_box_iou_loss(pred, target[:1].expand_as(pred), reduction="mean") + match.sum()

    compiled = torch.compile(step, fullgraph=True, dynamic=dynamic)
    pred = rand_boxes_xyxy(8, dtype=torch.float32).requires_grad_()
    target, anchors = rand_boxes_xyxy(3, dtype=torch.float32), rand_boxes_xyxy(8, dtype=torch.float32)
    out = compiled(pred, target, anchors)
    out.backward()
    grad_compiled = pred.grad.clone()
    pred.grad = None
    eager = step(pred, target, anchors)
    eager.backward()
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(grad_compiled, pred.grad)


def test_export():
    class Matcher(torch.nn.Module):
        def forward(self, anchors, gt):
            return fastops.complete_box_iou(anchors, gt)

    anchors, gt = rand_boxes_xyxy(10, dtype=torch.float32), rand_boxes_xyxy(4, dtype=torch.float32)
    exported = torch.export.export(Matcher(), (anchors, gt))
    torch.testing.assert_close(exported.module()(anchors, gt), fastops.complete_box_iou(anchors, gt))


def test_autocast_leaves_the_op_alone():
    b1 = rand_boxes_xyxy(10, dtype=torch.float32)
    b2 = rand_boxes_xyxy(7, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fastops.generalized_box_iou(b1, b2)
    assert out.dtype == torch.float32
    assert torch.equal(out, fastops.generalized_box_iou(b1, b2))


# ---- CUDA against CPU --------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aligned", [False, True])
def test_cuda_matches_cpu(mode, aligned, dtype):
    b1 = torch.cat([rand_boxes_xyxy(500), special_boxes_xyxy()]).to(dtype)
    b2 = torch.cat([rand_boxes_xyxy(500 if aligned else 300), special_boxes_xyxy()]).to(dtype)
    weights = torch.randn(b1.shape[0]) if aligned else torch.randn(b1.shape[0], b2.shape[0])
    results = []
    for device in ("cpu", "cuda"):
        x1, x2 = b1.to(device).requires_grad_(), b2.to(device).requires_grad_()
        out = fastops.box_overlap(x1, x2, mode=mode, aligned=aligned)
        (out * weights.to(device, out.dtype)).sum().backward()
        results.append((out.cpu(), x1.grad.cpu().double(), x2.grad.cpu().double()))
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    if dtype in (torch.float16, torch.bfloat16):
        tol = dict(rtol=2e-2, atol=2e-2)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.cuda
def test_cuda_large_index_math():
    """More than 2^31 pairs: 64-bit indexing end to end (about 8.6 GB of output)."""
    free, _ = torch.cuda.mem_get_info()
    if free < 12 * 2**30:
        pytest.skip("needs 12 GB of free GPU memory")
    b1 = rand_boxes_xyxy(65536, dtype=torch.float32, device="cuda")
    b2 = rand_boxes_xyxy(32769, dtype=torch.float32, device="cuda")
    out = fastops.box_iou(b1, b2)
    assert out.numel() > 2**31
    rows = torch.tensor([0, 65535])
    torch.testing.assert_close(out[rows].cpu(), fastops.box_iou(b1[rows].cpu(), b2.cpu()))
