"""Segmentation losses (fastops.nn.segmentation_losses) against the float64 references of
`reference.segmentation`, with gradients; torch's cross-entropy as an oracle; bad input; compile."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from reference.segmentation import pixel_sigmoid_focal, pixel_softmax_focal, soft_dice

import fastops
from fastops.nn import (
    PixelCrossEntropyLoss,
    PixelFocalLoss,
    SoftDiceLoss,
    WeightedSumLoss,
    pixel_cross_entropy,
    pixel_focal_loss,
    soft_dice_loss,
)

F64 = dict(rtol=1e-10, atol=1e-12)


def _case(n=2, c=5, hw=(7, 9), ignore_fraction=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, *hw, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, c, (n, *hw), generator=g)
    target[torch.rand(target.shape, generator=g) < ignore_fraction] = 255
    return logits, target, g


def _value_and_grad(fn, logits, *args, **kwargs):
    x = logits.detach().clone().requires_grad_()
    out = fn(x, *args, **kwargs)
    grad_seed = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (out * grad_seed).sum().backward()
    return out.detach(), x.grad


def _assert_matches(ours, ref, logits, *args, **kwargs):
    out, grad = _value_and_grad(ours, logits, *args, **kwargs)
    out_ref, grad_ref = _value_and_grad(ref, logits, *args, **kwargs)
    torch.testing.assert_close(out, out_ref, **F64)
    torch.testing.assert_close(grad, grad_ref, **F64)


# ---- cross-entropy and focal ---------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cross_entropy_matches_torch_and_definition(reduction, weighted, layout):
    """NCHW logits take torch's kernel, channels_last ones the fused kernel: both as defined."""
    logits, target, g = _case()
    class_weight = torch.rand(5, generator=g, dtype=torch.float64) + 0.5 if weighted else None
    pixel_weight = torch.rand(target.shape, generator=g, dtype=torch.float64) if weighted else None
    if layout == "channels_last":
        logits = logits.contiguous(memory_format=torch.channels_last)
    ours = lambda x: pixel_cross_entropy(x, target, class_weight=class_weight, reduction=reduction)
    torch_ce = lambda x: F.cross_entropy(x, target, weight=class_weight, ignore_index=255, reduction=reduction)
    reference = lambda x: pixel_softmax_focal(x, target, 0.0, None, class_weight, None, 255, reduction)
    _assert_matches(ours, torch_ce, logits)
    _assert_matches(ours, reference, logits)
    _assert_matches(
        lambda x: pixel_cross_entropy(
            x, target, class_weight=class_weight, pixel_weight=pixel_weight, reduction=reduction
        ),
        lambda x: pixel_softmax_focal(x, target, 0.0, None, class_weight, pixel_weight, 255, reduction),
        logits,
    )


@given(
    n=st.integers(1, 3),
    c=st.integers(2, 6),  # one class: p = 1, where the reference's autograd of (1 - p)^gamma is NaN
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    gamma=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]),
    alpha=st.sampled_from([None, 0.25, 1.0]),
    weights=st.booleans(),
    ignore_fraction=st.sampled_from([0.0, 0.3, 0.9]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    seed=st.integers(0, 2**16),
)
def test_focal_matches_definition(n, c, h, w, gamma, alpha, weights, ignore_fraction, reduction, seed):
    logits, target, g = _case(n, c, (h, w), ignore_fraction, seed)
    target[0, 0, 0] = c - 1  # at least one pixel counts
    class_weight = torch.rand(c, generator=g, dtype=torch.float64) + 0.1 if weights else None
    pixel_weight = torch.rand(n, h, w, generator=g, dtype=torch.float64) + 0.1 if weights else None
    kw = dict(gamma=gamma, alpha=alpha, class_weight=class_weight, pixel_weight=pixel_weight, reduction=reduction)
    _assert_matches(
        lambda x: pixel_focal_loss(x, target, **kw),
        lambda x: pixel_softmax_focal(x, target, gamma, alpha, class_weight, pixel_weight, 255, reduction),
        logits,
    )


