"""The detector surface on the small configurations of every detector: train and eval contracts,
loss/predict in either mode, images of any size or one batched tensor, images without objects, and
bad input raising clear errors that name the image and the field."""

import pytest
import torch
from detection_common import synthetic_batch
from torch import nn

from fastops.models.backbones import small_resnet
from fastops.models.detection.detr_builders import detr_small
from fastops.models.detection.retinanet import scores_above, topk_per_image
from fastops.models.detection.small import fasterrcnn_small, maskrcnn_small, retinanet_small, ssd_small
from fastops.models.detection.yolo_v1 import yolo_v1_small

NUM_CLASSES = 4
BUILDERS = {
    "retinanet": retinanet_small,
    "fasterrcnn": fasterrcnn_small,
    "maskrcnn": maskrcnn_small,
    "yolo_v1": yolo_v1_small,
    "ssd": ssd_small,
    "detr": detr_small,
}
LOSS_KEYS = {
    "retinanet": {"classification", "bbox_regression"},
    "fasterrcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
    "maskrcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask"},
    "yolo_v1": {"loss_box", "loss_object", "loss_no_object", "loss_class"},
    "ssd": {"bbox_regression", "classification"},
    # DETR: the set losses of the last decoder layer and of the one before it (auxiliary)
    "detr": {f"loss_{k}{s}" for k in ("ce", "bbox", "giou") for s in ("", "_0")},
}


def _batch(kind, sizes=((128, 128), (96, 150)), seed=0):
    min_label = 0 if kind in ("retinanet", "yolo_v1", "detr") else 1
    return synthetic_batch(list(sizes), NUM_CLASSES, seed=seed, masks=kind == "maskrcnn", min_label=min_label)


@pytest.fixture(scope="module", params=list(BUILDERS))
def detector(request):
    torch.manual_seed(0)
    return request.param, BUILDERS[request.param](NUM_CLASSES)


def test_training_mode_returns_losses_and_trains(detector):
    kind, model = detector
    images, targets = _batch(kind)
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSS_KEYS[kind]
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.zero_grad()


def test_eval_mode_returns_detections_in_original_pixels(detector):
    kind, model = detector
    images, _ = _batch(kind, sizes=((128, 128), (70, 200)))
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, image in zip(out, images):
        h, w = image.shape[-2:]
        k = det["boxes"].shape[0]
        assert det["boxes"].shape == (k, 4) and det["scores"].shape == (k,) and det["labels"].shape == (k,)
        assert det["labels"].dtype == torch.int64
        if k:
            assert (det["boxes"][:, 0::2] <= w + 1e-3).all() and (det["boxes"][:, 1::2] <= h + 1e-3).all()
            assert (det["boxes"] >= -1e-3).all()
        if kind == "maskrcnn":
            assert det["masks"].shape == (k, 1, h, w)


def test_loss_and_predict_work_in_either_mode(detector):
    kind, model = detector
    images, targets = _batch(kind)
    model.eval()
    torch.manual_seed(1)
    eval_losses = model.loss(images, targets)
    assert not model.training and set(eval_losses) == LOSS_KEYS[kind]
    model.train()
    with torch.no_grad():
        preds_in_train = model.predict(images)
    assert model.training
    model.eval()
    with torch.no_grad():
        preds_in_eval = model.predict(images)
    if kind != "yolo_v1" or all(not isinstance(m, nn.Dropout) or m.p == 0 for m in model.modules()):
        for a, b in zip(preds_in_train, preds_in_eval):
            torch.testing.assert_close(a["boxes"], b["boxes"])
            torch.testing.assert_close(a["scores"], b["scores"])


def test_a_batched_tensor_equals_a_list(detector):
    _, model = detector
    model.eval()
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        a, b = model(images), model(list(images))
    for x, y in zip(a, b):
        torch.testing.assert_close(x["boxes"], y["boxes"])
        torch.testing.assert_close(x["scores"], y["scores"])


def test_images_without_objects_train(detector):
    kind, model = detector
    images, targets = _batch(kind)
    empty = [{k: v[:0] for k, v in t.items()} for t in targets]
    model.train()
    for batch_targets in (empty, [targets[0], empty[1]]):
        losses = model(images, batch_targets)
        assert all(torch.isfinite(v) for v in losses.values()), losses
        sum(losses.values()).backward()
        model.zero_grad()


def test_loss_in_eval_mode_leaves_batch_norm_statistics_alone():
    model = fasterrcnn_small(NUM_CLASSES)
    model.backbone.body = small_resnet(
        return_layers={f"layer{k}": str(k - 1) for k in range(1, 5)}, norm_layer=nn.BatchNorm2d
    )
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    images, targets = _batch("fasterrcnn")
    model.loss(images, targets)
    after = model.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())


# ---- bad input -------------------------------------------------------------------------------------

GOOD_BOX = torch.tensor([[10.0, 10.0, 50.0, 60.0]])


