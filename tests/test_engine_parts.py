"""The engine's parts: the model table, the learning-rate schedule, the evaluators (perfect
predictions score 1, known mistakes score what the definition says), the pictures."""

import math
import sys

import pytest
import torch

from fastops import data
from fastops.engine import MODELS, EngineError, build_model, make_task, model_spec
from fastops.engine.optim import make_optimizer, warmup_cosine
from fastops.engine.plots import MissingPlotLibrary, draw_detections, plot_training_curves
from fastops.engine.tasks import IGNORE_INDEX
from fastops.models.components import combine_semantic_and_instances


def test_model_table():
    assert {spec.task for spec in MODELS.values()} == {"detection", "segmentation", "multilabel", "panoptic"}
    for name in ("fasterrcnn_small", "retinanet_small", "maskrcnn_small", "yolo_v1_small", "detr_small"):
        model = build_model(name, 3)
        assert model.num_classes == 4  # background + 3
        assert model.label_range[1] == 4
    assert build_model("unet_small", 3).num_classes == 4
    assert build_model("multilabel_classifier", 3).classifier.out_features == 3
    panoptic = build_model("panoptic_fpn_small", 3)
    assert (panoptic.num_things, panoptic.num_stuff, panoptic.label_range) == (3, 1, (1, 4))
    with pytest.raises(EngineError, match="unknown model 'resnet'"):
        model_spec("resnet")


def test_warmup_then_cosine():
    opt = make_optimizer(torch.nn.Linear(2, 2), "sgd", 1.0, 0.1)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]  # no decay on the bias
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=14, min_lr_ratio=0.0)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    expected = [0.5 * (1 + math.cos(math.pi * k / 10)) for k in range(10)]
    assert lrs[4:] == pytest.approx(expected)
    with pytest.raises(EngineError, match="unknown optimizer"):
        make_optimizer(torch.nn.Linear(2, 2), "lamb", 1.0, 0.0)


def _targets(n=4):
    ds = data.SyntheticShapes(n, image_size=48, num_classes=3, seed=3)
    return [ds[i] for i in range(n)]


def test_detection_evaluator():
    samples = _targets()
    targets = [t for _, t in samples]
    ev = make_task("detection", 3).evaluator()
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))} for t in targets]
    ev.update(perfect, targets)
    result = ev.compute()
    assert result["map"] == pytest.approx(1.0) and result["map_50"] == pytest.approx(1.0)
    assert set(ev.curves) == {int(c) for t in targets for c in t["labels"]}
    # every label wrong: nothing matches
    ev = make_task("detection", 3).evaluator()
    wrong = [{**p, "labels": p["labels"] % 3 + 1} for p in perfect]
    ev.update(wrong, targets)
    assert ev.compute()["map_50"] == 0.0


@pytest.mark.parametrize("flag", ["difficult", "iscrowd"])
def test_detection_evaluator_ignores_flagged_objects(flag):
    targets = [t for _, t in _targets()]
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))} for t in targets]
    # one more object in the first image, flagged and not detected: neither a miss nor counted
    first = targets[0]
    extra = torch.tensor([[0.0, 0.0, 6.0, 6.0]])
    flagged = {
        "boxes": torch.cat([first["boxes"], extra]),
        "labels": torch.cat([first["labels"], first["labels"][:1]]),
        flag: torch.tensor([False] * len(first["labels"]) + [True]),
    }
    ev = make_task("detection", 3).evaluator()
    ev.update(perfect, [flagged, *targets[1:]])
    assert ev.compute()["map_50"] == pytest.approx(1.0)
    unflagged = {**flagged, flag: torch.zeros(len(flagged["labels"]), dtype=torch.bool)}
    ev = make_task("detection", 3).evaluator()
    ev.update(perfect, [unflagged, *targets[1:]])
    assert ev.compute()["map_50"] < 1.0  # the same object, required: a miss


def test_detection_evaluator_with_masks():
    targets = [t for _, t in _targets()]
    ev = make_task("detection", 3, masks=True).evaluator()
    preds = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
              "masks": t["masks"].bool()} for t in targets]  # fmt: skip
    ev.update(preds, targets)
    result = ev.compute()
    assert result["map"] == pytest.approx(1.0) and result["segm_map"] == pytest.approx(1.0)


