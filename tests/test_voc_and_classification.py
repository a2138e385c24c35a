"""VOC AP (hand-computed cases and a float64 transcription of the devkit), precision/recall/F1,
segmentation confusion matrix / IoU / mIoU with an ignore index, multi-label AP (sklearn as the
oracle where installed)."""

import numpy as np
import pytest
import torch

import fastops.metrics as fm


def _img(boxes, labels, scores=None, difficult=None):
    d = {"boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), "labels": torch.tensor(labels).long()}
    if scores is not None:
        d["scores"] = torch.tensor(scores, dtype=torch.float64)
    if difficult is not None:
        d["difficult"] = torch.tensor(difficult, dtype=torch.bool)
    return d


def test_voc_hand_computed():
    # image 0: GT A, B; detections: A (0.9, TP), A again (0.8, duplicate: FP), B (0.7, TP)
    targets = [_img([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1])]
    preds = [_img([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], [1, 1, 1], [0.9, 0.8, 0.7])]
    out = fm.voc_evaluate(preds, targets)
    assert out["ap"][0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)  # all-point: 0.8333
    out07 = fm.voc_evaluate(preds, targets, use_07_metric=True)
    assert out07["ap"][0] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11, abs=1e-15)  # 11-point: 0.8485
    cv = out["curves"][1]
    assert cv["recall"].tolist() == [0.5, 0.5, 1.0]
    assert cv["precision"].tolist() == pytest.approx([1.0, 0.5, 2 / 3])


def test_voc_difficult_and_threshold_inclusive():
    # a detection on a difficult GT is neither TP nor FP; IoU exactly 0.5 counts (>=, as the devkit)
    targets = [_img([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], difficult=[False, True])]
    preds = [_img([[0, 0, 10, 5], [50, 50, 60, 60]], [0, 0], [0.9, 0.95])]
    out = fm.voc_evaluate(preds, targets, pixel_plus_one=False)
    assert out["ap"][0] == 1.0
    cv = out["curves"][0]
    assert cv["recall"].tolist() == [0.0, 1.0] and cv["precision"].tolist() == [0.0, 1.0]
    # with the devkit's +1 pixel sizes the 10x5 box has IoU 66/121 = 0.545 > 0.5 too
    assert fm.voc_evaluate(preds, targets, iou_threshold=0.55)["ap"][0] == 0.0


def _devkit_reference(preds, targets, cls, iou_threshold=0.5, use_07=False):
    """VOCevaldet.m transcribed in float64 Python, one class."""
    gts = {}
    npos = 0
    for i, t in enumerate(targets):
        sel = (t["labels"] == cls).numpy()
        boxes = t["boxes"].numpy()[sel]
        diff = t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool)).numpy()[sel]
        gts[i] = (boxes, diff, np.zeros(len(boxes), bool))
        npos += int((~diff).sum())
    dets = [
        (float(s), i, b)
        for i, p in enumerate(preds)
        for s, b, lab in zip(p["scores"].tolist(), p["boxes"].tolist(), p["labels"].tolist())
        if lab == cls
    ]
    dets.sort(key=lambda x: -x[0])  # stable
    tp, fp = [], []
    for _, i, bb in dets:
        boxes, diff, det = gts[i]
        ovmax, jmax = -np.inf, -1
        for j, g in enumerate(boxes):
            iw = min(bb[2], g[2]) - max(bb[0], g[0]) + 1
            ih = min(bb[3], g[3]) - max(bb[1], g[1]) + 1
            if iw > 0 and ih > 0:
                ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - iw * ih
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= iou_threshold:
            if not diff[jmax]:
                if not det[jmax]:
                    tp.append(1), fp.append(0)
                    det[jmax] = True
                else:
                    tp.append(0), fp.append(1)
            else:
                tp.append(0), fp.append(0)
        else:
            tp.append(0), fp.append(1)
    tp, fp = np.cumsum(tp, dtype=np.float64), np.cumsum(fp, dtype=np.float64)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return fm.voc_ap(rec, prec, use_07)


