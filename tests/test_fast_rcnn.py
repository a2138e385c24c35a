"""Fast R-CNN on external proposals: the train/eval contract (losses; detections in the original
pixels; ``loss``/``predict`` in either mode; RoIPool or RoIAlign), errors naming the proposals,
and an overfit of the small configuration on a synthetic batch with selective search proposals
(plus the ground truth in training, as the paper's) to mAP@0.5 >= 0.9 by fastops.metrics."""

import copy
import functools

import pytest
import torch
from detection_common import synthetic_batch

from fastops import selective_search
from fastops.metrics import MeanAveragePrecision
from fastops.models.detection import FastRCNN, fast_rcnn_resnet50, fast_rcnn_small
from fastops.models.detection.fast_rcnn import SingleMapRoIPool


@functools.cache
def _batch(seed=0):
    """Two images, their targets and selective search proposals (shared by the tests: none changes them)."""
    images, targets = synthetic_batch([(96, 112), (80, 96)], 4, seed=seed, disjoint=True, coloured=True)
    proposals = [selective_search(img, "fast", 150) for img in images]
    return images, targets, proposals


@pytest.mark.parametrize("pool", ["roi_pool", "roi_align"])
def test_train_and_eval_contract(pool):
    torch.manual_seed(0)
    model = fast_rcnn_small(4, pool=pool)
    images, targets, proposals = _batch()
    model.train()
    losses = model(images, targets, proposals)
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_heads.box_predictor.cls_score.weight.grad is not None
    model.eval()
    with torch.no_grad():
        detections = model(images, proposals=proposals)
        assert model.loss(images, targets, proposals).keys() == losses.keys()  # losses in eval mode
    assert len(detections) == 2
    for det, image in zip(detections, images):
        assert set(det) == {"boxes", "scores", "labels"}
        k = det["boxes"].shape[0]
        assert det["scores"].shape == (k,) and det["labels"].shape == (k,)
        if k:
            h, w = image.shape[1:]
            assert (det["boxes"][:, 2] <= w + 1e-3).all() and (det["boxes"][:, 3] <= h + 1e-3).all()
            assert ((det["labels"] >= 1) & (det["labels"] < 4)).all()
    model.train()
    with torch.no_grad():
        assert len(model.predict(images, proposals)) == 2  # detections in training mode
    # no proposals for an image: no detections for it, and training still has its ground truth
    empty = [proposals[0], torch.zeros(0, 4)]
    assert model.loss(images, targets, empty)["loss_classifier"].isfinite()
    with torch.no_grad():
        assert model.eval().predict(images, empty)[1]["boxes"].shape == (0, 4)


def test_proposals_follow_the_resize():
    """The transform resizes images; proposals in the original pixels are resized with them (the
    boxes reaching the RoI pooling), and detections come back in the original pixels."""
    torch.manual_seed(0)
    model = fast_rcnn_small(3, min_size=256, max_size=512).eval()
    seen = []
    model.roi_heads.box_roi_pool.register_forward_hook(lambda module, args, out: seen.append(args[1]))
    proposals = [torch.tensor([[8.0, 16.0, 40.0, 60.0], [0.0, 0.0, 100.0, 64.0]])]
    with torch.no_grad():
        (det,) = model.predict([torch.rand(3, 64, 100)], proposals)
    torch.testing.assert_close(seen[0][0], proposals[0] * 4)  # 64 -> 256 pixels
    assert det["boxes"].numel() == 0 or (det["boxes"][:, 2] <= 100 + 1e-3).all()
    pool = SingleMapRoIPool("0", 16, pool="roi_align")
    pooled = pool({"0": torch.rand(1, 2, 8, 8)}, [torch.tensor([[16.0, 16.0, 64.0, 96.0]])], [(128, 128)])
    assert pooled.shape == (1, 2, 7, 7)
    with pytest.raises(ValueError, match="pool must be one of"):
        SingleMapRoIPool("0", 16, pool="max")


@pytest.mark.parametrize(
    "proposals, error, match",
    [
        (None, ValueError, "proposals: required"),
        ([torch.zeros(3, 4)], ValueError, r"one Tensor\[P, 4\] per image \(2\), got 1"),
        (torch.zeros(2, 3, 4), TypeError, "expected a list"),
        ([torch.zeros(3, 4), torch.zeros(3, 5)], ValueError, r"proposals\[1\]: expected shape \[P, 4\]"),
        ([torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.int64)], TypeError, r"proposals\[1\]: expected floating"),
        ([torch.zeros(3, 4), "boxes"], TypeError, r"proposals\[1\]: expected a tensor"),
        ([torch.full((1, 4), float("nan")), torch.zeros(3, 4)], ValueError, r"proposals\[0\]: non-finite"),
    ],
)
def test_bad_proposals_raise(proposals, error, match):
    model = fast_rcnn_small(4)
    images, targets, _ = _batch()
    with pytest.raises(error, match=match):
        model.loss(images, targets, proposals)
    with pytest.raises(error, match=match):
        model.predict(images, proposals)


def test_constructor_checks():
    with pytest.raises(ValueError, match="exactly one of num_classes and box_predictor"):
        FastRCNN(fast_rcnn_small(3).backbone)
    with pytest.raises(ValueError, match="out_channels and strides of its output 'p9'"):
        FastRCNN(fast_rcnn_small(3).backbone, 3, featmap_name="p9")


def test_resnet50_builder_runs():
    torch.manual_seed(0)
    model = fast_rcnn_resnet50(3, pool="roi_align", min_size=64, max_size=64).eval()
    assert model.backbone.out_channels["0"] == 1024
    image = torch.rand(3, 64, 64)
    with torch.no_grad():
        out = model([image], proposals=[torch.tensor([[0.0, 0.0, 32.0, 32.0], [10.0, 20.0, 60.0, 64.0]])])
    assert out[0]["boxes"].shape[1] == 4


def _map50(model, images, proposals, targets) -> float:
    with torch.no_grad():
        preds = model.predict(images, proposals)
    metric = MeanAveragePrecision(iou_type="bbox")
    metric.update(preds, targets)
    return float(metric.compute()["map_50"])


@pytest.mark.slow
def test_overfits_a_small_batch_on_selective_search_proposals():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = fast_rcnn_small(4).train()
        images, targets, proposals = _batch(seed=1)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        first, recovered = None, False
        for step in range(1, 201):
            loss = sum(model(images, targets, proposals).values())
            first = float(loss.detach()) if first is None else first
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 50 == 0 and _map50(copy.deepcopy(model).eval(), images, proposals, targets) >= 0.9:
                recovered = True
                break
    finally:
        torch.set_num_threads(threads)
    assert float(loss.detach()) < 0.5 * first
    assert recovered, "mAP@0.5 below 0.9 after 200 steps"
