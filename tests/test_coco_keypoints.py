"""COCOeval(iouType="keypoints") against pycocotools, bit for bit: object keypoint similarity with
per-keypoint sigmas, the box-distance rule for GTs without visible keypoints, num_keypoints == 0 as
ignore, the keypoint area ranges and maxDets, and summarize's 10 numbers."""

import contextlib
import copy
import io
import json
import types

import numpy as np
import pytest
import torch
from coco_common import assert_same_eval, random_keypoint_dataset, run_eval

import fastops.metrics as fm

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO as RefCOCO  # noqa: E402
from pycocotools.cocoeval import COCOeval as RefCOCOeval  # noqa: E402

REF = types.SimpleNamespace(COCO=RefCOCO, COCOeval=RefCOCOeval)

PARAMS = {
    "default": None,
    "useCats0": {"useCats": 0},
    "maxDets": {"maxDets": [3, 1]},
    "areaRng": {"areaRng": [[0, 1e10], [0, 1024], [1024, 9216]], "areaRngLbl": ["all", "medium", "large"]},
    "iouThrs": {"iouThrs": np.array([0.1, 0.5, 0.9])},
}


@pytest.mark.parametrize("params", list(PARAMS))
@pytest.mark.parametrize("seed", range(4))
def test_keypoints_bit_exact(seed, params):
    gt, dt = random_keypoint_dataset(seed)
    ours = run_eval(fm, gt, dt, "keypoints", PARAMS[params])
    ref = run_eval(REF, gt, dt, "keypoints", PARAMS[params])
    assert_same_eval(ours, ref)
    assert len(ours.stats) == 10


@pytest.mark.parametrize("int_coords", [False, True])
def test_keypoints_other_sigmas_and_integer_coordinates(int_coords):
    """Five keypoints with their own sigmas; integer keypoints (numpy computes in int64 there)."""
    gt, dt = random_keypoint_dataset(7, n_kpts=5, int_coords=int_coords)
    sigmas = {"kpt_oks_sigmas": np.array([0.1, 0.05, 0.3, 0.07, 0.2])}
    assert_same_eval(run_eval(fm, gt, dt, "keypoints", sigmas), run_eval(REF, gt, dt, "keypoints", sigmas))


def test_keypoints_results_from_a_file(tmp_path):
    gt, dt = random_keypoint_dataset(11, n_images=30)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    with contextlib.redirect_stdout(io.StringIO()):
        cg = fm.COCO(str(tmp_path / "gt.json"))
        E = fm.COCOeval(cg, cg.loadRes(str(tmp_path / "dt.json")), "keypoints")
        E.evaluate()
        E.accumulate()
        E.summarize()
    assert_same_eval(E, run_eval(REF, gt, dt, "keypoints"))
    # the result dicts, built on first access, are pycocotools' (area and bbox from the keypoints)
    ref = RefCOCO()
    ref.dataset = copy.deepcopy(gt)
    ref.createIndex()
    with contextlib.redirect_stdout(io.StringIO()):
        r = ref.loadRes(copy.deepcopy(dt))
    ours = cg.loadRes(str(tmp_path / "dt.json")).dataset["annotations"]
    for a, b in zip(ours, r.dataset["annotations"]):
        assert a["area"] == b["area"] and [float(v) for v in a["bbox"]] == [float(v) for v in b["bbox"]]


def test_similarities_equal_compute_oks():
    """Every pair's similarity equals computeOks' own (numpy's exp and pairwise sum), bit for bit."""
    from fastops.metrics import grouping, keypoints

    gt, dt = random_keypoint_dataset(3, n_images=20, n_cats=1, max_gt=5, max_dt=12)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = RefCOCO()
        ref.dataset = copy.deepcopy(gt)
        ref.createIndex()
        E = RefCOCOeval(ref, ref.loadRes(copy.deepcopy(dt)), "keypoints")
        E.evaluate()
    cg = fm.COCO(copy.deepcopy(gt))
    cd = cg.loadRes(copy.deepcopy(dt))
    img_ids = np.array(E.params.imgIds, np.int64)
    cat_ids = np.array(E.params.catIds, np.int64)
    g = grouping.gt_groups(cg, img_ids, cat_ids, True, "keypoints")
    d = grouping.dt_groups(cd, img_ids, cat_ids, True, "keypoints")
    ious, iou_off = keypoints.grouped_oks(cg.columns(), g, cd.columns(), d, E.params.kpt_oks_sigmas)
    ious, iou_off, d_off = ious.numpy(), iou_off.numpy(), d.offsets.numpy()
    score = d.score.numpy()[d.rows.numpy()]  # by group position
    compared = 0
    for k, cat in enumerate(E.params.catIds):
        for i, img in enumerate(E.params.imgIds):
            want = E.ious[img, cat]
            q = k * len(img_ids) + i
            if len(want) == 0:
                continue
            n_dt = d_off[q + 1] - d_off[q]
            ours = ious[iou_off[q] : iou_off[q + 1]].reshape(n_dt, -1)
            order = np.argsort(-score[d_off[q] : d_off[q + 1]], kind="mergesort")[: E.params.maxDets[-1]]
            assert ours[order].tobytes() == np.asarray(want).tobytes()
            compared += want.size
    assert compared > 100