@pytest.mark.parametrize("use_07", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_voc_random_against_devkit_transcription(seed, use_07):
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(12):
        g = rng.integers(0, 6)
        gb = np.concatenate([rng.integers(0, 80, (g, 2)), rng.integers(5, 40, (g, 2))], 1).astype(float)
        gb[:, 2:] += gb[:, :2]
        gl = rng.integers(0, 3, g)
        targets.append(_img(gb.tolist(), gl.tolist(), difficult=(rng.random(g) < 0.2).tolist()))
        d = rng.integers(0, 10)
        src = rng.integers(0, max(g, 1), d)
        db = gb[src] + rng.integers(-3, 4, (d, 4)) if g else rng.uniform(0, 100, (d, 4))
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        dl = np.where(rng.random(d) < 0.8, gl[src] if g else 0, rng.integers(0, 3, d))
        preds.append(_img(db.tolist(), dl.tolist(), (rng.integers(0, 10, d) / 10).tolist()))
    out = fm.voc_evaluate(preds, targets, use_07_metric=use_07)
    for k, c in enumerate(out["classes"].tolist()):
        want = _devkit_reference(preds, targets, c, use_07=use_07)
        got = out["ap"][k]
        assert (np.isnan(want) and np.isnan(got)) or got == want, (c, got, want)


def test_detection_confusion_matrix():
    targets = [_img([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0, 1, 1])]
    preds = [
        _img([[0, 0, 10, 10], [20, 20, 30, 30], [80, 80, 90, 90], [50, 50, 60, 60]], [0, 0, 1, 1], [0.9, 0.8, 0.7, 0.1])
    ]
    m = fm.detection_confusion_matrix(preds, targets, num_classes=2)
    # rows predicted, columns true: 0->0, predicted 0 for a true 1, a false 1, a missed 1 (low score)
    assert m.tolist() == [[1, 1, 0], [0, 0, 1], [0, 1, 0]]


def test_pr_curve_plot():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    targets = [_img([[0, 0, 10, 10]], [1])]
    preds = [_img([[0, 0, 10, 10], [5, 5, 9, 9]], [1, 1], [0.9, 0.3])]
    ax = fm.plot_pr_curves(fm.voc_evaluate(preds, targets)["curves"])
    assert len(ax.lines) == 1


# ---- classification and segmentation ------------------------------------------------------------


def test_confusion_matrix_and_segmentation_with_ignore():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (3, 17, 19), generator=g)
    preds = torch.where(torch.rand(3, 17, 19, generator=g) < 0.7, target, torch.randint(0, 4, (3, 17, 19), generator=g))
    target[0, :5] = 255
    cm = fm.confusion_matrix(preds, target, 4, ignore_index=255)
    ref = np.zeros((4, 4), np.int64)
    for t, p in zip(target.reshape(-1).tolist(), preds.reshape(-1).tolist()):
        if t != 255:
            ref[t, p] += 1
    assert cm.numpy().tolist() == ref.tolist()
    metric = fm.SegmentationMetrics(num_classes=4, ignore_index=255)
    metric.update(preds[:2], target[:2])
    metric.update(preds[2:], target[2:])
    out = metric.compute()
    tp = np.diag(ref).astype(float)
    iou = tp / (ref.sum(0) + ref.sum(1) - tp)
    assert out["iou"].numpy().tolist() == pytest.approx(iou.tolist(), abs=1e-15)
    assert out["miou"].item() == pytest.approx(iou.mean(), abs=1e-15)
    assert out["pixel_accuracy"].item() == pytest.approx(tp.sum() / ref.sum(), abs=1e-15)
    with pytest.raises(ValueError, match="class indices"):
        fm.confusion_matrix(preds, target, 4)  # 255 without ignore_index


def test_precision_recall_f1_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 5, (300,), generator=g)
    preds = torch.where(torch.rand(300, generator=g) < 0.6, target, torch.randint(0, 5, (300,), generator=g))
    for avg in ("macro", "micro"):
        out = fm.precision_recall_f1(preds, target, num_classes=5, average=avg)
        p, r, f, _ = sk.precision_recall_fscore_support(target.numpy(), preds.numpy(), average=avg)
        assert out["precision"].item() == pytest.approx(p, abs=1e-12)
        assert out["recall"].item() == pytest.approx(r, abs=1e-12)
        if avg == "micro":
            assert out["f1"].item() == pytest.approx(f, abs=1e-12)
        else:  # sklearn's macro F1 is the mean of per-class F1, as ours
            assert out["f1"].item() == pytest.approx(f, abs=1e-12)
    ja = sk.jaccard_score(target.numpy(), preds.numpy(), average=None)
    assert fm.precision_recall_f1(preds, target, num_classes=5, average="none")["iou"].numpy() == pytest.approx(ja)
    # binary, from scores
    scores = torch.rand(100, generator=g, dtype=torch.float64)
    y = (torch.rand(100, generator=g) < 0.4).long()
    out = fm.precision_recall_f1(scores, y, threshold=0.5)
    p, r, f, _ = sk.precision_recall_fscore_support(y.numpy(), (scores >= 0.5).long().numpy(), average="binary")
    assert (out["precision"].item(), out["recall"].item(), out["f1"].item()) == pytest.approx((p, r, f), abs=1e-12)


