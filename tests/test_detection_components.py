"""Detection components against torchvision's equivalents (anchors, box coder, matcher, sampler,
transform, mask pasting, post-processing), with properties checked by hypothesis."""

import math

import pytest
import torch
from common import rand_boxes_xyxy
from hypothesis import given
from hypothesis import strategies as st
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform as TvTransform
from torchvision.ops import boxes as tv_box_ops

from fastops.models.components import (
    AnchorGenerator,
    BalancedPositiveNegativeSampler,
    BoxCoder,
    GeneralizedRCNNTransform,
    Matcher,
    clip_boxes_to_image,
    nms_per_image,
    project_masks_on_boxes,
    remove_small_boxes,
    topk_per_level,
)

RETINA_SIZES = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512])
RCNN_SIZES = ((32,), (64,), (128,), (256,), (512,))

# ---- anchors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [RETINA_SIZES, RCNN_SIZES])
@pytest.mark.parametrize("image_size", [(64, 96), (800, 1088), (97, 33)])
def test_anchors_match_torchvision(sizes, image_size):
    ratios = ((0.5, 1.0, 2.0),) * len(sizes)
    ours, theirs = AnchorGenerator(sizes, ratios), TvAnchorGenerator(sizes, ratios)
    h, w = image_size
    feats = [torch.zeros(2, 1, math.ceil(h / 2**k), math.ceil(w / 2**k)) for k in range(2, 2 + len(sizes))]
    expected = theirs(ImageList(torch.zeros(2, 3, h, w), [(h, w)] * 2), feats)
    got = ours((h, w), feats)
    torch.testing.assert_close(got, expected[0], rtol=0, atol=0)
    assert got is ours((h, w), feats)  # cached
    assert ours.num_anchors_per_location() == theirs.num_anchors_per_location()
    assert sum(ours.num_anchors_per_level(feats)) == got.shape[0]


def test_anchor_generator_checks_level_count():
    with pytest.raises(ValueError, match="levels"):
        AnchorGenerator(RCNN_SIZES, ((0.5, 1.0, 2.0),) * 5)((64, 64), [torch.zeros(1, 1, 16, 16)])


# ---- box coder -------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder_matches_torchvision_bitwise(weights):
    g = torch.Generator().manual_seed(1)
    gt = rand_boxes_xyxy(50, dtype=torch.float32, generator=g)
    ref = rand_boxes_xyxy(50, dtype=torch.float32, generator=g)
    ours, theirs = BoxCoder(weights), tv_utils.BoxCoder(weights)
    torch.testing.assert_close(ours.encode(gt, ref), theirs.encode_single(gt, ref), rtol=0, atol=0)
    codes = torch.randn(50, 3 * 4, generator=g) * 2
    codes[0, 2] = 20.0  # clamped at bbox_xform_clip
    expected = theirs.decode_single(codes, ref)
    got = ours.decode(codes.view(50, 3, 4), ref[:, None, :]).reshape(50, 12)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@given(st.integers(0, 2**31 - 1))
def test_box_coder_round_trip(seed):
    g = torch.Generator().manual_seed(seed)
    gt, ref = rand_boxes_xyxy(20, generator=g), rand_boxes_xyxy(20, generator=g)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0), bbox_xform_clip=100.0)
    torch.testing.assert_close(coder.decode(coder.encode(gt, ref), ref), gt)


# ---- matcher ---------------------------------------------------------------------------------------


@given(st.integers(0, 2**31 - 1), st.booleans(), st.integers(1, 6), st.integers(1, 40))
def test_matcher_matches_torchvision(seed, low_quality, m, n):
    g = torch.Generator().manual_seed(seed)
    # quantized IoUs so that ties (within a row and a column) happen
    iou = (torch.rand(m, n, generator=g) * 10).floor() / 10
    ours = Matcher(0.7, 0.3, allow_low_quality_matches=low_quality)
    theirs = tv_utils.Matcher(0.7, 0.3, allow_low_quality_matches=low_quality)
    torch.testing.assert_close(ours(iou), theirs(iou.clone()), rtol=0, atol=0)


def test_matcher_boxes_by_fastops_iou_and_empty_ground_truth():
    g = torch.Generator().manual_seed(0)
    gt = rand_boxes_xyxy(5, dtype=torch.float32, generator=g)
    anchors = rand_boxes_xyxy(300, dtype=torch.float32, generator=g)
    matcher = Matcher(0.5, 0.4, True)
    expected = tv_utils.Matcher(0.5, 0.4, True)(tv_box_ops.box_iou(gt, anchors))
    torch.testing.assert_close(matcher.match_boxes(gt, anchors), expected, rtol=0, atol=0)
    assert (matcher.match_boxes(gt[:0], anchors) == Matcher.BELOW_LOW_THRESHOLD).all()
    with pytest.raises(ValueError, match="no ground-truth"):
        matcher(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="low_threshold"):
        Matcher(0.3, 0.5)


# ---- sampler ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "fraction"), [(256, 0.5), (16, 0.25), (0, 0.5)])
def test_sampler_draws_torchvision_s_samples(batch, fraction):
    g = torch.Generator().manual_seed(3)
    labels = [torch.randint(-1, 3, (500,), generator=g), torch.randint(-1, 1, (40,), generator=g)]
    torch.manual_seed(7)
    pos, neg = BalancedPositiveNegativeSampler(batch, fraction)(labels)
    torch.manual_seed(7)
    tv_pos, tv_neg = tv_utils.BalancedPositiveNegativeSampler(batch, fraction)(labels)
    for a, b in zip(pos + neg, tv_pos + tv_neg):
        torch.testing.assert_close(a, b.bool(), rtol=0, atol=0)
    for p, n, lab in zip(pos, neg, labels):
        assert (lab[p] >= 1).all() and (lab[n] == 0).all()
        assert int(p.sum()) <= int(batch * fraction) and int(p.sum() + n.sum()) <= batch