def _bad_cases(mask: bool):
    image = torch.rand(3, 100, 120)
    target = {"boxes": GOOD_BOX, "labels": torch.tensor([1])}
    if mask:
        target["masks"] = torch.zeros(1, 100, 120, dtype=torch.uint8)

    def with_(**kw):
        return [{**target, **kw}]

    def boxes(*coords):
        return with_(boxes=torch.tensor(coords))

    t0 = r"targets\[0\]"

    return [
        ([torch.rand(100, 120)], None, ValueError, r"images\[0\]: expected a 3-D tensor"),
        ([torch.rand(1, 3, 100, 120)], None, ValueError, r"images\[0\]: expected a 3-D tensor"),
        ([image, torch.rand(4, 100, 120)], None, ValueError, r"images\[1\]: expected 3 channels"),
        ([(image * 255).to(torch.uint8)], None, TypeError, r"images\[0\]: expected a floating-point image"),
        (torch.rand(3, 100, 120), None, ValueError, r"images: a batched tensor must be"),
        (torch.rand(2, 3, 100), None, ValueError, r"images: a batched tensor must be"),
        ([], None, ValueError, r"images: expected at least one image"),
        ([image], [target, target], ValueError, r"targets: expected one dict per image \(1\), got 2"),
        ([image], boxes([50.0, 10.0, 40.0, 60.0]), ValueError, t0 + r"\['boxes'\]\[0\].*x2 > x1"),
        ([image], boxes([10.0, 10.0, 130.0, 60.0]), ValueError, t0 + r"\['boxes'\]\[0\].*outside the image"),
        ([image], boxes([-5.0, 10.0, 30.0, 60.0]), ValueError, r"outside the image"),
        ([image], boxes([float("nan"), 10.0, 30.0, 60.0]), ValueError, r"non-finite"),
        ([image], boxes(10.0, 10.0, 30.0, 60.0), ValueError, t0 + r"\['boxes'\]: expected shape \[K, 4\]"),
        ([image], boxes([10, 10, 30, 60]), TypeError, t0 + r"\['boxes'\]: expected floating-point"),
        ([image], with_(labels=torch.tensor([NUM_CLASSES])), ValueError, t0 + r"\['labels'\]\[0\]: label 4 is out of"),
        ([image], with_(labels=torch.tensor([1, 2])), ValueError, t0 + r"\['labels'\]: expected shape \[1\]"),
        ([image], with_(labels=torch.tensor([1.0])), TypeError, t0 + r"\['labels'\]: expected integer"),
        ([image], [{"labels": torch.tensor([1])}], ValueError, r"targets\[0\]: missing 'boxes'"),
        ([image], [GOOD_BOX], TypeError, r"targets\[0\]: expected a dict"),
        ([image], None, ValueError, r"targets: required"),
    ] + (
        [([image], with_(masks=torch.zeros(1, 100, 100)), ValueError, r"targets\[0\]\['masks'\]: expected shape")]
        if mask
        else []
    )


@pytest.mark.parametrize("kind", ["fasterrcnn", "maskrcnn", "retinanet", "yolo_v1", "ssd", "detr"])
def test_bad_input_raises_errors_naming_image_and_field(kind):
    model = BUILDERS[kind](NUM_CLASSES).train()
    for images, targets, error, message in _bad_cases(kind == "maskrcnn"):
        with pytest.raises(error, match=message):
            model(images, targets)
    if kind in ("fasterrcnn", "maskrcnn", "ssd"):
        image = torch.rand(3, 100, 120)
        target = {"boxes": GOOD_BOX, "labels": torch.tensor([0])}
        if kind == "maskrcnn":
            target["masks"] = torch.zeros(1, 100, 120, dtype=torch.uint8)
        with pytest.raises(ValueError, match=r"label 0 is out of range \[1, 4\)"):  # 0 is the background
            model([image], [target])


def test_channels_last_gives_the_same_detections():
    torch.manual_seed(0)
    model = fasterrcnn_small(NUM_CLASSES, box_detections_per_img=20).eval()
    torch.nn.init.normal_(model.roi_heads.box_predictor.cls_score.weight, std=0.3)
    images, _ = _batch("fasterrcnn")
    with torch.no_grad():
        expected = model(images)
        model.to(memory_format=torch.channels_last)
        got = model(images)
    for g, e in zip(got, expected):
        assert g["boxes"].shape[0] > 0
        torch.testing.assert_close(g["boxes"], e["boxes"], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(g["labels"], e["labels"])


@pytest.mark.parametrize("thresh", [0.05, 0.5, 0.0, 1.0, 1e-30, 0.999999])
def test_retinanet_candidates_equal_the_sigmoid_filter_and_topk(thresh):
    """scores_above / topk_per_image (logit pre-filter, per-image top-k) against the plain
    definition: sigmoid, compare, then each image's k best, on logits that sit at the threshold."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4000, generator=g) * 3 - 2
    if 0 < thresh < 1:  # values on and around logit(thresh), where rounding decides
        bound = torch.logit(torch.tensor(thresh, dtype=torch.float64)).float()
        logits[0, :50] = bound + torch.arange(-25, 25) * 1e-7
    logits[1, 7] = float("nan")
    logits[2] = -100.0  # an image with no candidate
    image, column, score = scores_above(logits, thresh)
    scores = torch.sigmoid(logits)
    want_image, want_column = torch.nonzero(scores > thresh, as_tuple=True)
    assert torch.equal(image, want_image) and torch.equal(column, want_column)
    assert torch.equal(score, scores[want_image, want_column])
    for k in (1, 10, 5000):
        top_image, top_column, top_score = topk_per_image(image, column, score, 3, k)
        for b in range(3):
            row = scores[b].masked_fill(~(scores[b] > thresh), -1)
            want = row.topk(min(k, int((row > thresh).sum()))).values
            assert torch.equal(top_score[top_image == b], want)
            assert torch.equal(scores[b, top_column[top_image == b]], want)
        assert torch.equal(top_image, top_image.sort().values)


def test_retinanet_candidates_of_an_empty_level_are_empty():
    image, column, score = scores_above(torch.empty(2, 0), 0.05)
    assert image.numel() == column.numel() == score.numel() == 0
    top_image, top_column, top_score = topk_per_image(image, column, score, 2, 1000)
    assert top_image.numel() == top_column.numel() == top_score.numel() == 0
