"""SSD against torchvision's: default boxes, matching, the hard-negative-mining loss and the
post-processing on the same head outputs; the SSD300 builder's state_dict (strict load both ways),
detections, losses and gradients on the same weights; the frozen stages; the small configuration's
surface (losses, detections, empty targets; bad input is in test_detection_models.py)."""

import pytest
import torch
import torchvision
from detection_common import assert_same_detections, synthetic_batch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.models import vgg as tv_vgg_module
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection import ssd as tv_ssd
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator as TVDefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

from fastops.models.backbones.ssd_vgg import SSDFeatureExtractorVGG, freeze_vgg_stages
from fastops.models.backbones.vgg import vgg16
from fastops.models.components import DefaultBoxGenerator, SSDMatcher
from fastops.models.detection import ssd300_vgg16, ssd_small

SSD300_BOXES = {
    "aspect_ratios": [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
    "scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
    "steps": [8, 16, 32, 64, 100, 300],
}
SSD300_GRIDS = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]


def _maps(grids, channels=2):
    return [torch.zeros(1, channels, h, w) for h, w in grids]


# ---- default boxes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, grids, image_size",
    [
        (SSD300_BOXES, SSD300_GRIDS, (300, 300)),
        ({"aspect_ratios": [[2], [2, 3], [3]]}, [(8, 6), (4, 3), (1, 1)], (64, 48)),
        ({"aspect_ratios": [[2]], "clip": False, "min_ratio": 0.5, "max_ratio": 1.5}, [(5, 7)], (50, 70)),
        ({"aspect_ratios": [[2, 3], [2]], "steps": [8, 16], "clip": False}, [(12, 10), (6, 5)], (96, 80)),
    ],
)
def test_default_boxes_equal_torchvision_s(kwargs, grids, image_size):
    ours, theirs = DefaultBoxGenerator(**kwargs), TVDefaultBoxGenerator(**kwargs)
    assert ours.scales == theirs.scales
    assert ours.num_anchors_per_location() == theirs.num_anchors_per_location()
    images = ImageList(torch.zeros(2, 3, *image_size), [image_size] * 2)
    expected = theirs(images, _maps(grids))
    got = ours(image_size, _maps(grids))
    assert got.shape == expected[0].shape
    assert torch.equal(got, expected[0]) and torch.equal(got, expected[1])
    assert sum(ours.num_anchors_per_level(_maps(grids))) == got.shape[0]


def test_ssd300_has_8732_default_boxes_and_caches_them():
    gen = DefaultBoxGenerator(**SSD300_BOXES)
    boxes = gen((300, 300), _maps(SSD300_GRIDS))
    assert boxes.shape == (8732, 4)
    assert gen((300, 300), _maps(SSD300_GRIDS)) is boxes
    assert gen((300, 300), _maps(SSD300_GRIDS, 3)).dtype == torch.float32


def test_default_box_generator_rejects_mismatched_levels():
    with pytest.raises(ValueError, match="aspect_ratios and steps"):
        DefaultBoxGenerator([[2], [2]], steps=[8])
    with pytest.raises(ValueError, match="scales"):
        DefaultBoxGenerator([[2], [2]], scales=[0.1, 0.2])
    with pytest.raises(ValueError, match="2 levels, got 1 feature maps"):
        DefaultBoxGenerator([[2], [2]])((64, 64), _maps([(8, 8)]))


# ---- matching --------------------------------------------------------------------------------------


@given(st.integers(1, 6), st.integers(1, 40), st.integers(0, 10_000))
def test_ssd_matcher_equals_torchvision_s(num_gt, num_pred, seed):
    g = torch.Generator().manual_seed(seed)
    quality = torch.rand(num_gt, num_pred, generator=g)
    quality[quality < 0.3] = 0.0  # ties at zero
    expected = tv_utils.SSDMatcher(0.5)(quality.clone())
    assert torch.equal(SSDMatcher(0.5)(quality.clone()), expected)


# ---- the loss and the post-processing on given head outputs ------------------------------------------


