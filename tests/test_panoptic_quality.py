"""fastops.metrics.panoptic_quality against tests/reference/panoptic.py (the COCO panoptic API's
pq_compute transcribed in float64 Python), a hand-counted example, and torchmetrics'
PanopticQuality where its conventions agree (tensor maps, no crowd)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference.panoptic import pq_compute

from fastops.metrics import panoptic_quality

CATEGORIES = [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 0}, {"id": 3, "isthing": 1}, {"id": 7, "isthing": 0}]
ISTHING = {c["id"]: bool(c["isthing"]) for c in CATEGORIES}


def assert_results_close(got: dict, want: dict) -> None:
    for name in ("All", "Things", "Stuff"):
        assert got[name]["n"] == want[name]["n"], name
        for key in ("pq", "sq", "rq"):
            a, b = got[name][key], want[name][key]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-12), (name, key, a, b)
    assert got["per_class"].keys() == want["per_class"].keys()
    for c, v in want["per_class"].items():
        for key in ("pq", "sq", "rq"):
            assert got["per_class"][c][key] == pytest.approx(v[key], rel=1e-12, abs=1e-12), (c, key)


def as_reference_image(gt_map, pred_map, gt_info, pred_info):
    return (
        gt_map,
        pred_map,
        {s["id"]: (s["category_id"], s.get("iscrowd", 0)) for s in gt_info},
        {s["id"]: s["category_id"] for s in pred_info},
    )


# ---- a hand-counted example ------------------------------------------------------------------------


def hand_example():
    # 28 pixels as (gt id, pred id) runs; categories: 1 person (thing), 2 sky (stuff)
    runs = [
        ((10, 20), 5),  # person 10 (6 px) and predicted person 20 (6 px: 5 here, 1 on void)
        ((10, 0), 1),
        ((0, 20), 1),
        ((11, 21), 2),  # person 11 (4 px) and predicted person 21 (4 px: 2 here, 2 on void)
        ((11, 0), 2),
        ((0, 21), 2),
        ((12, 22), 8),  # sky 12 and predicted sky 22: the same 8 px
        ((13, 23), 3),  # crowd of persons 13 (4 px) and predicted person 23 (3 px on it, 1 on void)
        ((13, 0), 1),
        ((0, 23), 1),
        ((0, 24), 2),  # predicted sky 24 (2 px), all on void
    ]
    pairs = [p for p, n in runs for _ in range(n)]
    gt_map = torch.tensor([g for g, _ in pairs]).reshape(4, 7)
    pred_map = torch.tensor([p for _, p in pairs]).reshape(4, 7)
    gt_info = [
        {"id": 10, "category_id": 1, "iscrowd": 0},
        {"id": 11, "category_id": 1, "iscrowd": 0},
        {"id": 12, "category_id": 2, "iscrowd": 0},
        {"id": 13, "category_id": 1, "iscrowd": 1},
    ]
    pred_info = [{"id": i, "category_id": c} for i, c in [(20, 1), (21, 1), (22, 2), (23, 1), (24, 2)]]
    return gt_map, pred_map, gt_info, pred_info


def test_hand_counted_example():
    # person 10 / pred 20: intersection 5, union 6 + 6 - 5 - 1 (pred 20's void pixel) = 6, IoU 5/6 > 0.5: TP.
    # person 11 / pred 21: intersection 2, union 4 + 4 - 2 - 2 = 4, IoU 1/2, not above 0.5: 11 is a FN, and
    #   21 (2 of 4 px void: not more than half) a FP.
    # sky 12 / pred 22: IoU 1: TP. Crowd 13 never matches and is no FN; pred 23 (3 px crowd of its
    #   category + 1 px void = 4/4) and pred 24 (2/2 void) are ignored, no FP.
    # person: TP 1, FP 1, FN 1, IoU sum 5/6: PQ = (5/6) / (1 + 1/2 + 1/2) = 5/12, SQ = 5/6, RQ = 1/2.
    # sky: PQ = SQ = RQ = 1. Categories 3 and 7 are never seen: zeros, not averaged.
    # All: PQ = (5/12 + 1) / 2 = 17/24, SQ = (5/6 + 1) / 2 = 11/12, RQ = (1/2 + 1) / 2 = 3/4, n = 2.
    gt_map, pred_map, gt_info, pred_info = hand_example()
    got = panoptic_quality([(pred_map, pred_info)], [(gt_map, gt_info)], CATEGORIES)
    assert got["All"] == pytest.approx({"pq": 17 / 24, "sq": 11 / 12, "rq": 3 / 4, "n": 2}, rel=1e-15)
    assert got["Things"] == pytest.approx({"pq": 5 / 12, "sq": 5 / 6, "rq": 1 / 2, "n": 1}, rel=1e-15)
    assert got["Stuff"] == pytest.approx({"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}, rel=1e-15)
    assert got["per_class"][3] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert_results_close(got, pq_compute([as_reference_image(gt_map, pred_map, gt_info, pred_info)], ISTHING))


def test_rgb_png_maps_and_numpy():
    gt_map, pred_map, gt_info, pred_info = hand_example()

    def rgb(m):
        m = m.numpy()
        return np.stack([m % 256, m // 256 % 256, m // 65536], axis=-1).astype(np.uint8)

    want = panoptic_quality([(pred_map, pred_info)], [(gt_map, gt_info)], CATEGORIES)
    got = panoptic_quality([(rgb(pred_map), pred_info)], [(torch.from_numpy(rgb(gt_map)), gt_info)], CATEGORIES)
    assert got == want


# ---- generated cases ---------------------------------------------------------------------------------


def random_image(rng: np.random.Generator, cats: list[int]):
    h, w = rng.integers(1, 14, size=2)
    n_gt = int(rng.integers(0, 6))
    gt_ids = rng.choice(np.arange(1, 400), size=n_gt, replace=False)
    gt_info = [{"id": int(i), "category_id": int(rng.choice(cats)), "iscrowd": int(rng.random() < 0.2)} for i in gt_ids]
    # blocky ground truth: a coarse grid upsampled, void (0) and an unlisted id (999) among the values
    values = np.concatenate([[0, 0, 999], gt_ids]) if rng.random() < 0.3 else np.concatenate([[0], gt_ids])
    coarse = rng.choice(values, size=(3, 3))
    gt_map = np.kron(coarse, np.ones((5, 5), dtype=np.int64))[:h, :w]
    # prediction: each gt value relabelled (same or another category), plus noise pixels
    pred_of = {int(v): int(rng.integers(0, 6)) * 1000 + int(rng.integers(1, 50)) for v in values}
    pred_map = np.vectorize(lambda v: pred_of[int(v)])(gt_map) if gt_map.size else gt_map.copy()
    noise = rng.random(pred_map.shape) < 0.15
    pred_map = np.where(noise, rng.choice([0, 1, 2, 5001], size=pred_map.shape), pred_map)
    pred_map = np.where(pred_map < 1000, 0, pred_map)  # ids below 1000: void
    pred_info = [{"id": int(i), "category_id": int(rng.choice(cats))} for i in np.unique(pred_map) if i != 0]
    return gt_map.astype(np.int64), pred_map.astype(np.int64), gt_info, pred_info


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_generated_images_match_reference(seed, images):
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in CATEGORIES][: int(rng.integers(1, 5))]
    data = [random_image(rng, cats) for _ in range(images)]
    got = panoptic_quality(
        [(torch.from_numpy(p), pi) for _, p, _, pi in data], [(g, gi) for g, _, gi, _ in data], CATEGORIES
    )
    assert_results_close(got, pq_compute([as_reference_image(*d) for d in data], ISTHING))


def tensor_form_to_reference(gt, pred, label_divisor):
    """The tensor encoding as COCO segment lists: each distinct value of a known category is one
    segment (id = its position + 1), everything else void."""
    images = []
    for g, p in zip(gt, pred, strict=True):
        lists = []
        for m in (g, p):
            ids = torch.zeros_like(m)
            info = {}
            for k, v in enumerate(torch.unique(m).tolist()):
                if v >= 0 and v // label_divisor in ISTHING:
                    ids[m == v] = k + 1
                    info[k + 1] = v // label_divisor
            lists.append((ids, info))
        (gi, ginfo), (pi, pinfo) = lists
        images.append((gi, pi, {i: (c, 0) for i, c in ginfo.items()}, pinfo))
    return pq_compute(images, ISTHING)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_tensor_form_matches_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    n, h, w = (int(x) for x in torch.randint(1, 6, (3,), generator=gen))
    cats = torch.tensor([1, 2, 3, 7, 5, -1])  # 5 is unknown and -1 negative: both void
    coarse_cat = cats[torch.randint(0, 6, (n, 3, 3), generator=gen)]
    coarse_inst = torch.randint(0, 3, (n, 3, 3), generator=gen)
    gt = (coarse_cat * 1000 + coarse_inst).repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :h, :w]
    flip = torch.rand(gt.shape, generator=gen) < 0.2
    pred = torch.where(flip, cats[torch.randint(0, 6, gt.shape, generator=gen)] * 1000, gt)
    got = panoptic_quality(pred, gt, ISTHING, label_divisor=1000)
    assert_results_close(got, tensor_form_to_reference(gt, pred, 1000))
    assert_results_close(panoptic_quality(list(pred), list(gt), ISTHING, label_divisor=1000), got)


def test_torchmetrics_agrees_where_conventions_do():
    torchmetrics = pytest.importorskip("torchmetrics.detection")
    # torchmetrics: (category, instance) pairs; a stuff category is one segment per image (instance 0
    # here); no crowd. Its rules differ from the API's where the prediction has void pixels (it also
    # takes the ground truth's void-predicted pixels out of the union and drops mostly-void false
    # negatives), so here only the ground truth has void (category 5, unknown).
    gen = torch.Generator().manual_seed(0)
    things, stuffs = [1, 3], [2, 7]
    cats = torch.tensor([*things, *stuffs, 5])
    n = 6
    cat = cats[torch.randint(0, 5, (n, 4, 4), generator=gen)].repeat_interleave(3, 1).repeat_interleave(3, 2)
    inst = torch.randint(0, 3, (n, 4, 4), generator=gen).repeat_interleave(3, 1).repeat_interleave(3, 2)
    pred_cat = torch.where(cat == 5, cats[torch.randint(0, 4, cat.shape, generator=gen)], cat)
    flip = torch.rand(cat.shape, generator=gen) < 0.15
    pred_cat = torch.where(flip, cats[torch.randint(0, 4, cat.shape, generator=gen)], pred_cat)
    stuff = torch.tensor(stuffs)
    inst = torch.where(torch.isin(cat, stuff), 0, inst)
    pred_inst = torch.where(torch.isin(pred_cat, stuff), 0, inst)
    preds, target = torch.stack([pred_cat, pred_inst], -1), torch.stack([cat, inst], -1)
    categories = {c: c in things for c in things + stuffs}
    got = panoptic_quality(pred_cat * 100 + pred_inst, cat * 100 + inst, categories, label_divisor=100)
    per_class = torchmetrics.PanopticQuality(things=things, stuffs=stuffs, return_sq_and_rq=True, return_per_class=True)
    want = per_class(preds, target).reshape(-1, 3)  # [classes, (pq, sq, rq)], things then stuffs
    for k, c in enumerate(things + stuffs):
        per = got["per_class"][c]
        np.testing.assert_allclose([per["pq"], per["sq"], per["rq"]], want[k].double().numpy(), rtol=1e-5, atol=1e-6)
    average = torchmetrics.PanopticQuality(things=things, stuffs=stuffs, return_sq_and_rq=True)(preds, target)
    np.testing.assert_allclose([got["All"][k] for k in ("pq", "sq", "rq")], average.double().numpy(), rtol=1e-5)


# ---- edge cases and errors ---------------------------------------------------------------------------


def test_empty_inputs():
    got = panoptic_quality([], [], CATEGORIES)
    assert got["All"]["n"] == 0 and math.isnan(got["All"]["pq"])
    got = panoptic_quality(
        torch.zeros(0, 4, 4, dtype=torch.int64), torch.zeros(0, 4, 4, dtype=torch.int64), ISTHING, label_divisor=10
    )
    assert got["Things"]["n"] == 0
    empty = torch.zeros(0, 0, dtype=torch.int64)
    assert panoptic_quality([(empty, [])], [(empty, [])], CATEGORIES)["All"]["n"] == 0


def test_bad_inputs_raise_naming_them():
    gt_map, pred_map, gt_info, pred_info = hand_example()
    with pytest.raises(ValueError, match="segment id 20, which its segment list lacks"):
        panoptic_quality([(pred_map, pred_info[1:])], [(gt_map, gt_info)], CATEGORIES)
    with pytest.raises(ValueError, match="id 99 is listed but absent"):
        panoptic_quality([(pred_map, [*pred_info, {"id": 99, "category_id": 1}])], [(gt_map, gt_info)], CATEGORIES)
    with pytest.raises(ValueError, match="id 10 twice"):
        panoptic_quality([(pred_map, pred_info)], [(gt_map, [*gt_info, gt_info[0]])], CATEGORIES)
    with pytest.raises(ValueError, match="category_id 4"):
        panoptic_quality([(pred_map, [*pred_info[:-1], {"id": 24, "category_id": 4}])], [(gt_map, gt_info)], CATEGORIES)
    with pytest.raises(ValueError, match="differ"):
        panoptic_quality([(pred_map[:, :3], pred_info)], [(gt_map, gt_info)], CATEGORIES)
    with pytest.raises(ValueError, match="integer map"):
        panoptic_quality([(pred_map.float(), pred_info)], [(gt_map, gt_info)], CATEGORIES)
    with pytest.raises(ValueError, match="label_divisor"):
        panoptic_quality(pred_map[None], gt_map[None], ISTHING, label_divisor=0)
    with pytest.raises(TypeError, match="categories"):
        panoptic_quality([], [], [1, 2])


def test_opcheck():
    gt_map, pred_map, _, _ = hand_example()
    flat = lambda m: m.reshape(-1)
    args = (
        flat(gt_map), flat(pred_map), torch.tensor([0, 28]),
        torch.tensor([[10, 0, 0], [11, 0, 0], [12, 1, 0], [13, 0, 1]]), torch.tensor([0, 4]),
        torch.tensor([[20, 0], [21, 0], [22, 1], [23, 0], [24, 1]]), torch.tensor([0, 5]),
        torch.empty(0, dtype=torch.int64), 2, 1,
    )  # fmt: skip
    torch.library.opcheck(torch.ops.fastops.panoptic_quality_stats.default, args)
    stats = torch.ops.fastops.panoptic_quality_stats(*args)
    torch.testing.assert_close(stats, torch.tensor([[1, 1, 1, 5 / 6], [1, 0, 0, 1.0]], dtype=torch.float64))


def test_thousands_of_segments_per_image():
    # 1600 segments on each side: the counts come from sorted runs rather than a 1600 x 1600 histogram
    gen = torch.Generator().manual_seed(7)
    gt = (
        torch.randint(1, 4, (1, 40, 40), generator=gen) * 10000 + torch.arange(1600).reshape(1, 40, 40)
    ).repeat_interleave(2, 2)
    pred = torch.where(torch.rand(gt.shape, generator=gen) < 0.3, gt.roll(1, -1), gt)
    got = panoptic_quality(pred, gt, ISTHING, label_divisor=10000)
    assert_results_close(got, tensor_form_to_reference(gt, pred, 10000))
    assert got["All"]["n"] == 3