def test_focal_at_gamma_zero_is_cross_entropy():
    logits, target, _ = _case()
    class_weight, pixel_weight = torch.rand(5, dtype=torch.float64), torch.rand(2, 7, 9, dtype=torch.float64)
    kw = dict(class_weight=class_weight, pixel_weight=pixel_weight)
    torch.testing.assert_close(
        pixel_focal_loss(logits, target, gamma=0.0, **kw), pixel_cross_entropy(logits, target, **kw), **F64
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_dense_masks_is_sigmoid_focal(reduction, alpha):
    logits, _, g = _case(c=3)
    masks = torch.rand(logits.shape, generator=g, dtype=torch.float64) > 0.6
    _assert_matches(
        lambda x: pixel_focal_loss(x, masks, gamma=2.0, alpha=alpha, reduction=reduction),
        lambda x: pixel_sigmoid_focal(x, masks, 2.0, alpha, reduction),
        logits,
    )


def test_volumetric_and_one_spatial_dimension():
    for hw in [(4, 5, 3), (11,)]:
        logits, target, _ = _case(hw=hw)
        _assert_matches(
            lambda x: pixel_cross_entropy(x, target),
            lambda x: F.cross_entropy(x, target, ignore_index=255),
            logits,
        )


def test_ignore_index_inside_the_class_range():
    """ignore_index 0 drops the background class's pixels (not only a void label)."""
    logits, target, _ = _case(ignore_fraction=0.0)
    _assert_matches(
        lambda x: pixel_cross_entropy(x, target, ignore_index=0),
        lambda x: F.cross_entropy(x, target, ignore_index=0),
        logits,
    )
    _assert_matches(
        lambda x: soft_dice_loss(x, target, ignore_index=0, reduction="none"),
        lambda x: soft_dice(x, target, 1.0, False, None, 0)[0],
        logits,
    )


def test_every_pixel_ignored_gives_nan_mean_and_zero_sum():
    logits = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    target = torch.full((1, 2, 2), 255)
    assert torch.isnan(pixel_cross_entropy(logits, target))
    total = pixel_cross_entropy(logits, target, reduction="sum")
    total.backward()
    assert total.item() == 0 and logits.grad.abs().sum() == 0


def test_float32_close_to_float64():
    logits, target, _ = _case(hw=(33, 17))
    for fn in [pixel_cross_entropy, pixel_focal_loss, soft_dice_loss]:
        torch.testing.assert_close(fn(logits.float(), target).double(), fn(logits, target), rtol=1e-5, atol=1e-6)


# ---- soft Dice -----------------------------------------------------------------------------------


@given(
    n=st.integers(1, 3),
    c=st.integers(1, 5),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    smooth=st.sampled_from([0.5, 1.0]),
    per_image=st.booleans(),
    weighted=st.booleans(),
    ignore_fraction=st.sampled_from([0.0, 0.4]),
    seed=st.integers(0, 2**16),
)
def test_dice_matches_definition(n, c, h, w, smooth, per_image, weighted, ignore_fraction, seed):
    logits, target, g = _case(n, c, (h, w), ignore_fraction, seed)
    class_weight = torch.rand(c, generator=g, dtype=torch.float64) + 0.1 if weighted else None
    kw = dict(smooth=smooth, per_image=per_image, class_weight=class_weight)
    for reduction, index in [("none", 0), ("mean", 1)]:
        _assert_matches(
            lambda x: soft_dice_loss(x, target, reduction=reduction, **kw),
            lambda x: soft_dice(x, target, smooth, per_image, class_weight, 255)[index],
            logits,
        )


@pytest.mark.parametrize("per_image", [False, True])
def test_dice_dense_masks(per_image):
    logits, _, g = _case(c=3)
    masks = (torch.rand(logits.shape, generator=g) > 0.5).double()
    _assert_matches(
        lambda x: soft_dice_loss(x, masks, per_image=per_image),
        lambda x: soft_dice(x, masks, 1.0, per_image, None, 255)[1],
        logits,
    )


def test_dice_of_a_perfect_prediction_is_zero_and_sum_is_weighted():
    target = torch.tensor([[[0, 1], [2, 1]]])
    logits = F.one_hot(target, 3).movedim(-1, 1).double() * 200
    assert soft_dice_loss(logits, target, smooth=0.0).item() == pytest.approx(0, abs=1e-12)
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    logits = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    per_class = soft_dice_loss(logits, target, reduction="none")
    torch.testing.assert_close(soft_dice_loss(logits, target, class_weight=w, reduction="sum"), (per_class * w).sum())


def test_gradcheck():
    logits, target, _ = _case(n=1, c=3, hw=(3, 4))
    x = logits.requires_grad_()
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: pixel_focal_loss(x, target, gamma=1.5, class_weight=w), (x,))
    assert torch.autograd.gradcheck(lambda x: soft_dice_loss(x, target, per_image=True), (x,))


# ---- modules, weighted sum ----------------------------------------------------------------------