def _head_outputs(num_images, num_anchors, num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    return {
        "bbox_regression": torch.randn(num_images, num_anchors, 4, generator=g) * 0.5,
        "cls_logits": torch.randn(num_images, num_anchors, num_classes, generator=g) * 2,
    }


def _anchors_and_targets(num_objects, seed, size=64.0):
    g = torch.Generator().manual_seed(seed)
    gen = DefaultBoxGenerator([[2], [2, 3], [2]])
    anchors = gen((int(size), int(size)), _maps([(8, 8), (4, 4), (2, 2)]))
    targets = []
    for k in num_objects:
        xy = torch.rand(k, 2, generator=g) * size * 0.6
        wh = torch.rand(k, 2, generator=g) * size * 0.35 + 4
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 5, (k,), generator=g)})
    return anchors, targets


@pytest.fixture(scope="module")
def small_ssd():
    torch.manual_seed(0)
    return ssd_small(5)


@pytest.mark.parametrize("num_objects", [(3, 1), (2, 0), (0, 0), (60, 1)])
@pytest.mark.parametrize("positive_fraction", [0.25, 0.4])
def test_loss_equals_torchvision_s_on_the_same_head_outputs(num_objects, positive_fraction):
    # (60, 1): an image with fewer negatives than 3 x positives counts some positives twice, as torchvision's
    anchors, targets = _anchors_and_targets(num_objects, seed=len(num_objects) + sum(num_objects))
    outputs = _head_outputs(len(targets), anchors.shape[0], 5, seed=1)
    ours = ssd_small(5, positive_fraction=positive_fraction)
    theirs = tv_ssd.SSD(ours.backbone, TVDefaultBoxGenerator([[2]] * 5), (128, 128), 5, head=ours.head)
    theirs.neg_to_pos_ratio = ours.neg_to_pos_ratio
    leaves = {k: v.clone().requires_grad_() for k, v in outputs.items()}
    got = ours.loss_from_outputs(leaves, anchors, targets)
    matched = [
        theirs.proposal_matcher(torchvision.ops.box_iou(t["boxes"], anchors))
        if t["boxes"].numel()
        else torch.full((anchors.shape[0],), -1, dtype=torch.int64)
        for t in targets
    ]
    ref_leaves = {k: v.clone().requires_grad_() for k, v in outputs.items()}
    expected = theirs.compute_loss(targets, ref_leaves, [anchors] * len(targets), matched)
    assert set(got) == set(expected)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-6)
    sum(got.values()).backward()
    sum(expected.values()).backward()
    for k in outputs:
        torch.testing.assert_close(leaves[k].grad, ref_leaves[k].grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_classes, score_thresh, topk", [(5, 0.01, 400), (21, 0.2, 7), (3, 0.9, 50)])
def test_postprocessing_equals_torchvision_s_on_the_same_head_outputs(num_classes, score_thresh, topk):
    anchors, _ = _anchors_and_targets((), seed=0)
    outputs = _head_outputs(3, anchors.shape[0], num_classes, seed=2)
    kwargs = {"score_thresh": score_thresh, "topk_candidates": topk, "detections_per_img": 30}
    ours = ssd_small(num_classes, **kwargs)
    boxes = TVDefaultBoxGenerator([[2]] * 5)
    theirs = tv_ssd.SSD(ours.backbone, boxes, (128, 128), num_classes, head=ours.head, **kwargs)
    sizes = [(64, 64), (60, 50), (64, 40)]
    got = ours.postprocess_detections(outputs, anchors, sizes)
    expected = theirs.postprocess_detections(outputs, [anchors] * 3, sizes)
    for g, e in zip(got, expected):
        assert g["labels"].dtype == torch.int64
        assert_same_detections(g, e)


# ---- SSD300 against torchvision's, same weights ------------------------------------------------------


@pytest.fixture(scope="module")
def ssd300_pair():
    torch.manual_seed(0)
    theirs = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=5)
    ours = ssd300_vgg16(weights=theirs.state_dict(), trainable_backbone_layers=5)
    return theirs, ours


@pytest.mark.slow
def test_ssd300_state_dict_loads_strictly_with_torchvision_s_names(ssd300_pair):
    theirs, ours = ssd300_pair
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours.num_classes == 5
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    theirs.load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.slow
def test_ssd300_gives_torchvision_s_detections(ssd300_pair):
    theirs, ours = ssd300_pair
    images, _ = synthetic_batch([(160, 200), (330, 250)], 5, seed=1)
    theirs.eval(), ours.eval()
    with torch.no_grad():
        expected, got = theirs(images), ours(images)
    for g, e, image in zip(got, expected, images):
        assert g["boxes"].shape[0] > 0
        assert_same_detections(g, e)
        assert (g["boxes"][:, 2] <= image.shape[-1] + 1e-3).all() and (g["boxes"][:, 3] <= image.shape[-2] + 1e-3).all()


