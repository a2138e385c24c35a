"""The single-object localizer: its surface (outputs, loss and predict in either mode, the two
target forms, bad input), its loss against a float64 reference from the definition, and learning:
trained on synthetic one-object images it reaches a mean IoU of 0.8 on held-out images."""

import pytest
import torch
import torch.nn.functional as F

from fastops.data import SyntheticShapes
from fastops.models.localization import localizer_small
from fastops.ops import box_iou

NUM_CLASSES = 4


def _load(num_images, seed, size=64):
    dataset = SyntheticShapes(num_images, size, num_classes=NUM_CLASSES, single_object=True, seed=seed)
    items = [dataset[i] for i in range(num_images)]
    images = torch.stack([image for image, _ in items])
    targets = [{"boxes": t["boxes"], "labels": t["labels"] - 1} for _, t in items]  # labels from 0
    return images, targets


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return localizer_small(NUM_CLASSES)


def test_outputs_predictions_and_loss_in_either_mode(model):
    images, targets = _load(3, seed=5)
    for training in (True, False):
        model.train(training)
        out = model(images)
        assert out["boxes"].shape == (3, 4) and out["cls_logits"].shape == (3, NUM_CLASSES)
        losses = model.loss(list(images), targets)
        assert set(losses) == {"loss", "loss_classifier", "loss_box"}
        with torch.no_grad():
            pred = model.predict(images)
        assert pred["boxes"].shape == (3, 4) and pred["labels"].dtype == torch.int64
        assert (pred["boxes"] >= 0).all() and (pred["boxes"] <= 64).all()
        assert model.training == training
    batched = {"boxes": torch.cat([t["boxes"] for t in targets]), "labels": torch.cat([t["labels"] for t in targets])}
    torch.testing.assert_close(model.loss(images, batched)["loss"], model.loss(images, targets)["loss"])


def test_loss_is_cross_entropy_plus_weighted_l2_of_relative_boxes():
    torch.manual_seed(1)
    model = localizer_small(NUM_CLASSES, box_weight=2.5).eval()
    images, targets = _load(4, seed=6)
    out = model(images)
    boxes = torch.cat([t["boxes"] for t in targets]).double() / 64
    x1, y1, x2, y2 = boxes.unbind(1)
    relative = torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=1)
    l2 = ((out["boxes"].double() - relative) ** 2).sum(1).mean()
    ce = F.cross_entropy(out["cls_logits"].double(), torch.cat([t["labels"] for t in targets]))
    losses = model.loss(images, targets)
    torch.testing.assert_close(losses["loss_box"].double(), l2, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(losses["loss_classifier"].double(), ce, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(losses["loss"].double(), ce + 2.5 * l2, rtol=1e-5, atol=1e-7)


def _one(box, label):
    return [{"boxes": torch.tensor([box]), "labels": torch.tensor([label])}]


@pytest.mark.parametrize(
    "targets, error, match",
    [
        (_one([1.0, 2, 30, 40], 4), ValueError, r"label 4 is out of range"),
        (_one([30.0, 2, 1, 40], 1), ValueError, r"x2 > x1"),
        ([{"boxes": torch.zeros(2, 4), "labels": torch.tensor([1, 2])}], ValueError, r"exactly one object"),
        ([], ValueError, r"one dict per image \(1\)"),
        ("boxes", TypeError, r"targets: expected a list of dicts"),
    ],
)
def test_bad_targets_raise_errors_naming_the_field(model, targets, error, match):
    with pytest.raises(error, match=match):
        model.loss(torch.rand(1, 3, 64, 64), targets)


def test_bad_images_raise_errors_naming_the_image(model):
    with pytest.raises(ValueError, match=r"images\[0\]: expected 3 channels"):
        model.predict([torch.rand(1, 64, 64)])
    with pytest.raises(ValueError, match="images of one size"):
        model.predict([torch.rand(3, 64, 64), torch.rand(3, 32, 64)])


@pytest.mark.slow
def test_learns_to_localize_held_out_objects():
    torch.manual_seed(0)
    train_images, train_targets = _load(512, seed=0)
    test_images, test_targets = _load(64, seed=1)
    test_boxes = torch.cat([t["boxes"] for t in test_targets])
    test_labels = torch.cat([t["labels"] for t in test_targets])
    train_boxes = torch.cat([t["boxes"] for t in train_targets])
    train_labels = torch.cat([t["labels"] for t in train_targets])
    model = localizer_small(NUM_CLASSES).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    best = 0.0
    for epoch in range(1, 25):
        order = torch.randperm(train_images.shape[0], generator=g)
        for idx in order.split(32):
            losses = model.loss(train_images[idx], {"boxes": train_boxes[idx], "labels": train_labels[idx]})
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()
        if epoch >= 8 and epoch % 4 == 0:
            with torch.no_grad():
                pred = model.predict(test_images)
            best = float(box_iou(pred["boxes"], test_boxes).diagonal().mean())
            accuracy = float((pred["labels"] == test_labels).float().mean())
            if best >= 0.8 and accuracy >= 0.9:
                break
    assert best >= 0.8, f"held-out mean IoU {best:.3f} after {epoch} epochs"
    assert accuracy >= 0.9