# ---- transform -------------------------------------------------------------------------------------


def _images_and_targets(sizes, with_masks=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for h, w in sizes:
        images.append(torch.rand(3, h, w, generator=g))
        boxes = rand_boxes_xyxy(3, size=float(min(h, w)) * 0.9, dtype=torch.float32, generator=g)
        t = {"boxes": boxes, "labels": torch.tensor([1, 2, 3])}
        if with_masks:
            t["masks"] = (torch.rand(3, h, w, generator=g) > 0.5).to(torch.uint8)
        targets.append(t)
    return images, targets


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("fixed_size", [None, (64, 48)])
def test_transform_matches_torchvision(training, fixed_size):
    args = ((96, 112, 128), 200, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    ours = GeneralizedRCNNTransform(*args, size_divisible=32, fixed_size=fixed_size).train(training)
    theirs = TvTransform(*args, size_divisible=32, fixed_size=fixed_size).train(training)
    images, targets = _images_and_targets([(50, 70), (81, 40), (120, 300)])
    torch.manual_seed(5)
    batch, new_targets = ours(images, targets)
    torch.manual_seed(5)
    expected, expected_targets = theirs(images, targets)
    torch.testing.assert_close(batch.tensors, expected.tensors, rtol=0, atol=0)
    assert batch.image_sizes == expected.image_sizes
    for a, b in zip(new_targets, expected_targets):
        for k in b:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert all("masks" in t for t in targets) and targets[0]["boxes"] is not new_targets[0]["boxes"]


def test_transform_postprocess_maps_boxes_and_pastes_masks_as_torchvision():
    args = (64, 100, [0.5] * 3, [0.25] * 3)
    ours, theirs = GeneralizedRCNNTransform(*args).eval(), TvTransform(*args).eval()
    g = torch.Generator().manual_seed(2)
    boxes = rand_boxes_xyxy(6, size=60.0, dtype=torch.float32, generator=g)
    masks = torch.rand(6, 1, 28, 28, generator=g)
    det = [{"boxes": boxes, "masks": masks, "scores": torch.rand(6), "labels": torch.ones(6, dtype=torch.int64)}]
    expected = theirs.postprocess([dict(d) for d in det], [(64, 80)], [(50, 63)])
    got = ours.postprocess([dict(d) for d in det], [(64, 80)], [(50, 63)])
    for k in ("boxes", "masks", "scores", "labels"):
        torch.testing.assert_close(got[0][k], expected[0][k], rtol=0, atol=0)


def test_project_masks_on_boxes_matches_torchvision():
    from torchvision.models.detection.roi_heads import project_masks_on_boxes as tv_project

    g = torch.Generator().manual_seed(6)
    gt_masks = (torch.rand(3, 40, 50, generator=g) > 0.5).to(torch.uint8)
    boxes = rand_boxes_xyxy(7, size=40.0, dtype=torch.float32, generator=g)
    idx = torch.randint(0, 3, (7,), generator=g)
    torch.testing.assert_close(project_masks_on_boxes(gt_masks, boxes, idx, 28), tv_project(gt_masks, boxes, idx, 28))


# ---- post-processing -------------------------------------------------------------------------------


def test_clip_and_remove_small_boxes_match_torchvision():
    g = torch.Generator().manual_seed(8)
    boxes = rand_boxes_xyxy(40, size=120.0, dtype=torch.float32, generator=g) - 20
    torch.testing.assert_close(clip_boxes_to_image(boxes, (70, 90)), tv_box_ops.clip_boxes_to_image(boxes, (70, 90)))
    expected = tv_box_ops.clip_boxes_to_image(boxes, (70, 90)).view(8, 5, 4)
    torch.testing.assert_close(clip_boxes_to_image(boxes.view(8, 5, 4), (70, 90)), expected)
    torch.testing.assert_close(remove_small_boxes(boxes, 20.0), tv_box_ops.remove_small_boxes(boxes, 20.0))


def test_topk_per_level_matches_torchvision_rpn():
    rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, {"training": 7, "testing": 7}, {}, 0.7)
    rpn.eval()
    scores = torch.randn(2, 30 + 5 + 12)
    expected = rpn._get_top_n_idx(scores, [30, 5, 12])
    torch.testing.assert_close(topk_per_level(scores, [30, 5, 12], 7), expected, rtol=0, atol=0)


@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 4))
def test_nms_per_image_equals_torchvision_per_image_batched_nms(seed, num_images, num_groups):
    g = torch.Generator().manual_seed(seed)
    k = 60
    boxes = rand_boxes_xyxy(k, size=50.0, dtype=torch.float32, generator=g)
    scores = (torch.rand(k, generator=g) * 8).floor() / 8  # ties
    groups = torch.randint(0, num_groups, (k,), generator=g)
    image_index = torch.randint(0, num_images, (k,), generator=g)
    kept = nms_per_image(boxes, scores, groups, image_index, num_images, 0.5, 5)
    for i in range(num_images):
        idx = torch.where(image_index == i)[0]
        local = tv_box_ops.batched_nms(boxes[idx], scores[idx], groups[idx], 0.5)[:5]
        got = kept[i]
        # the same boxes in decreasing score; within equal scores, index order
        assert set(got.tolist()) == set(idx[local].tolist())
        assert torch.all(scores[got][:-1] >= scores[got][1:])
    assert [t.numel() for t in nms_per_image(boxes[:0], scores[:0], groups[:0], image_index[:0], 2, 0.5, 5)] == [0, 0]
