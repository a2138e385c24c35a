"""Fuzzing every op family: generated shapes, memory layouts (non-contiguous, channels_last,
expanded zero strides), empty dimensions, NaN/Inf, huge and tiny magnitudes, duplicate and
degenerate boxes, against the float64 references or torchvision.

Families: box overlaps and box losses, nms and batched_nms, roi_align and roi_pool, paste_masks,
the focal loss, conv2d; the metrics' inputs in tests/test_coco_fuzz.py; hungarian_match and
panoptic_quality against their references in their own files.

The examples per property follow the hypothesis profile (tests/conftest.py): a quick derandomized
set in the normal suite, thousands of fresh ones with FASTOPS_FUZZ=long (scripts/fuzz.sh)."""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvops
from hypothesis import assume, given
from hypothesis import strategies as st
from reference import boxes as box_reference
from reference.focal import sigmoid_reference
from reference.roi import roi_align_reference, roi_pool_reference
from torchvision.models.detection.roi_heads import paste_masks_in_image

import fastops

MAGNITUDES = st.sampled_from([1e-30, 1e-6, 1.0, 1e3, 1e7])


@st.composite
def box_sets(draw, max_n=12, allow_nonfinite=False):
    """float64 [n, 4] xyxy boxes with duplicates, zero-size and inverted ones, at one magnitude."""
    n = draw(st.integers(0, max_n))
    scale = draw(MAGNITUDES)
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 10 * scale
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 5 * scale
    boxes = torch.cat([xy, xy + wh], 1)
    if n >= 2 and draw(st.booleans()):
        boxes[1] = boxes[0]  # a duplicate
    if n >= 3 and draw(st.booleans()):
        boxes[2, 2:] = boxes[2, :2]  # zero width and height
    if n >= 4 and draw(st.booleans()):
        boxes[3] = boxes[3, [2, 3, 0, 1]]  # inverted
    if allow_nonfinite and n >= 1 and draw(st.booleans()):
        boxes[0, draw(st.integers(0, 3))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return boxes


def as_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in another memory layout: a strided view of a larger tensor, or (for a
    tensor whose first dimension has one element) a zero-stride expansion back to its size."""
    if layout == "strided":
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1] + 1, dtype=t.dtype)
        wide[..., 1::2] = t
        return wide[..., 1::2]
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    return t


LAYOUTS = st.sampled_from(["contiguous", "strided", "transposed"])


@given(box_sets(), box_sets(), st.sampled_from(["iou", "giou", "diou", "ciou"]), LAYOUTS)
def test_box_overlap_matches_float64_reference(b1, b2, mode, layout):
    got = fastops.box_overlap(as_layout(b1, layout), as_layout(b2, layout), mode=mode)
    expected = box_reference.overlap(b1, b2, mode=mode)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True)


BOX_LOSSES = {
    "giou": fastops.generalized_box_iou_loss,
    "diou": fastops.distance_box_iou_loss,
    "ciou": fastops.complete_box_iou_loss,
}


@given(box_sets(), st.sampled_from(sorted(BOX_LOSSES)), st.sampled_from(["none", "mean", "sum"]), LAYOUTS)
def test_box_losses_match_float64_reference(boxes, mode, reduction, layout):
    # pairs: each box against the next one (the last against the first); torchvision's formulas,
    # except that a point box has no aspect term (torchvision's atan(0 / 0) gives NaN)
    other = boxes.roll(1, 0)
    got = BOX_LOSSES[mode](as_layout(boxes, layout), as_layout(other, layout), reduction=reduction)
    loss = 1 - box_reference.overlap(boxes, other, mode=mode, aligned=True, loss_form=True)
    expected = {"none": loss, "sum": loss.sum(), "mean": loss.mean() if loss.numel() else loss.sum()}[reduction]
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True)


@given(box_sets(max_n=40), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1), LAYOUTS)
def test_nms_matches_torchvision(boxes, threshold, seed, layout):
    g = torch.Generator().manual_seed(seed)
    # distinct scores: equal ones may be ordered either way by torchvision's sort
    scores = torch.randperm(boxes.shape[0], generator=g).double()
    got = fastops.nms(as_layout(boxes, layout), scores, threshold)
    torch.testing.assert_close(got, tvops.nms(boxes, scores, threshold), rtol=0, atol=0)


@given(box_sets(max_n=40), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1), st.integers(1, 4))
def test_batched_nms_matches_torchvision(boxes, threshold, seed, classes):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randperm(boxes.shape[0], generator=g).float()
    idxs = torch.randint(0, classes, (boxes.shape[0],), generator=g)
    got = fastops.batched_nms(boxes.float(), scores, idxs, threshold)
    expected = tvops.boxes._batched_nms_vanilla(boxes.float(), scores, idxs, threshold)
    assert sorted(got.tolist()) == sorted(expected.tolist())
    assert (scores[got].diff() <= 0).all()


@st.composite
def roi_cases(draw):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    h, w = draw(st.integers(0, 9)), draw(st.integers(0, 9))
    k = draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    xy = torch.rand(k, 2, generator=g, dtype=torch.float64) * 14 - 2
    rois = torch.cat([torch.randint(0, n, (k, 1), generator=g).double(), xy, xy + torch.rand(k, 2, generator=g) * 8], 1)
    return x, rois


@given(
    roi_cases(),
    st.sampled_from(["contiguous", "channels_last", "strided", "expanded"]),
    st.integers(-1, 3),
    st.booleans(),
    st.tuples(st.integers(1, 4), st.integers(1, 4)),
)
def test_roi_align_in_any_layout_matches_float64_reference(case, layout, sampling_ratio, aligned, output_size):
    x, rois = case
    if layout == "channels_last":
        x_in = x.to(memory_format=torch.channels_last)
    elif layout == "strided":
        x_in = torch.zeros(*x.shape[:3], 2 * x.shape[3] + 1, dtype=x.dtype)
        x_in[..., 1::2] = x
        x_in = x_in[..., 1::2]
    elif layout == "expanded":  # every image and channel the same plane, from one stored plane
        x = x[:1, :1].expand_as(x).clone()
        x_in = x[:1, :1].expand(x.shape)
    else:
        x_in = x
    got = fastops.roi_align(x_in, rois, output_size, 0.5, sampling_ratio, aligned)
    expected = roi_align_reference(x, rois, output_size, 0.5, sampling_ratio, aligned)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@given(
    roi_cases(),
    st.sampled_from(["contiguous", "channels_last", "strided"]),
    st.tuples(st.integers(1, 4), st.integers(1, 4)),
    st.sampled_from([0.25, 0.5, 1.0]),
)
def test_roi_pool_in_any_layout_matches_float64_reference(case, layout, output_size, spatial_scale):
    x, rois = case
    if layout == "channels_last":
        x_in = x.to(memory_format=torch.channels_last)
    elif layout == "strided":
        x_in = as_layout(x, "strided")
    else:
        x_in = x
    got = fastops.roi_pool(x_in, rois, output_size, spatial_scale)
    torch.testing.assert_close(got, roi_pool_reference(x, rois, output_size, spatial_scale), rtol=0, atol=0)


@given(
    st.integers(0, 5),
    st.integers(1, 9),
    st.tuples(st.integers(0, 40), st.integers(0, 40)),
    st.integers(-1, 2),
    st.sampled_from(["contiguous", "strided", "transposed"]),
    st.integers(0, 2**31 - 1),
)
def test_paste_masks_in_any_layout_match_torchvision(n, m, shape, padding, layout, seed):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, m, m, generator=g)
    xy = torch.rand(n, 2, generator=g) * 50 - 5
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 30], 1)
    args = (as_layout(masks, layout), as_layout(boxes, layout), shape, padding)
    if m + 2 * padding < 1:
        with pytest.raises(ValueError, match="padding"):
            fastops.paste_masks(*args)
        return
    got = fastops.paste_masks(*args)
    assert got.shape == (n, 1, *shape) and got.dtype == masks.dtype
    if min(shape) == 0:  # torchvision's own code fails on an empty image
        assert got.numel() == 0
    for i in range(n if min(shape) > 0 else 0):
        try:
            expected = paste_masks_in_image(masks[i : i + 1, None], boxes[i : i + 1], shape, padding)[0]
        except RuntimeError:  # torchvision's slicing fails for a box wholly outside the image
            expected = torch.zeros_like(got[i])
        torch.testing.assert_close(got[i], expected, rtol=0, atol=0)


@given(
    st.integers(0, 6),
    st.integers(1, 5),
    st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
    st.sampled_from([0.0, 1.0, 2.0]),
    st.floats(-1.0, 1.0),
    st.integers(0, 2**31 - 1),
    LAYOUTS,
)
def test_sigmoid_focal_loss_matches_float64_reference(rows, classes, scale, gamma, alpha, seed, layout):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, classes, generator=g, dtype=torch.float64) * scale
    t = (torch.rand(rows, classes, generator=g) > 0.7).double()
    got = fastops.sigmoid_focal_loss(as_layout(x, layout), as_layout(t, layout), alpha=alpha, gamma=gamma)
    expected = sigmoid_reference(x, t, alpha=alpha, gamma=gamma)
    # the documented accuracy (fastops/ops/focal_loss.py): log1p(exp(-|x|)) up to 2^-20 below
    # torch's, and a few units in the last place of |x|
    torch.testing.assert_close(got, expected, rtol=2**-18, atol=8 * 2**-52 * scale)


@given(
    st.integers(0, 2),
    st.integers(1, 4),
    st.integers(1, 4),
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 4),
    st.sampled_from(["contiguous", "channels_last", "strided"]),
    st.integers(0, 2**31 - 1),
)
def test_conv2d_in_any_layout_matches_torch_float64(n, c_in, c_out, hw, k, dilation, padding, layout, seed):
    assume(hw[0] + 2 * padding >= dilation * (k - 1) + 1 and hw[1] + 2 * padding >= dilation * (k - 1) + 1)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, *hw, generator=g, dtype=torch.float64)
    w = torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64)
    if layout == "channels_last":
        x_in = x.to(memory_format=torch.channels_last)
    elif layout == "strided":
        x_in = torch.zeros(n, c_in, hw[0], 2 * hw[1], dtype=x.dtype)
        x_in[..., ::2] = x
        x_in = x_in[..., ::2]
    else:
        x_in = x
    got = fastops.conv2d(x_in, w, padding=padding, dilation=dilation)
    torch.testing.assert_close(got, F.conv2d(x, w, padding=padding, dilation=dilation), rtol=1e-10, atol=1e-10)
