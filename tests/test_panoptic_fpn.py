"""Panoptic FPN on its small configuration: the train and eval contracts (Mask R-CNN's losses plus
``loss_sem_seg``; detections plus ``sem_seg``, ``panoptic`` and ``segments_info``), loss/predict in
either mode, bad semantic targets, the ResNet-50 builder's state_dict, an overfit of a synthetic
batch to PQ >= 0.8 (fastops.metrics.panoptic_quality) and torch.compile of inference."""

import copy

import pytest
import torch

from fastops.data import SyntheticShapes
from fastops.metrics import panoptic_quality
from fastops.models.components import panoptic_labels
from fastops.models.detection import (
    SemanticFPNHead,
    maskrcnn_resnet50_fpn,
    panoptic_fpn_resnet50_fpn,
    panoptic_fpn_small,
)

THINGS, STUFF = 3, 1
BACKGROUND = THINGS + 1  # the one stuff category: SyntheticShapes' background
LOSS_KEYS = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask", "loss_sem_seg"}
DIVISOR = 1000


def _batch(sizes=((64, 64), (48, 80)), seed=0):
    """SyntheticShapes images and panoptic targets: its classes are the things, its background
    the stuff category BACKGROUND."""
    images, targets = [], []
    for i, size in enumerate(sizes):
        image, t = SyntheticShapes(len(sizes), image_size=size, num_classes=THINGS, seed=seed)[i]
        semantic = torch.where(t["semantic"] == 0, BACKGROUND, t["semantic"])
        images.append(image)
        targets.append({"boxes": t["boxes"], "labels": t["labels"], "masks": t["masks"], "semantic": semantic})
    return images, targets


def _ground_truth(target) -> torch.Tensor:
    """The target as category * DIVISOR + instance (stuff instance 0, ignored pixels -1)."""
    semantic = target["semantic"]
    gt = torch.where(semantic == 255, -1, semantic * DIVISOR)
    for k, (mask, label) in enumerate(zip(target["masks"], target["labels"].tolist())):
        gt[mask.bool()] = label * DIVISOR + k + 1
    return gt


def _small(**kwargs):
    return panoptic_fpn_small(THINGS, STUFF, min_size=64, max_size=96, **kwargs)


def _with_instances():
    """A small model whose random weights give confident instances (so the fusion places things)."""
    torch.manual_seed(0)
    model = _small(stuff_area_threshold=16).eval()
    torch.nn.init.normal_(model.roi_heads.box_predictor.cls_score.weight, std=0.5)
    return model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return _small(stuff_area_threshold=16)


def test_training_returns_instance_and_semantic_losses(model):
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSS_KEYS
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    head = [p.grad for p in model.semantic_head.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in head)
    model.zero_grad()


def test_eval_returns_detections_semantic_logits_and_a_consistent_panoptic_map():
    model = _with_instances()
    images, _ = _batch()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    assert any(s["isthing"] for det in out for s in det["segments_info"])
    for det, image in zip(out, images):
        h, w = image.shape[-2:]
        k = det["boxes"].shape[0]
        assert det["masks"].shape == (k, 1, h, w)
        assert det["sem_seg"].shape == (STUFF + 1, h, w) and det["sem_seg"].is_floating_point()
        panoptic, segments = det["panoptic"], det["segments_info"]
        assert panoptic.shape == (h, w) and panoptic.dtype == torch.int64
        assert set(torch.unique(panoptic).tolist()) <= {0} | {s["id"] for s in segments}
        for s in segments:
            assert int((panoptic == s["id"]).sum()) == s["area"] > 0
            if s["isthing"]:
                assert 1 <= s["category_id"] <= THINGS and s["score"] >= model.instance_score_threshold
                assert s["category_id"] == int(det["labels"][s["instance"]])
            else:
                assert THINGS < s["category_id"] <= THINGS + STUFF and s["area"] >= model.stuff_area_threshold
        stuff = torch.where(det["sem_seg"].argmax(0) == 0, 0, det["sem_seg"].argmax(0) + THINGS)
        for s in segments:  # stuff segments are where the semantic argmax says so
            if not s["isthing"]:
                assert bool((stuff[panoptic == s["id"]] == s["category_id"]).all())


def test_loss_and_predict_work_in_either_mode(model):
    images, targets = _batch()
    model.eval()
    assert set(model.loss(images, targets)) == LOSS_KEYS and not model.training
    with torch.no_grad():
        in_eval = model.predict(images)
        model.train()
        in_train = model.predict(images)
    assert model.training
    for a, b in zip(in_train, in_eval):
        torch.testing.assert_close(a["sem_seg"], b["sem_seg"])
        assert torch.equal(a["panoptic"], b["panoptic"])


def test_semantic_targets_map_things_to_one_class_and_keep_ignore(model):
    semantic = torch.tensor([[1, 2, 3], [4, 255, 1]])
    assert model.semantic_targets(semantic).tolist() == [[0, 0, 0], [1, 255, 0]]


def test_ignored_semantic_maps_and_images_without_objects_train(model):
    images, targets = _batch()
    model.train()
    empty = [{**{k: v[:0] for k, v in t.items() if k != "semantic"}, "semantic": t["semantic"]} for t in targets]
    ignored = [{**t, "semantic": torch.full_like(t["semantic"], 255)} for t in targets]
    for batch_targets in (empty, ignored):
        losses = model(images, batch_targets)
        assert all(torch.isfinite(v) for v in losses.values()), losses
        sum(losses.values()).backward()
        model.zero_grad()
    assert float(model(images, ignored)["loss_sem_seg"].detach()) == 0.0


