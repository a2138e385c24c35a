"""Focal losses: sigmoid (torchvision's), softmax, weighted BCE; modules; class-weight helper."""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvops
from common import DEVICES, FLOAT_DTYPES
from hypothesis import given
from hypothesis import strategies as st
from reference.focal import one_hot, sigmoid_reference, softmax_reference

import fastops


def logits_and_targets(rows=64, classes=7, *, scale=3.0, soft=False, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, classes, generator=g, dtype=torch.float64) * scale).to(dtype)
    t = (
        torch.rand(rows, classes, generator=g, dtype=torch.float64)
        if soft
        else (torch.rand(rows, classes, generator=g) < 0.2).double()
    )
    return x, t.to(dtype)


def tolerance(dtype):
    return {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}.get(
        dtype, dict(rtol=1e-2, atol=1e-3)
    )


# ---- sigmoid focal loss: values and gradients ---------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.0), (0.5, 0.5), (0.9, 3.7), (0.0, 1.0)])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_matches_reference(alpha, gamma, reduction, dtype, soft, device):
    x, t = logits_and_targets(soft=soft, dtype=dtype)
    xg = x.detach().clone().to(device).requires_grad_()
    loss = fastops.sigmoid_focal_loss(xg, t.to(device), alpha, gamma, reduction)
    assert loss.dtype == dtype
    xr = x.detach().double().requires_grad_()
    ref = sigmoid_reference(xr, t.double(), alpha, gamma)
    ref = {"none": ref, "mean": ref.mean(), "sum": ref.sum()}[reduction]
    torch.testing.assert_close(loss.double().cpu(), ref.detach(), **tolerance(dtype))
    weights = torch.linspace(0.5, 1.5, loss.numel(), dtype=torch.float64).reshape(loss.shape)
    (loss * weights.to(device, dtype)).sum().backward()
    (ref * weights).sum().backward()
    assert xg.grad.dtype == dtype
    torch.testing.assert_close(xg.grad.double().cpu(), xr.grad, **tolerance(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2), (-1, 0), (0.58, 1.0)])
def test_sigmoid_matches_torchvision(alpha, gamma, reduction, dtype):
    x, t = logits_and_targets(rows=500, classes=11, dtype=dtype, seed=3)
    results = []
    for fn in (fastops.sigmoid_focal_loss, tvops.sigmoid_focal_loss):
        xg = x.clone().requires_grad_()
        loss = fn(xg, t, alpha=alpha, gamma=gamma, reduction=reduction)
        loss.sum().backward()
        results.append((loss, xg.grad))
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.58, 1.0])
@pytest.mark.parametrize("gamma", [0, 2])
def test_torchvision_properties(alpha, gamma):
    """torchvision's own tests: the ratio to BCE is (1 - p_t)^gamma alpha_t; alpha=-1, gamma=0 is BCE."""
    x, t = logits_and_targets(rows=90, classes=2, dtype=torch.float32, seed=1)
    focal = fastops.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert (focal <= ce + 1e-6).all()
    p = torch.sigmoid(x)
    p_t = p * t + (1 - p) * (1 - t)
    ratio = (1 - p_t) ** gamma
    if alpha >= 0:
        ratio = ratio * (alpha * t + (1 - alpha) * (1 - t))
    torch.testing.assert_close(focal, ratio * ce, rtol=1e-5, atol=1e-6)
    if alpha == -1 and gamma == 0:
        for reduction in ("mean", "sum"):
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            a = fastops.sigmoid_focal_loss(xa, t, alpha=-1, gamma=0, reduction=reduction)
            b = F.binary_cross_entropy_with_logits(xb, t, reduction=reduction)
            a.backward(), b.backward()
            torch.testing.assert_close(a, b)
            torch.testing.assert_close(xa.grad, xb.grad)