@pytest.mark.slow
def test_ssd300_gives_torchvision_s_losses_and_gradients(ssd300_pair):
    theirs, ours = ssd300_pair
    images, targets = synthetic_batch([(160, 200), (150, 130)], 5, seed=2)
    targets[1] = {k: v[:0] for k, v in targets[1].items()}  # an image with no objects
    theirs.train(), ours.train()
    torch.manual_seed(3)
    expected = theirs(images, targets)
    torch.manual_seed(3)
    got = ours(images, targets)
    assert set(got) == set(expected)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=2e-4, atol=1e-6)
    sum(expected.values()).backward()
    sum(got.values()).backward()
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert p.requires_grad == theirs_params[name].requires_grad, name
        expected_grad = theirs_params[name].grad
        err = float((p.grad - expected_grad).norm()) / (float(expected_grad.norm()) + 1e-12)
        assert err < 5e-3, (name, err)
    theirs.zero_grad(), ours.zero_grad()


@pytest.mark.parametrize("trainable", range(6))
def test_frozen_vgg_stages_follow_torchvision_s_rule(trainable):
    tv_vgg = torch.nn.Module()
    tv_vgg.features = tv_vgg_module.make_layers(tv_vgg_module.cfgs["D"])  # torchvision's vgg16 less its classifier
    theirs = tv_ssd._vgg_extractor(tv_vgg, False, trainable)
    vgg = vgg16()
    freeze_vgg_stages(vgg, trainable)
    ours = SSDFeatureExtractorVGG(vgg)
    expected = {n: p.requires_grad for n, p in theirs.named_parameters()}
    assert {n: p.requires_grad for n, p in ours.named_parameters()} == expected


def test_backbone_weights_load_into_the_vgg_and_freeze_the_first_stage():
    vgg_state = {k: torch.randn_like(v) for k, v in vgg16().state_dict().items()}
    model = ssd300_vgg16(weights_backbone=vgg_state, num_classes=3)
    state = model.state_dict()
    for k, v in vgg_state.items():  # conv1_1 .. conv4_3 in features, conv5_x in extra.0 (after pool4)
        _, index, kind = k.split(".")
        index = int(index)
        ours = f"backbone.features.{index}.{kind}" if index < 23 else f"backbone.extra.0.{index - 23}.{kind}"
        assert torch.equal(state[ours], v), k
    frozen = {n for n, p in model.backbone.named_parameters() if not p.requires_grad}
    assert frozen == {"features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"}


def test_builder_argument_rules():
    with pytest.raises(ValueError, match="trainable_backbone_layers"):
        ssd300_vgg16(weights_backbone=vgg16().state_dict(), trainable_backbone_layers=6)
    with pytest.warns(UserWarning, match="size"):
        model = ssd300_vgg16(num_classes=3, size=(200, 200))
    assert model.transform.fixed_size == (300, 300) and model.num_classes == 3
    assert ssd300_vgg16().num_classes == 91


# ---- the small configuration's surface ------------------------------------------------------------------


def test_small_ssd_trains_predicts_and_handles_empty_targets(small_ssd):
    ours = small_ssd
    images, targets = synthetic_batch([(128, 128), (90, 150)], 5, seed=0)
    ours.train()
    losses = ours(images, targets)
    assert set(losses) == {"bbox_regression", "classification"}
    sum(losses.values()).backward()
    empty = [{k: v[:0] for k, v in t.items()} for t in targets]
    losses = ours.loss(images, empty)
    assert float(losses["bbox_regression"].detach()) == 0.0 and torch.isfinite(losses["classification"])
    with torch.no_grad():
        in_train = ours.predict(images)
        ours.eval()
        in_eval, batched = ours(images), ours(torch.stack([images[0], images[0]]))
    for a, b, image in zip(in_train, in_eval, images):
        torch.testing.assert_close(a["boxes"], b["boxes"])
        assert (b["boxes"][:, 2] <= image.shape[-1] + 1e-4).all() and (b["labels"] >= 1).all()
    torch.testing.assert_close(batched[0]["scores"], in_eval[0]["scores"])
    ours.zero_grad()