def test_bad_semantic_targets_raise_errors_naming_the_field(model):
    images, targets = _batch()
    model.train()
    t1 = r"targets\[1\]\['semantic'\]"
    cases = [
        ({"semantic": targets[1]["semantic"][:, :-1]}, ValueError, t1 + r": expected shape \[48, 80\].*got \[48, 79\]"),
        ({"semantic": targets[1]["semantic"].float()}, TypeError, t1 + ": expected integer category ids"),
        ({"semantic": targets[1]["semantic"].tolist()}, TypeError, t1 + ": expected a tensor"),
        ({"semantic": torch.zeros(48, 80, dtype=torch.int64)}, ValueError, t1 + r": value 0 is out of range \[1, 4\]"),
        ({"semantic": torch.full((48, 80), 5)}, ValueError, t1 + r": value 5 is out of range"),
        ({"semantic": torch.full((48, 80), -1)}, ValueError, t1 + r": value -1 is out of range"),
        ({"labels": torch.full_like(targets[1]["labels"], BACKGROUND)}, ValueError, r"label 4 is out of range"),
    ]
    for change, error, message in cases:
        with pytest.raises(error, match=message):
            model(images, [targets[0], {**targets[1], **change}])
    with pytest.raises(ValueError, match=r"targets\[0\]: missing 'semantic'"):
        model(images, [{k: v for k, v in targets[0].items() if k != "semantic"}, targets[1]])
    with pytest.raises(ValueError, match="num_stuff"):
        panoptic_fpn_small(THINGS, 0)


def test_semantic_head_needs_sides_divisible_by_its_largest_stride():
    head = SemanticFPNHead(8, 3, {"0": 4, "1": 8, "2": 16}, conv_dims=8, num_groups=2)
    features = {"0": torch.rand(1, 8, 8, 12), "1": torch.rand(1, 8, 4, 6), "2": torch.rand(1, 8, 2, 3)}
    assert head(features).shape == (1, 3, 32, 48)
    features["2"] = torch.rand(1, 8, 2, 2)  # a 44-pixel side: not a multiple of 16
    with pytest.raises(ValueError, match="level '2' reaches \\[8, 8\\] at 1/4, the first level \\[8, 12\\]"):
        head(features)
    with pytest.raises(ValueError, match=r"strides\['1'\]: expected a power of two >= 4, got 6"):
        SemanticFPNHead(8, 3, {"0": 4, "1": 6})


def test_resnet50_builder_is_mask_rcnn_plus_the_semantic_head():
    model = panoptic_fpn_resnet50_fpn(THINGS, 2)
    with torch.device("meta"):  # only its names are compared
        mask_rcnn = set(maskrcnn_resnet50_fpn(num_classes=THINGS + 1).state_dict())
    state = model.state_dict()
    assert mask_rcnn <= set(state) and all(k.startswith("semantic_head.") for k in set(state) - mask_rcnn)
    assert model.semantic_head.predictor.out_channels == 3 and len(model.semantic_head.scale_heads) == 4
    # loaded strictly (frozen batch norms, as from trained weights, keep no num_batches_tracked)
    again = panoptic_fpn_resnet50_fpn(THINGS, 2, weights=state).state_dict()
    assert set(again) == {k for k in state if not k.endswith("num_batches_tracked")}
    assert all(torch.equal(v, state[k]) for k, v in again.items())


@pytest.fixture
def one_thread():
    """One CPU thread: the overfit's tiny convolutions gain nothing from a second (busy) core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_small_model_overfits_a_synthetic_batch_to_high_pq(one_thread):
    images, targets = _batch(((64, 64), (64, 64)))
    gts = [_ground_truth(t) for t in targets]
    categories = {c: c <= THINGS for c in range(1, THINGS + STUFF + 1)}
    torch.manual_seed(0)
    model = _small(stuff_area_threshold=16).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first, pq = None, 0.0
    for step in range(1, 61):
        loss = sum(model(images, targets).values())
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0:
            # a copy is evaluated, so the check leaves the training run as it is
            with torch.no_grad():
                out = copy.deepcopy(model).eval()(images)
            preds = [panoptic_labels(o["panoptic"], o["segments_info"], DIVISOR) for o in out]
            pq = panoptic_quality(preds, gts, categories, label_divisor=DIVISOR)["All"]["pq"]
            if pq >= 0.8:
                break
    assert float(loss.detach()) < 0.5 * first
    assert pq >= 0.8, f"PQ {pq:.3f} after {step} steps"


@pytest.mark.slow
def test_compiled_inference_gives_the_eager_panoptic_maps():
    model = _with_instances()
    images, _ = _batch()
    compiled = torch.compile(model)
    with torch.no_grad():
        expected = model(images)
        got = compiled(images)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g["sem_seg"], e["sem_seg"], atol=1e-4, rtol=1e-4)
        assert float((g["panoptic"] == e["panoptic"]).float().mean()) >= 0.99
        assert [s["category_id"] for s in g["segments_info"]] == [s["category_id"] for s in e["segments_info"]]
