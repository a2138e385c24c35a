"""Checkpoint parity with torchvision's RetinaNet, Faster R-CNN and Mask R-CNN (ResNet-50 FPN, random
weights): a torchvision state_dict loads into our builder with strict=True and gives the same
detections (boxes, scores, labels, masks) on a few image sizes, and the same training losses
under the same seed."""

import pytest
import torch
from detection_common import assert_same_detections, synthetic_batch, torchvision_detector

from fastops.models.detection import (
    fasterrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn,
    randomize_for_detections,
    retinanet_resnet50_fpn,
)

BUILDERS = {
    "retinanet": retinanet_resnet50_fpn,
    "fasterrcnn": fasterrcnn_resnet50_fpn,
    "maskrcnn": maskrcnn_resnet50_fpn,
}
SMALL = {"min_size": 160, "max_size": 240}  # small images keep the ResNet-50 cheap


@pytest.fixture(scope="module", params=list(BUILDERS))
def pair(request):
    kind = request.param
    torch.manual_seed(0)
    theirs = torchvision_detector(kind, num_classes=5, **SMALL)
    state = randomize_for_detections(theirs.state_dict())
    theirs.load_state_dict(state)
    ours = BUILDERS[kind](weights=state, **SMALL)
    return kind, theirs, ours


@pytest.mark.slow
def test_state_dict_loads_strictly_with_torchvision_s_names(pair):
    _, theirs, ours = pair
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours.num_classes == 5
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [[(160, 200), (150, 130)], [(97, 240)]])
def test_same_detections_as_torchvision(pair, sizes):
    kind, theirs, ours = pair
    images, _ = synthetic_batch(sizes, 5, seed=1)
    theirs.eval(), ours.eval()
    with torch.no_grad():
        expected, got = theirs(images), ours(images)
    assert len(got) == len(images)
    for g, e, (h, w) in zip(got, expected, sizes):
        assert g["boxes"].shape[0] > 0
        assert_same_detections(g, e)
        if kind == "maskrcnn":
            assert g["masks"].shape[-2:] == (h, w)


@pytest.mark.slow
def test_same_detections_from_a_batched_tensor(pair):
    _, theirs, ours = pair
    images = torch.rand(2, 3, 128, 96)
    theirs.eval(), ours.eval()
    with torch.no_grad():
        expected, got = theirs(list(images)), ours(images)
    for g, e in zip(got, expected):
        assert_same_detections(g, e)


@pytest.mark.slow
def test_same_training_losses_and_gradients_as_torchvision(pair):
    kind, theirs, ours = pair
    images, targets = synthetic_batch([(160, 200), (150, 130)], 5, seed=2, masks=kind == "maskrcnn")
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
        if p.grad is not None:
            # relative to the gradient's norm: a ReLU whose input is within rounding of 0 may flip
            expected_grad = theirs_params[name].grad
            err = float((p.grad - expected_grad).norm()) / (float(expected_grad.norm()) + 1e-12)
            assert err < 5e-3, (name, err)
    theirs.zero_grad(), ours.zero_grad()