def test_keypoint_errors_are_clear():
    gt, dt = random_keypoint_dataset(5)
    bad = copy.deepcopy(dt)
    has_gt = {(a["image_id"], a["category_id"]) for a in gt["annotations"]}
    i = next(i for i, d in enumerate(bad) if (d["image_id"], d["category_id"]) in has_gt)
    bad[i]["keypoints"] = bad[i]["keypoints"][:-3]  # a detection compared with a GT
    cg = fm.COCO(copy.deepcopy(gt))
    E = fm.COCOeval(cg, cg.loadRes(bad), "keypoints")
    with pytest.raises(ValueError, match="keypoint values"):
        E.evaluate()
    gt2 = copy.deepcopy(gt)
    del gt2["annotations"][0]["num_keypoints"]
    cg = fm.COCO(gt2)
    E = fm.COCOeval(cg, cg.loadRes(copy.deepcopy(dt)), "keypoints")
    with pytest.raises(KeyError, match="num_keypoints"):
        E.evaluate()


def test_oks_ops_opcheck():
    f64, i64 = torch.float64, torch.int64
    args = (
        torch.tensor([1.0, 2.0, 2.0, 5.0, 5.0, 1.0], dtype=f64),
        torch.tensor([0, 6], dtype=i64),
        torch.tensor([[0.0, 0.0, 10.0, 10.0]], dtype=f64),
        torch.tensor([50.0], dtype=f64),
        torch.tensor([0], dtype=i64),
        torch.tensor([0, 1], dtype=i64),
        torch.tensor([1.5, 2.0, 0.3, 4.0, 5.5, 0.9], dtype=f64),
        torch.tensor([0, 6], dtype=i64),
        torch.tensor([0], dtype=i64),
        torch.tensor([0, 1], dtype=i64),
        torch.tensor([0.01, 0.02], dtype=f64),
    )
    torch.library.opcheck(torch.ops.fastops.coco_oks_terms.default, args, test_utils="test_schema")
    terms, term_off, iou_off = torch.ops.fastops.coco_oks_terms(*args)
    assert term_off.tolist() == [0, 2] and iou_off.tolist() == [0, 1]
    dx, dy = np.array([1.5, 4.0]) - np.array([1.0, 5.0]), np.array([2.0, 5.5]) - np.array([2.0, 5.0])
    want = (dx**2 + dy**2) / np.array([0.01, 0.02]) / (50.0 + np.spacing(1)) / 2
    assert terms.numpy().tolist() == want.tolist()
    ex = torch.exp(-terms)
    torch.library.opcheck(torch.ops.fastops.coco_oks_reduce.default, (ex, term_off), test_utils="test_schema")
    assert torch.ops.fastops.coco_oks_reduce(ex, term_off).item() == np.sum(np.exp(-want)) / 2
    with pytest.raises(ValueError, match="keypoint values"):
        torch.ops.fastops.coco_oks_terms(*args[:10], torch.tensor([0.01], dtype=f64))


@pytest.mark.parametrize("n", [1, 5, 7, 8, 9, 16, 17, 23, 128, 129, 300])
def test_numpy_pairwise_sum(n):
    """coco_oks_reduce's sum is np.sum's (pairwise, 8 running sums, halves past 128) for any length."""
    rng = np.random.default_rng(n)
    x = np.exp(-rng.uniform(0, 30, n) * rng.random(n))
    out = torch.ops.fastops.coco_oks_reduce(torch.from_numpy(x), torch.tensor([0, n]))
    assert out.item() == np.sum(x) / n


def test_oks_exponentials_in_parts_are_numpys_bits():
    # grouped_oks takes np.exp(-e) of every term in parts on several threads; each part must give
    # the bits of one numpy call (overflow, underflow and ties included)
    from fastops.metrics.keypoints import _negative_exp

    x = np.random.default_rng(0).random(50_001) * 60
    x[::7], x[::11], x[::13] = 1e4, -800.0, 0.0
    with np.errstate(over="ignore", under="ignore"):
        want = np.exp(-x)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            got = x.copy()
            _negative_exp(got, min_part=1000)
            assert np.array_equal(got, want)
    finally:
        torch.set_num_threads(threads)