def test_segmentation_evaluator():
    semantic = torch.tensor([[[0, 1], [2, IGNORE_INDEX]]])
    ev = make_task("segmentation", 2).evaluator()
    ev.update(torch.tensor([[[0, 1], [1, 0]]]), semantic)  # class 2 predicted as 1; the ignored pixel skipped
    result = ev.compute()
    # IoU: class 0 1/1, class 1 1/2, class 2 0/1
    assert result["miou"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert result["pixel_accuracy"] == pytest.approx(2 / 3)


def test_segmentation_batch_of_different_sizes():
    # images of different sizes (COCO/VOC) pad to one batch; their semantic maps pad with the ignore index
    images = [torch.rand(3, 4, 5), torch.rand(3, 6, 3)]
    targets = [{"semantic": torch.full((4, 5), 1)}, {"semantic": torch.full((6, 3), 2)}]
    x, masks = make_task("segmentation", 2).inputs((images, targets), torch.device("cpu"))
    assert x.shape == (2, 3, 6, 5) and masks.shape == (2, 6, 5) and masks.dtype == torch.int64
    assert torch.equal(x[0, :, :4, :5], images[0]) and torch.equal(x[1, :, :6, :3], images[1])
    want = torch.full((2, 6, 5), IGNORE_INDEX)
    want[0, :4, :5] = 1
    want[1, :6, :3] = 2
    assert torch.equal(masks, want)


def _panoptic_targets(task, flag=None):
    """The panoptic task's targets of a few synthetic images (optionally one object flagged), and
    their perfect predictions: the fusion of their own masks and stuff."""
    samples = _targets()
    batch = ([image for image, _ in samples], [t for _, t in samples])
    if flag is not None:
        first = batch[1][0]
        batch[1][0] = {**first, flag: torch.arange(len(first["labels"])) == 0}
    _, targets = task.inputs(batch, torch.device("cpu"))
    preds = []
    for t in targets:
        stuff = torch.where(t["semantic"] <= 3, 0, t["semantic"])  # things' pixels: 0
        scores = torch.ones(len(t["labels"]))
        panoptic, segments = combine_semantic_and_instances(
            t["masks"].bool(), scores, t["labels"], stuff, stuff_area_threshold=1
        )
        preds.append({"panoptic": panoptic, "segments_info": segments})
    return targets, preds


def _without(pred, drop):
    """The prediction with the segments ``drop`` picks made void."""
    gone = [s["id"] for s in pred["segments_info"] if drop(s)]
    return {
        "panoptic": torch.where(torch.isin(pred["panoptic"], torch.tensor(gone)), 0, pred["panoptic"]),
        "segments_info": [s for s in pred["segments_info"] if not drop(s)],
    }


def test_panoptic_evaluator():
    task = make_task("panoptic", 3)
    targets, preds = _panoptic_targets(task)
    assert all(set(t["semantic"].unique().tolist()) <= {1, 2, 3, 4} for t in targets)  # background: stuff 4
    ev = task.evaluator()
    ev.update(preds, targets)
    result = ev.compute()
    assert result["pq"] == pytest.approx(1.0) and result["pq_things"] == pytest.approx(1.0)
    assert result["pq_stuff"] == pytest.approx(1.0)
    # the stuff predicted as void: stuff's PQ 0, things' unchanged
    ev = task.evaluator()
    ev.update([_without(p, lambda s: not s["isthing"]) for p in preds], targets)
    result = ev.compute()
    assert result["pq_stuff"] == 0.0 and result["pq_things"] == pytest.approx(1.0)


def test_panoptic_evaluator_voids_flagged_objects():
    task = make_task("panoptic", 3)
    targets, preds = _panoptic_targets(task, flag="iscrowd")
    # the flagged object is not predicted: no miss, since its pixels are void in the ground truth
    preds[0] = _without(preds[0], lambda s: s["isthing"] and s["instance"] == 0)
    ev = task.evaluator()
    ev.update(preds, targets)
    assert ev.compute()["pq"] == pytest.approx(1.0)


def test_multilabel_evaluator():
    tags = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ev = make_task("multilabel", 2).evaluator()
    ev.update({"scores": tags * 0.8 + 0.1}, tags)
    assert ev.compute()["macro_map"] == pytest.approx(1.0)
    ev = make_task("multilabel", 2).evaluator()
    ev.update({"scores": torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]])}, tags)
    # label 1: positives scored 0.9 and 0.1 among 0.9, 0.8, 0.1 -> AP = (1 + 2/3) / 2
    # label 2: positives scored 0.7 and 0.6 among 0.7, 0.6, 0.2 -> AP = 1
    assert ev.compute()["macro_map"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)


def test_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    (image, target), *_ = _targets(1)
    pred = {**target, "scores": torch.tensor([0.9] * len(target["labels"])), "masks": target["masks"][:, None]}
    draw_detections([image], [pred], str(tmp_path / "d.png"), class_names=["a", "b", "c"])
    steps = [{"step": s, "loss": 1.0 / s} for s in range(1, 50)]
    plot_training_curves(steps, [{"step": 49, "map": 0.5}], str(tmp_path / "c.png"))
    for name in ("d.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_pictures_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingPlotLibrary, match="pip install matplotlib"):
        plot_training_curves([], [], str(tmp_path / "c.png"))


def test_repeat_factor_threshold_reaches_the_sampler():
    from fastops.engine.datasets import make_sampler

    dataset = data.SyntheticShapes(64, image_size=32, num_classes=4, imbalance=10.0, seed=0)
    kw = dict(num_replicas=1, rank=0, seed=0)
    # LVIS's 0.001 repeats nothing on four frequent classes; 0.5 repeats images of the rarer ones
    assert len(make_sampler("repeat_factor", dataset, **kw)) == len(dataset)
    assert len(make_sampler("repeat_factor", dataset, repeat_thresh=0.5, **kw)) > len(dataset)


def test_training_augmentation_by_seed_epoch_and_index():
    from fastops.engine.datasets import AugmentedDataset, load_datasets, parse_data

    kw = dict(image_size=48, num_images=8, val_images=2, num_classes=3)
    plain, _ = load_datasets(parse_data("synthetic"), **kw)
    train, val = load_datasets(parse_data("synthetic"), augment=("flip", "erasing", "copy_paste"), **kw)
    assert isinstance(train, AugmentedDataset) and not isinstance(val, AugmentedDataset)
    assert train.num_classes == plain.num_classes and train.image_labels(3) == plain.image_labels(3)

    def images(epoch):
        train.set_epoch(epoch)
        return [train[i][0] for i in range(len(train))]

    first, again, second = images(0), images(0), images(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # a function of (seed, epoch, index)
    assert any(not torch.equal(a, plain[i][0]) for i, a in enumerate(first))
    assert any(not torch.equal(a, b) for a, b in zip(first, second))
    with pytest.raises(EngineError, match="unknown augmentation"):
        load_datasets(parse_data("synthetic"), augment=("mosaic",), **kw)


def test_augment_flag_names(capsys):
    from fastops.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--model", "fasterrcnn_small", "--augment", "flip,mosaic"])
    assert exit_.value.code == 2 and "unknown mosaic" in capsys.readouterr().err