def test_multilabel_ap_against_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(2)
    target = (torch.rand(200, 6, generator=g) < 0.3).long()
    scores = (target * 0.3 + torch.rand(200, 6, generator=g, dtype=torch.float64)).round(decimals=1)  # ties
    target[:, 5] = 0  # a class without positives: NaN, left out of the macro mean
    out = fm.multilabel_average_precision(scores, target)
    for c in range(5):
        assert out["ap"][c].item() == pytest.approx(sk.average_precision_score(target[:, c], scores[:, c]), abs=1e-12)
    assert np.isnan(out["ap"][5].item())
    assert out["macro_map"].item() == pytest.approx(np.mean([out["ap"][c].item() for c in range(5)]), abs=1e-15)
    assert out["micro_map"].item() == pytest.approx(
        sk.average_precision_score(target.numpy().ravel(), scores.numpy().ravel()), abs=1e-12
    )
    prf = fm.multilabel_precision_recall_f1(scores, target, threshold=0.5, average="micro")
    p, r, f, _ = sk.precision_recall_fscore_support(target.numpy(), (scores >= 0.5).long().numpy(), average="micro")
    assert (prf["precision"].item(), prf["recall"].item(), prf["f1"].item()) == pytest.approx((p, r, f), abs=1e-12)


def test_average_precision_hand_computed():
    # scores 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = 0.5 * 1 + 0.5 * 2/3
    assert fm.average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(0.5 + 1 / 3, abs=1e-15)
    assert np.isnan(fm.average_precision([0.1, 0.2], [0, 0]))


# The worked example of Padilla et al. (github.com/rafaelpadilla/Object-Detection-Metrics: 7 images,
# 15 "person" ground truths, 24 detections, boxes x y w h, IoU threshold 0.3, VOC's +1 pixel sizes),
# whose published results are AP 24.57% (all-point; 24.56% in its README's truncated sum), 11-point
# AP 26.84%, and the precision / recall lists below (2 decimals).
_PADILLA_GT = [
    [(25, 16, 38, 56), (129, 123, 41, 62)],
    [(123, 11, 43, 55), (38, 132, 59, 45)],
    [(16, 14, 35, 48), (123, 30, 49, 44), (99, 139, 47, 47)],
    [(53, 42, 40, 52), (154, 43, 31, 34)],
    [(59, 31, 44, 51), (48, 128, 34, 52)],
    [(36, 89, 52, 76), (62, 58, 44, 67)],
    [(28, 31, 55, 63), (58, 67, 50, 58)],
]
_PADILLA_DT = [
    [(0.88, 5, 67, 31, 48), (0.70, 119, 111, 40, 67), (0.80, 124, 9, 49, 67)],
    [(0.71, 64, 111, 64, 58), (0.54, 26, 140, 60, 47), (0.74, 19, 18, 43, 35)],
    [
        (0.18, 109, 15, 77, 39),
        (0.67, 86, 63, 46, 45),
        (0.38, 160, 62, 36, 53),
        (0.91, 105, 131, 47, 47),
        (0.44, 18, 148, 40, 44),
    ],
    [(0.35, 83, 28, 28, 26), (0.78, 28, 68, 42, 67), (0.45, 87, 89, 25, 39), (0.14, 10, 155, 60, 26)],
    [(0.62, 50, 38, 28, 46), (0.44, 95, 11, 53, 28), (0.95, 29, 131, 72, 29), (0.23, 29, 163, 72, 29)],
    [(0.45, 43, 48, 74, 38), (0.84, 17, 155, 29, 35), (0.43, 95, 110, 25, 42)],
    [(0.48, 16, 20, 101, 88), (0.95, 33, 116, 37, 49)],
]
_PADILLA_PREC = [
    "1.00",
    "0.50",
    "0.67",
    "0.50",
    "0.40",
    "0.33",
    "0.29",
    "0.25",
    "0.22",
    "0.30",
    "0.27",
    "0.33",
    "0.38",
    "0.43",
    "0.40",
    "0.38",
    "0.35",
    "0.33",
    "0.32",
    "0.30",
    "0.29",
    "0.27",
    "0.30",
    "0.29",
]
_PADILLA_REC = [
    "0.07",
    "0.07",
    "0.13",
    "0.13",
    "0.13",
    "0.13",
    "0.13",
    "0.13",
    "0.13",
    "0.20",
    "0.20",
    "0.27",
    "0.33",
    "0.40",
    "0.40",
    "0.40",
    "0.40",
    "0.40",
    "0.40",
    "0.40",
    "0.40",
    "0.40",
    "0.47",
    "0.47",
]