def test_modules_and_weighted_sum():
    logits, target, g = _case()
    w = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    ce = PixelCrossEntropyLoss(class_weight=w)
    focal = PixelFocalLoss(gamma=1.0)
    dice = SoftDiceLoss(per_image=True)
    assert set(ce.state_dict()) == {"class_weight"}
    torch.testing.assert_close(ce(logits, target), pixel_cross_entropy(logits, target, class_weight=w), **F64)
    combined = WeightedSumLoss({"ce": (1.0, ce), "focal": (0.25, focal), "dice": (0.5, dice)})
    terms = combined.terms(logits, target)
    assert set(terms) == {"ce", "focal", "dice"}
    _assert_matches(combined, lambda x, t: _expected_sum(x, t, w), logits, target)


def _expected_sum(x, t, w):
    return (
        pixel_softmax_focal(x, t, 0.0, None, w, None, 255, "mean")
        + 0.25 * pixel_softmax_focal(x, t, 1.0, None, None, None, 255, "mean")
        + 0.5 * soft_dice(x, t, 1.0, True, None, 255)[1]
    )


def test_weighted_sum_rejects_bad_terms():
    with pytest.raises(ValueError, match="terms"):
        WeightedSumLoss({})
    with pytest.raises(TypeError, match="terms"):
        WeightedSumLoss({"ce": PixelCrossEntropyLoss()})


# ---- bad input, compile --------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [pixel_cross_entropy, pixel_focal_loss, soft_dice_loss])
def test_bad_input_names_the_argument(fn):
    logits = torch.randn(2, 4, 5, 6)
    with pytest.raises(ValueError, match=r"target must have shape \[2, 5, 6\]"):
        fn(logits, torch.zeros(2, 5, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="label 4"):
        fn(logits, torch.full((2, 5, 6), 4))
    with pytest.raises(ValueError, match="label -1"):
        fn(logits, torch.full((2, 5, 6), -1))
    with pytest.raises(TypeError, match="int64"):
        fn(logits, torch.zeros(2, 5, 6, dtype=torch.int32))
    with pytest.raises(ValueError, match="dense target masks"):
        fn(logits, torch.zeros(2, 3, 5, 6))
    with pytest.raises(ValueError, match="logits"):
        fn(torch.randn(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="class_weight"):
        fn(logits, torch.zeros(2, 5, 6, dtype=torch.long), class_weight=torch.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        fn(logits, torch.zeros(2, 5, 6, dtype=torch.long), reduction="avg")
    fn(logits, torch.full((2, 5, 6), 255))  # the ignore index is no error


def test_bad_pixel_weight_and_smooth():
    logits, target = torch.randn(2, 4, 5, 6), torch.zeros(2, 5, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="pixel_weight"):
        pixel_cross_entropy(logits, target, pixel_weight=torch.ones(2, 6, 5))
    with pytest.raises(ValueError, match="smooth"):
        SoftDiceLoss(smooth=-1)


def test_compile_fullgraph():
    loss = WeightedSumLoss({"ce": (1.0, PixelCrossEntropyLoss()), "dice": (1.0, SoftDiceLoss())})
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    logits, target, _ = _case()
    logits = logits.float()
    _assert_matches(compiled, loss, logits, target)


def test_class_weights_from_pixel_counts():
    """fastops.class_weights on per-class pixel counts gives inverse-frequency class weights."""
    target = torch.tensor([[[0, 0, 0, 1], [0, 0, 2, 255]]])
    counts = torch.bincount(target[target != 255], minlength=3)
    w = fastops.class_weights(counts)
    assert w[1] == pytest.approx(5 * w[0]) and w[2] == pytest.approx(5 * w[0])
    PixelCrossEntropyLoss(class_weight=w)(torch.randn(1, 3, 2, 4), target)


def test_cross_entropy_kernel_follows_the_layout(monkeypatch):
    """channels_last logits go to the fused kernel (no copy), NCHW ones to torch's cross-entropy."""
    from fastops.ops import focal_loss

    calls = []
    original = focal_loss.softmax_focal_loss
    monkeypatch.setattr(focal_loss, "softmax_focal_loss", lambda *a, **k: calls.append(1) or original(*a, **k))
    logits, target, _ = _case()
    pixel_cross_entropy(logits, target)
    assert calls == []
    pixel_cross_entropy(logits.contiguous(memory_format=torch.channels_last), target)
    assert calls == [1]
    pixel_focal_loss(logits, target)  # no torch kernel for the focal loss: fused, with a copy
    assert calls == [1, 1]