# mmcv's published values (tests/test_ops/test_focal_loss.py), alpha 0.25, gamma 2, reduction
# "mean" = sum / number of rows there.
MMCV_INPUTS = [
    ([[1.0, 0], [0, 1.0]], [0, 1]),
    ([[1.0, 0, -1.0], [0, 1.0, 2.0]], [2, 1]),
    ([[1e-6, 2e-6, 3e-6], [4e-6, 5e-5, 6e-4], [7e-3, 8e-2, 9e-1]], [1, 2, 0]),
]
MMCV_SIGMOID = [
    (0.13562961, [[-0.00657264, 0.11185755], [0.11185755, -0.00657264]]),
    (1.10251057, [[0.28808805, 0.11185755, -0.09602935], [0.11185755, -0.00657264, 0.40376765]]),
    (
        0.42287254,
        [
            [0.07457182, -0.02485716, 0.07457201],
            [0.07457211, 0.07457669, -0.02483728],
            [-0.02462499, 0.08277918, 0.18050370],
        ],
    ),
]
MMCV_SOFTMAX = [
    (0.00566451, [[-0.00657264, 0.00657264], [0.00657264, -0.00657264]]),
    (0.34956908, [[0.10165970, 0.03739851, -0.13905823], [0.01227554, -0.10298023, 0.09070466]]),
    (
        0.15754992,
        [
            [0.02590877, -0.05181759, 0.02590882],
            [0.02589641, 0.02589760, -0.05179400],
            [-0.07307514, 0.02234372, 0.05073142],
        ],
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", range(3))
def test_mmcv_published_values(case, device):
    xs, ys = MMCV_INPUTS[case]
    y = torch.tensor(ys, device=device)
    x = torch.tensor(xs, device=device, requires_grad=True)
    loss = fastops.sigmoid_focal_loss(x, y, 0.25, 2.0, "sum", normalizer=len(ys))
    loss.backward()
    torch.testing.assert_close(loss.cpu(), torch.tensor(MMCV_SIGMOID[case][0]), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(x.grad.cpu(), torch.tensor(MMCV_SIGMOID[case][1]), rtol=1e-5, atol=1e-7)
    x = torch.tensor(xs, device=device, requires_grad=True)
    loss = fastops.softmax_focal_loss(x, y, 2.0, alpha=0.25)
    loss.backward()
    torch.testing.assert_close(loss.cpu(), torch.tensor(MMCV_SOFTMAX[case][0]), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(x.grad.cpu(), torch.tensor(MMCV_SOFTMAX[case][1]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_index_targets_equal_one_hot(reduction, device):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(300, 9, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(-1, 10, (300,), generator=g)  # 9 = background, -1 = ignore
    cw, sw = torch.rand(9, generator=g, dtype=torch.float64), torch.rand(300, generator=g, dtype=torch.float64)
    dense, keep = one_hot(labels, 9, background=9, ignore=-1)
    xi = x.detach().clone().to(device).requires_grad_()
    got = fastops.sigmoid_focal_loss(
        xi,
        labels.to(device),
        reduction=reduction,
        class_weight=cw.to(device),
        sample_weight=sw.to(device),
        ignore_index=-1,
    )
    xr = x.clone().requires_grad_()
    ref = sigmoid_reference(xr, dense, class_weight=cw, sample_weight=sw) * keep[:, None]
    ref = {"none": ref, "mean": ref.sum() / (keep.sum() * 9), "sum": ref.sum()}[reduction]
    torch.testing.assert_close(got.cpu(), ref.detach(), rtol=1e-10, atol=1e-12)
    got.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(xi.grad.cpu(), xr.grad, rtol=1e-10, atol=1e-12)


def test_background_index_and_other_shapes():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 5), generator=g)
    labels[0, 0] = 0
    # background_index 0: label 0 rows have no positive; other labels are one-hot
    got = fastops.sigmoid_focal_loss(x, labels, background_index=0)
    dense, _ = one_hot(labels, 4, background=0, ignore=-100)
    torch.testing.assert_close(got, sigmoid_reference(x, dense))
    # any shape with dense targets, 0-d included (torchvision accepts them)
    s = torch.tensor(0.3, dtype=torch.float64)
    torch.testing.assert_close(
        fastops.sigmoid_focal_loss(s, torch.tensor(1.0, dtype=torch.float64)),
        tvops.sigmoid_focal_loss(s, torch.tensor(1.0, dtype=torch.float64)),
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 2.0])
def test_extreme_logits_are_finite(gamma, device):
    x = torch.tensor([[-1e4, -100.0, -30.0, -17.0, 0.0, 17.0, 30.0, 100.0, 1e4]] * 2, device=device, requires_grad=True)
    t = torch.tensor([[0.0] * 9, [1.0] * 9], device=device)
    loss = fastops.sigmoid_focal_loss(x, t, gamma=gamma)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(x.grad).all()
    xr = x.detach().double().cpu().requires_grad_()
    ref = sigmoid_reference(xr, t.double().cpu(), gamma=gamma)
    torch.testing.assert_close(loss.double().cpu(), ref.detach(), rtol=1e-5, atol=1e-6)
    if 0 < gamma < 1:  # torchvision's gradient is NaN here; ours is the limit, 0
        tv = x.detach().cpu().clone().requires_grad_()
        tvops.sigmoid_focal_loss(tv, t.cpu(), gamma=gamma).sum().backward()
        assert torch.isnan(tv.grad).any()
    # softmax too
    xs = (x.detach() * 1.0).requires_grad_()
    lab = torch.tensor([0, 8], device=device)
    sl = fastops.softmax_focal_loss(xs, lab, gamma, reduction="none")
    sl.sum().backward()
    assert torch.isfinite(sl).all() and torch.isfinite(xs.grad).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_gradcheck(gamma, device):
    x, t = logits_and_targets(rows=6, classes=4, soft=True)
    x = x.detach().clone().to(device).requires_grad_()
    cw = torch.rand(4, dtype=torch.float64, device=device)
    sw = torch.rand(6, dtype=torch.float64, device=device)
    for reduction in ("none", "sum", "mean"):
        assert torch.autograd.gradcheck(
            lambda v: fastops.sigmoid_focal_loss(
                v, t.to(device), 0.3, gamma, reduction, class_weight=cw, sample_weight=sw
            ),
            (x,),
        )
        assert torch.autograd.gradcheck(
            lambda v: fastops.weighted_bce_with_logits(v, t.to(device), pos_weight=cw + 0.5, reduction=reduction), (x,)
        )
        labels = torch.tensor([0, 3, -100, 1, 2, 2], device=device)
        assert torch.autograd.gradcheck(
            lambda v: fastops.softmax_focal_loss(
                v, labels, gamma, class_weight=cw, sample_weight=sw, reduction=reduction
            ),
            (x,),
        )


# ---- softmax focal loss and weighted BCE --------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("gamma", [0.0, 0.7, 2.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_softmax_matches_reference(gamma, reduction, dtype, device):
    g = torch.Generator().manual_seed(6)
    x = (torch.randn(3, 50, 13, generator=g, dtype=torch.float64) * 4).to(dtype)
    y = torch.randint(0, 13, (3, 50), generator=g)
    y[0, :5] = -100
    cw = torch.rand(13, generator=g, dtype=torch.float64)
    sw = torch.rand(3, 50, generator=g, dtype=torch.float64)
    xg = x.detach().clone().to(device).requires_grad_()
    loss = fastops.softmax_focal_loss(
        xg, y.to(device), gamma, class_weight=cw.to(device), sample_weight=sw.to(device), reduction=reduction
    )
    xr = x.detach().double().requires_grad_()
    ref = softmax_reference(xr, y, gamma, class_weight=cw, sample_weight=sw)
    ref = {"none": ref, "mean": ref.sum() / (y != -100).sum(), "sum": ref.sum()}[reduction]
    torch.testing.assert_close(loss.double().cpu(), ref.detach(), **tolerance(dtype))
    loss.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(xg.grad.double().cpu(), xr.grad, **tolerance(dtype))


def test_softmax_gamma_zero_is_cross_entropy():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 6, (40,), generator=g)
    y[3] = -100
    w = torch.rand(6, generator=g, dtype=torch.float64)
    for reduction in ("none", "sum"):
        torch.testing.assert_close(
            fastops.softmax_focal_loss(x, y, 0.0, class_weight=w, reduction=reduction),
            F.cross_entropy(x, y, weight=w, reduction=reduction),
        )
    torch.testing.assert_close(fastops.softmax_focal_loss(x, y, 0.0), F.cross_entropy(x, y))  # unweighted mean


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_weighted_bce_matches_torch(reduction, device):
    x, t = logits_and_targets(rows=80, classes=5, soft=True, seed=8)
    g = torch.Generator().manual_seed(8)
    pw, cw = torch.rand(5, generator=g, dtype=torch.float64) * 3, torch.rand(5, generator=g, dtype=torch.float64)
    sw = torch.rand(80, generator=g, dtype=torch.float64)
    xa, xb = x.detach().clone().to(device).requires_grad_(), x.clone().requires_grad_()
    a = fastops.weighted_bce_with_logits(
        xa,
        t.to(device),
        pos_weight=pw.to(device),
        class_weight=cw.to(device),
        sample_weight=sw.to(device),
        reduction=reduction,
    )
    b = F.binary_cross_entropy_with_logits(xb, t, weight=cw * sw[:, None], pos_weight=pw, reduction=reduction)
    torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-12)
    a.sum().backward(), b.sum().backward()
    torch.testing.assert_close(xa.grad.cpu(), xb.grad, rtol=1e-10, atol=1e-12)


def test_normalizer_tensor_and_modules():
    x, t = logits_and_targets(rows=30, classes=4, seed=9, dtype=torch.float32)
    num_fg = torch.tensor(7.0)
    got = fastops.sigmoid_focal_loss(x, t, reduction="sum", normalizer=num_fg)
    torch.testing.assert_close(got, tvops.sigmoid_focal_loss(x, t, reduction="sum") / 7.0)
    cw = torch.rand(4)
    module = fastops.nn.SigmoidFocalLoss(alpha=0.3, gamma=1.5, reduction="sum", class_weight=cw)
    torch.testing.assert_close(module(x, t), fastops.sigmoid_focal_loss(x, t, 0.3, 1.5, "sum", class_weight=cw))
    assert "class_weight" in module.state_dict()
    module.eval()  # same loss in eval mode
    torch.testing.assert_close(module(x, t), fastops.sigmoid_focal_loss(x, t, 0.3, 1.5, "sum", class_weight=cw))
    labels = torch.randint(0, 4, (30,))
    soft = fastops.nn.SoftmaxFocalLoss(gamma=2.0, class_weight=cw)
    torch.testing.assert_close(soft(x, labels), fastops.softmax_focal_loss(x, labels, 2.0, class_weight=cw))
    bce = fastops.nn.WeightedBCEWithLogitsLoss(pos_weight=cw + 1)
    torch.testing.assert_close(bce(x, t), F.binary_cross_entropy_with_logits(x, t, pos_weight=cw + 1))
    with pytest.raises(ValueError, match="reduction"):
        fastops.nn.SigmoidFocalLoss(reduction="avg")


# ---- class weights -------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 1.5])
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("index_targets", [False, True])
def test_weights_of_one_give_the_unweighted_bits(gamma, reduction, index_targets):
    """Without weights the CPU loop skips them; explicit all-ones weights take the weighted loop.
    A product with 1 is exact, so both give the same bits, forward and backward."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(37, 21, generator=g) * 4
    t = torch.randint(-1, 21, (37,), generator=g) if index_targets else (torch.rand(37, 21, generator=g) < 0.2).float()
    ones = dict(class_weight=torch.ones(21), sample_weight=torch.ones(37))

    def focal(xs, **kw):
        return fastops.sigmoid_focal_loss(xs, t, 0.25, gamma, reduction, background_index=-1, **kw)

    def bce(xs, **kw):  # the same kernel with gamma 0, and a positive weight
        return fastops.weighted_bce_with_logits(xs, t, reduction=reduction, background_index=-1, **kw)

    for loss, weights in ((focal, ones), (bce, dict(ones, pos_weight=torch.ones(21)))):
        results = []
        for kw in ({}, weights):
            xs = x.clone().requires_grad_()
            out = loss(xs, **kw)
            out.backward(torch.ones_like(out) * 0.5)
            results.append((out.detach(), xs.grad))
        for a, b in zip(*results):
            assert torch.equal(a, b)


def test_class_weights():
    counts = torch.tensor([100, 10, 1, 0])
    for method in ("inverse", "inverse_sqrt", "effective_number"):
        w = fastops.class_weights(counts, method)
        assert w[3] == 0 and (w[:3] > 0).all()
        assert (w[0] < w[1]) and (w[1] < w[2])  # rarer classes weigh more
        torch.testing.assert_close((w * counts).sum(), counts.sum().float())  # total weight kept
    inv = fastops.class_weights(counts, "inverse")
    torch.testing.assert_close(inv[:3] * counts[:3], torch.full((3,), 111 / 3))  # sklearn's "balanced"
    eff = fastops.class_weights(counts, "effective_number", beta=0.99)
    expected = (1 - 0.99) / (1 - 0.99 ** counts[:3].double())
    torch.testing.assert_close(eff[:3].double() / eff[0], expected / expected[0], rtol=1e-6, atol=0)  # float32
    with pytest.raises(ValueError, match="method"):
        fastops.class_weights(counts, "median")
    with pytest.raises(ValueError, match="beta"):
        fastops.class_weights(counts, "effective_number", beta=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        fastops.class_weights(torch.tensor([1, -1]))


# ---- properties ----------------------------------------------------------------------------------


@given(
    st.lists(st.floats(-60, 60, width=32), min_size=1, max_size=30),
    st.floats(0, 1),
    st.floats(0, 5),
)
def test_sigmoid_properties(logits, alpha, gamma):
    x = torch.tensor(logits, dtype=torch.float64)
    t = (torch.arange(len(logits)) % 3 == 0).double()
    loss = fastops.sigmoid_focal_loss(x, t, alpha, gamma)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert (loss >= 0).all() and (loss <= bce * max(alpha, 1 - alpha) + 1e-12).all()
    torch.testing.assert_close(loss, sigmoid_reference(x, t, alpha, gamma), rtol=1e-9, atol=1e-12)


# ---- bad input -----------------------------------------------------------------------------------


def test_errors_name_the_argument():
    x, t = logits_and_targets(rows=4, classes=3, dtype=torch.float32)
    with pytest.raises(ValueError, match="dense targets must have the inputs' shape"):
        fastops.sigmoid_focal_loss(x, t[:, :2])
    with pytest.raises(ValueError, match="class-index targets must have the inputs' shape without"):
        fastops.sigmoid_focal_loss(x, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="target 7 at row 1 is not a class"):
        fastops.sigmoid_focal_loss(x, torch.tensor([0, 7, 1, 2]))
    with pytest.raises(ValueError, match="target -3 at row 0 is not a class"):
        fastops.softmax_focal_loss(x, torch.tensor([-3, 0, 1, 2]))
    with pytest.raises(ValueError, match="gamma must be finite and >= 0"):
        fastops.sigmoid_focal_loss(x, t, gamma=-1.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        fastops.sigmoid_focal_loss(x, t, alpha=1.5)
    with pytest.raises(ValueError, match=r"class_weight must have shape \[3\]"):
        fastops.sigmoid_focal_loss(x, t, class_weight=torch.ones(4))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \[4\]"):
        fastops.softmax_focal_loss(x, torch.tensor([0, 1, 2, 0]), sample_weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"pos_weight must have shape \[3\]"):
        fastops.weighted_bce_with_logits(x, t, pos_weight=torch.ones(2))
    with pytest.raises(TypeError, match="targets must be int64 class indices"):
        fastops.softmax_focal_loss(x, t)
    with pytest.raises(TypeError, match="inputs must be float16"):
        fastops.sigmoid_focal_loss(x.long(), t.long())
    with pytest.raises(ValueError, match="Invalid Value for arg 'reduction'"):
        fastops.sigmoid_focal_loss(x, t, reduction="xyz")


@pytest.mark.parametrize("device", DEVICES)
def test_empty(device):
    e = torch.zeros(0, 5, device=device, requires_grad=True)
    assert fastops.sigmoid_focal_loss(e, torch.zeros(0, 5, device=device)).shape == (0, 5)
    s = fastops.sigmoid_focal_loss(e, torch.zeros(0, 5, device=device), reduction="sum")
    s.backward()
    assert s.item() == 0 and e.grad.shape == (0, 5)
    assert math.isnan(fastops.sigmoid_focal_loss(e, torch.zeros(0, 5, device=device), reduction="mean").item())
    assert fastops.softmax_focal_loss(e, torch.zeros(0, dtype=torch.int64, device=device), reduction="none").shape == (
        0,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_logits_stay_in_their_element_or_row(bad, device):
    x, t = logits_and_targets(rows=4, classes=3, dtype=torch.float32)
    x[1, 2] = bad
    x, t = x.to(device).requires_grad_(), t.to(device)
    loss = fastops.sigmoid_focal_loss(x, t)
    loss.sum().backward()
    mask = torch.zeros(4, 3, dtype=torch.bool, device=device)
    mask[1, 2] = True
    assert not torch.isfinite(loss[mask]).any() and torch.isfinite(loss[~mask]).all()
    assert not torch.isfinite(x.grad[mask]).any() and torch.isfinite(x.grad[~mask]).all()
    x.grad = None
    rows = fastops.softmax_focal_loss(x, torch.tensor([0, 1, 2, 0], device=device), reduction="none")
    rows.sum().backward()
    assert torch.isfinite(rows[[0, 2, 3]]).all() and torch.isfinite(x.grad[[0, 2, 3]]).all()
    if bad == -math.inf:  # a class of probability 0, as in torch's cross-entropy
        assert torch.isfinite(rows[1]) and torch.isfinite(x.grad[1]).all()
        torch.testing.assert_close(
            rows[1].cpu(), softmax_reference(x.detach().cpu()[1:2], torch.tensor([1]), 2.0)[0].float()
        )
    else:
        assert not torch.isfinite(rows[1]) and not torch.isfinite(x.grad[1]).all()


@pytest.mark.cuda
def test_device_mismatch():
    x, t = logits_and_targets(rows=4, classes=3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="targets must be on"):
        fastops.sigmoid_focal_loss(x.cuda(), t)
    with pytest.raises(RuntimeError, match="class_weight must be on"):
        fastops.sigmoid_focal_loss(x.cuda(), t.cuda(), class_weight=torch.ones(3))


def test_mixed_dtype_and_bool_targets():
    x, t = logits_and_targets(rows=10, classes=3, dtype=torch.float32)
    torch.testing.assert_close(fastops.sigmoid_focal_loss(x, t.bool()), fastops.sigmoid_focal_loss(x, t))
    torch.testing.assert_close(fastops.sigmoid_focal_loss(x, t.double()), fastops.sigmoid_focal_loss(x, t))


# ---- registration: opcheck, compile ------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x, t = logits_and_targets(rows=10, classes=4, soft=True)
    x, t = x.detach().clone().to(device).requires_grad_(), t.to(device)
    cw, sw = torch.rand(4, dtype=torch.float64, device=device), torch.rand(10, dtype=torch.float64, device=device)
    labels = torch.tensor([0, 1, 4, -100, 3, 2, 2, 1, 0, 4], device=device)
    ops = torch.ops.fastops
    for reduction in (0, 1, 2):
        torch.library.opcheck(ops.sigmoid_focal_loss.default, (x, t, cw, cw + 1, sw, 0.25, 2.0, reduction, 4, -100))
        torch.library.opcheck(
            ops.sigmoid_focal_loss.default, (x, labels, None, None, None, 0.25, 0.5, reduction, 4, -100)
        )
        torch.library.opcheck(
            ops.softmax_focal_loss.default, (x, labels.clamp(max=3), cw, sw, 0.25, 2.0, reduction, -100)
        )


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph(dynamic):
    def step(logits, labels, num_fg):
        return fastops.sigmoid_focal_loss(
            logits, labels, reduction="sum", normalizer=num_fg
        ) + fastops.softmax_focal_loss(logits, labels.clamp(max=logits.shape[-1] - 1))

    compiled = torch.compile(step, fullgraph=True, dynamic=dynamic)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g).requires_grad_()
    labels = torch.randint(0, 11, (64,), generator=g)
    out = compiled(x, labels, torch.tensor(5.0))
    out.backward()
    grad = x.grad.clone()
    x.grad = None
    eager = step(x, labels, torch.tensor(5.0))
    eager.backward()
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(grad, x.grad)