def test_voc_published_example():
    xyxy = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]
    targets = [_img([xyxy(b) for b in img], [0] * len(img)) for img in _PADILLA_GT]
    preds = [_img([xyxy(d[1:]) for d in img], [0] * len(img), [d[0] for d in img]) for img in _PADILLA_DT]
    out = fm.voc_evaluate(preds, targets, iou_threshold=0.3)
    assert round(100 * out["ap"][0], 2) == 24.57
    assert out["ap"][0] == pytest.approx(1 / 15 + 1 / 15 * 2 / 3 + 4 / 15 * 3 / 7 + 1 / 15 * 7 / 23, abs=1e-15)
    assert round(100 * fm.voc_evaluate(preds, targets, iou_threshold=0.3, use_07_metric=True)["ap"][0], 2) == 26.84
    cv = out["curves"][0]
    assert [f"{p:.2f}" for p in cv["precision"]] == _PADILLA_PREC
    assert [f"{r:.2f}" for r in cv["recall"]] == _PADILLA_REC


def test_voc_rejects_fields_of_another_length():
    """Every image's boxes, labels, scores and difficult flags must line up: a mismatch used to shift
    later boxes onto other images (mAP 1.0 -> 0.5) or drop every image's difficult flags."""
    good_t = [_img([[0, 0, 10, 10]], [0]), _img([[5, 5, 20, 20], [30, 30, 40, 40]], [0, 1])]
    good_p = [_img([[0, 0, 10, 10]], [0], [0.9]), _img([[5, 5, 20, 20], [30, 30, 40, 40]], [0, 1], [0.8, 0.7])]
    assert fm.voc_evaluate(good_p, good_t)["map"] == 1.0
    cases = [
        ("targets", 1, "labels", torch.tensor([0])),  # 2 boxes, 1 label
        ("targets", 0, "labels", torch.tensor([0, 1])),  # 1 box, 2 labels
        ("targets", 1, "difficult", torch.tensor([True])),
        ("targets", 0, "difficult", torch.tensor([False, False, True])),
        ("preds", 1, "scores", torch.tensor([0.8])),
        ("preds", 0, "labels", torch.tensor([0, 0])),
    ]
    for side, i, key, value in cases:
        t, p = [dict(x) for x in good_t], [dict(x) for x in good_p]
        (t if side == "targets" else p)[i][key] = value
        with pytest.raises(ValueError, match=rf"{side}\[{i}\]"):
            fm.voc_evaluate(p, t)
    # boxes of another shape, fractional labels, missing fields: clear errors
    for bad in (torch.zeros(2, 5), torch.zeros(8)):
        t = [dict(x) for x in good_t]
        t[1]["boxes"] = bad
        with pytest.raises(ValueError, match="boxes"):
            fm.voc_evaluate(good_p, t)
    t = [dict(x) for x in good_t]
    t[1]["labels"] = torch.tensor([0.0, 1.5])
    with pytest.raises(ValueError, match="integer"):
        fm.voc_evaluate(good_p, t)
    p = [dict(x) for x in good_p]
    del p[0]["scores"]
    with pytest.raises(KeyError, match="scores"):
        fm.voc_evaluate(p, good_t)
    # difficult given for some images only: the others have none
    t = [dict(x) for x in good_t]
    t[1]["difficult"] = torch.tensor([True, False])
    out = fm.voc_evaluate(good_p, t)
    assert out["ap"][1] == 1.0 and out["ap"][0] == 1.0


def test_average_precision_checks_its_inputs():
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        fm.average_precision([0.9, 0.8, 0.7], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        fm.average_precision([0.9, float("nan")], [1, 0])
    with pytest.raises(ValueError, match="0 / 1"):
        fm.average_precision([0.9, 0.8], [2, 0])
    assert fm.average_precision(np.array([0.9, 0.8]), np.array([True, False])) == 1.0
    with pytest.raises(ValueError, match="scores and target"):
        fm.multilabel_average_precision(torch.rand(4, 3), torch.ones(4, 2))
