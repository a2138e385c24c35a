"""COCO evaluation (fastops.metrics.COCO / COCOeval) against pycocotools, bit for bit: the public
fixtures in ../shared/fixtures/coco (with the stats their README lists) and seeded random datasets
built to hit every documented pycocotools quirk."""

import concurrent.futures
import contextlib
import io
import math
import os
import types

import numpy as np
import pytest
import torch
from coco_common import FIXTURE_CASES, assert_same_eval, load_json, random_dataset, random_keypoint_dataset, run_eval

import fastops.metrics as fm

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO as RefCOCO  # noqa: E402
from pycocotools.cocoeval import COCOeval as RefCOCOeval  # noqa: E402

REF = types.SimpleNamespace(COCO=RefCOCO, COCOeval=RefCOCOeval)


@pytest.mark.parametrize("gt_name,dt_name,iou_type,expected", FIXTURE_CASES, ids=lambda x: str(x)[:24])
def test_fixtures_bit_exact(gt_name, dt_name, iou_type, expected):
    if iou_type == "segm" and not hasattr(fm.mask, "iou"):
        pytest.skip("RLE masks not implemented yet")
    gt, dt = load_json(gt_name), load_json(dt_name)
    ours = run_eval(fm, gt, dt, iou_type)
    ref = run_eval(REF, gt, dt, iou_type)
    assert_same_eval(ours, ref)
    # and the published numbers (README: pycocotools 2.0.11, rounded to 12 decimals)
    want = [float(x) for x in expected.split()]
    assert [round(float(s), 12) for s in ours.stats] == want


def test_fixture_from_path_and_dict_agree():
    from coco_common import FIXTURES

    gt_path = str(FIXTURES / "edge_gt.json")
    a = fm.COCO(gt_path)
    b = fm.COCO(load_json("edge_gt.json"))
    assert a.getImgIds() == b.getImgIds() and a.getCatIds() == b.getCatIds()
    res = [fm.COCOeval(c, c.loadRes(str(FIXTURES / "edge_dt.json")), "bbox") for c in (a, b)]
    for E in res:
        E.evaluate()
        E.accumulate()
        E.summarize(verbose=False)
    assert np.array_equal(res[0].stats, res[1].stats)


VARIANTS = {
    "plain": {},
    "nan_scores": {"nan_scores": True},
    "degenerate_boxes": {"degenerate": True},
    "duplicate_ann_ids": {"dup_ids": True},
    "float_coords_crowds": {"int_coords": False, "crowd_p": 0.4},
}
PARAMS = {
    "default": None,
    "useCats0": {"useCats": 0},
    "maxDets": {"maxDets": [5, 1, 3]},
    "iouThrs": {"iouThrs": np.array([0.3, 0.5, 0.99, 1.0])},
    "areaRng": {"areaRng": [[0, 1e10], [1024, 9216], [0, 0], [10, 20]]},
    "recThrs": {"recThrs": np.linspace(0, 1, 11)},
    "imgIds_subset": {"imgIds": [3, 1, 5, 5, 7, 99]},
    "catIds_subset": {"catIds": [2, 1, 2]},
    "useCats0_catIds_repeated": {"useCats": 0, "catIds": [3, 1, 3]},
    "recThrs_unsorted": {"recThrs": np.array([0.5, 0.0, 1.0, 0.25, 0.99])},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("params", list(PARAMS))
@pytest.mark.parametrize("seed", range(6))
def test_random_datasets_bit_exact(seed, variant, params):
    gt, dt = random_dataset(seed, **VARIANTS[variant])
    ref = run_eval(REF, gt, dt, "bbox", PARAMS[params])
    ours = run_eval(fm, gt, dt, "bbox", PARAMS[params])
    assert_same_eval(ours, ref)


@pytest.mark.parametrize("seed", range(3))
def test_larger_random_dataset(seed):
    gt, dt = random_dataset(100 + seed, n_images=150, n_cats=12, max_gt=10, max_dt=120)
    assert_same_eval(run_eval(fm, gt, dt, "bbox"), run_eval(REF, gt, dt, "bbox"))


def test_quirks_are_exercised():
    """The generator really produces the cases the bit-exact tests claim to cover."""
    gt, dt = random_dataset(0)
    anns = gt["annotations"]
    assert any(a["id"] == 0 for a in anns)
    assert any(a["iscrowd"] for a in anns)
    assert any(a["area"] in (1024.0, 9216.0) for a in anns)
    scores = [d["score"] for d in dt]
    assert len(scores) > len(set(scores))  # ties
    assert any(d["category_id"] == 5 for d in dt)  # a category without GT


def test_gt_id_zero_counts_as_unmatched():
    """One image, one GT with id 0 and a perfect detection: pycocotools reads the match as dtm == 0,
    i.e. a false positive, so AP is 0 (and 1 when the same GT has id 1)."""
    for gt_id, want in ((0, 0.0), (1, 1.0)):
        gt = {
            "images": [{"id": 1, "height": 10, "width": 10}],
            "categories": [{"id": 1}],
            "annotations": [
                {"id": gt_id, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}
            ],
        }
        dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}]
        ours, ref = run_eval(fm, gt, dt, "bbox"), run_eval(REF, gt, dt, "bbox")
        assert_same_eval(ours, ref)
        assert ours.stats[1] == pytest.approx(want, abs=1e-12)  # 1 / (1 + eps) for the perfect match


def test_iou_equal_to_threshold_matches():
    # IoU exactly 0.5: a 10x10 GT and a 10x5 detection inside it
    gt = {
        "images": [{"id": 1, "height": 20, "width": 20}],
        "categories": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}],
    }
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 5], "score": 0.5}]
    ours = run_eval(fm, gt, dt, "bbox")
    assert_same_eval(ours, run_eval(REF, gt, dt, "bbox"))
    assert ours.eval["recall"][0, 0, 0, 2] == 1.0 and ours.eval["recall"][1, 0, 0, 2] == 0.0


def test_no_detections_and_no_ground_truth():
    gt, _ = random_dataset(1)
    # results of one image only: other images have GT but no detections
    dt = [{"image_id": gt["images"][0]["id"], "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.3}]
    assert_same_eval(run_eval(fm, gt, dt, "bbox"), run_eval(REF, gt, dt, "bbox"))
    # an empty result list: pycocotools raises IndexError; we give AP 0 where GT exist
    E = run_eval(fm, gt, [], "bbox")
    assert E.stats[0] == 0.0 and E.stats[8] == 0.0
    # no GT at all: every cell -1
    gt_empty = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
    ours, ref = run_eval(fm, gt_empty, dt, "bbox"), run_eval(REF, gt_empty, dt, "bbox")
    assert_same_eval(ours, ref)
    assert (ours.stats == -1).all()


def test_unknown_image_ids_raise_as_pycocotools():
    gt, dt = random_dataset(2)
    dt = [*dt, {"image_id": 12345, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.1}]
    with pytest.raises(AssertionError, match="do not correspond"):
        fm.COCO(gt).loadRes(dt)


def test_bad_bbox_raises_clearly():
    gt, dt = random_dataset(3)
    dt[0]["bbox"] = [1, 2, 3]
    with pytest.raises(ValueError, match="bbox"):
        fm.COCO(gt).loadRes(dt)
    # a GT box of the wrong length: at evaluate()
    gt["annotations"][0]["bbox"] = [1, 2]
    cg = fm.COCO(gt)
    E = fm.COCOeval(cg, cg.loadRes(random_dataset(3)[1]), "bbox")
    with pytest.raises(ValueError, match="bbox"):
        E.evaluate()


def test_accumulate_before_evaluate_raises():
    gt, dt = random_dataset(4)
    cg = fm.COCO(gt)
    E = fm.COCOeval(cg, cg.loadRes(dt), "bbox")
    with pytest.raises(RuntimeError, match="evaluate"):
        E.accumulate()


def test_params_and_loadres_match_pycocotools():
    gt, dt = random_dataset(5)
    ours, ref = fm.COCO(gt), RefCOCO()
    ref.dataset = gt
    ref.createIndex()
    p, q = fm.COCOeval(iouType="bbox").params, RefCOCOeval(iouType="bbox").params
    for name in ("iouThrs", "recThrs"):
        assert getattr(p, name).tobytes() == getattr(q, name).tobytes()
    assert (p.maxDets, p.areaRng, p.areaRngLbl, p.useCats) == (q.maxDets, q.areaRng, q.areaRngLbl, q.useCats)
    import copy

    r1, r2 = ours.loadRes(copy.deepcopy(dt)), ref.loadRes(copy.deepcopy(dt))
    assert r1.dataset["annotations"] == r2.dataset["annotations"] or all(
        {k: v for k, v in a.items() if k != "segmentation"} == {k: v for k, v in b.items() if k != "segmentation"}
        for a, b in zip(r1.dataset["annotations"], r2.dataset["annotations"])
    )
    assert sorted(ours.getImgIds()) == sorted(ref.getImgIds())
    assert ours.getAnnIds(imgIds=[1, 2], catIds=[1]) == ref.getAnnIds(imgIds=[1, 2], catIds=[1])
    assert ours.getCatIds(catNms=["c2"]) == ref.getCatIds(catNms=["c2"])


# ---- the ops themselves --------------------------------------------------------------------------


def _tiny_op_inputs():
    f64, i64 = torch.float64, torch.int64
    return (
        torch.tensor([0, 2], dtype=i64),
        torch.tensor([[0, 0, 10, 10], [20, 20, 5, 5]], dtype=f64),
        torch.tensor([100.0, 25.0], dtype=f64),
        torch.tensor([False, True]),
        torch.tensor([False, True]),
        torch.tensor([1, 2], dtype=i64),
        torch.tensor([0, 3], dtype=i64),
        torch.tensor([2, 0, 1], dtype=i64),  # dt_rows: the group's detections are rows 2, 0, 1
        torch.tensor([[21, 21, 2, 2], [50, 50, 3, 3], [0, 0, 10, 9]], dtype=f64),
        torch.tensor([4.0, 9.0, 90.0], dtype=f64),
        torch.tensor([0.8, 0.7, 0.9], dtype=f64),
        torch.tensor([2, 3, 1], dtype=i64),
        None,
        None,
        torch.tensor([0.5, 0.75], dtype=f64),
        torch.tensor([[0, 1e10], [0, 50]], dtype=f64),
        100,
        False,
    )


def test_opcheck_coco_ops():
    args = _tiny_op_inputs()
    torch.library.opcheck(torch.ops.fastops.coco_evaluate.default, args, test_utils=("test_schema", "test_faketensor"))
    det_off, det_index, det_score, det_flags, npos, _ = torch.ops.fastops.coco_evaluate(*args)
    assert det_index.tolist() == [0, 1, 2] and det_score.tolist() == [0.9, 0.8, 0.7]
    # det 0 matches GT 1 at both thresholds (IoU 0.9); det 1 lies in the crowd GT: ignored
    assert det_flags[0, 0, :].tolist() == [1, 1] and (det_flags[1, 0, :] & 2).all()
    # the same without dt_rows, the columns given in group order
    same = list(args)
    same[7], same[8] = None, args[8][args[7]]
    same[9], same[10], same[11] = args[9][args[7]], args[10][args[7]], args[11][args[7]]
    again = torch.ops.fastops.coco_evaluate(*same)
    assert all(torch.equal(x, y) for x, y in zip(again, torch.ops.fastops.coco_evaluate(*args)))
    acc_args = (
        det_off,
        args[0],
        det_score,
        det_flags,
        npos,
        1,
        torch.tensor([0]),
        torch.tensor([0, 1]),
        torch.tensor([1, 100]),
        torch.tensor([0]),
        torch.linspace(0, 1, 11, dtype=torch.float64),
        2,
        1,
        2,
        2,
    )
    torch.library.opcheck(
        torch.ops.fastops.coco_accumulate.default, acc_args, test_utils=("test_schema", "test_faketensor")
    )


def test_op_input_errors_name_the_argument():
    args = list(_tiny_op_inputs())
    bad = list(args)
    bad[1] = args[1].float()
    with pytest.raises(TypeError, match="gt_boxes"):
        torch.ops.fastops.coco_evaluate(*bad)
    bad = list(args)
    bad[6] = torch.tensor([0, 4])
    with pytest.raises(ValueError, match="dt_offsets"):
        torch.ops.fastops.coco_evaluate(*bad)
    bad = list(args)
    bad[3] = torch.tensor([0, 1], dtype=torch.uint8)
    with pytest.raises(TypeError, match="gt_crowd"):
        torch.ops.fastops.coco_evaluate(*bad)
    bad = list(args)
    bad[7] = torch.tensor([2, 0, 3])
    with pytest.raises(IndexError, match="dt_rows"):
        torch.ops.fastops.coco_evaluate(*bad)
    bad = list(args)
    bad[9] = torch.tensor([4.0, 0, 9.0, 0, 90.0], dtype=torch.float64)[::2]  # not contiguous
    with pytest.raises(ValueError, match="dt_area must be contiguous"):
        torch.ops.fastops.coco_evaluate(*bad)


def test_same_bits_on_every_isa():
    gt, dt = random_dataset(7, n_images=40, max_dt=30)
    results = []
    for isa in ("default", "avx2", "avx512"):
        fastops_isa = __import__("fastops").set_cpu_isa(isa)
        E = run_eval(fm, gt, dt, "bbox")
        results.append((fastops_isa, E))
    __import__("fastops").set_cpu_isa("avx512")
    for _, E in results[1:]:
        assert_same_eval(E, results[0][1])
    assert not math.isnan(results[0][1].stats[0])


def test_torch_compile_fullgraph_accumulate():
    """coco_accumulate has static output shapes: it traces under torch.compile(fullgraph=True)."""
    args = _tiny_op_inputs()
    det_off, _, det_score, det_flags, npos, _ = torch.ops.fastops.coco_evaluate(*args)
    acc_args = (
        det_off,
        args[0],
        det_score,
        det_flags,
        npos,
        1,
        torch.tensor([0]),
        torch.tensor([0, 1]),
        torch.tensor([1, 100]),
        torch.tensor([0]),
        torch.linspace(0, 1, 11, dtype=torch.float64),
        2,
        1,
        2,
        2,
    )

    def f(*a):
        precision, recall, _ = torch.ops.fastops.coco_accumulate(*a)
        return precision.clamp(min=0).sum() + recall.sum()

    eager = f(*acc_args)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")(*acc_args)
    assert torch.equal(eager, compiled)


def test_ignore_key_is_replaced_by_iscrowd():
    """pycocotools overwrites a GT's own 'ignore' with its iscrowd: ignore=1 on a regular GT counts."""
    gt, dt = random_dataset(11)
    for i, a in enumerate(gt["annotations"]):
        a["ignore"] = int(i % 2 == 0)
    ours, ref = run_eval(fm, gt, dt, "bbox"), run_eval(REF, gt, dt, "bbox")
    assert_same_eval(ours, ref)
    gt2 = {**gt, "annotations": [{k: v for k, v in a.items() if k != "ignore"} for a in gt["annotations"]]}
    assert np.array_equal(run_eval(fm, gt2, dt, "bbox").stats, ours.stats)


def test_loadres_decides_from_the_first_result():
    """The first result has a bbox: every result's area is w * h, even one that carries a segmentation
    (evaluated as bbox here); results after it without 'bbox' are an error in both libraries."""
    gt, dt = random_dataset(12)
    dt[1]["segmentation"] = [[0, 0, 1, 0, 1, 1]]
    dt[2]["area"] = 12345.0  # overwritten by w * h
    ours, ref = run_eval(fm, gt, dt, "bbox"), run_eval(REF, gt, dt, "bbox")
    assert_same_eval(ours, ref)
    cg = fm.COCO(gt)
    res = cg.loadRes([dict(d) for d in dt])
    assert res.anns[3]["area"] == dt[2]["bbox"][2] * dt[2]["bbox"][3]
    assert [a["id"] for a in res.dataset["annotations"]] == list(range(1, len(dt) + 1))


def test_numpy_results_array():
    gt, dt = random_dataset(13, nan_scores=False)
    cats = {c["id"] for c in gt["categories"]}
    arr = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in dt if d["category_id"] in cats])
    cg, rg = fm.COCO(gt), RefCOCO()
    rg.dataset = gt
    rg.createIndex()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        E1 = fm.COCOeval(cg, cg.loadRes(arr), "bbox")
        E2 = RefCOCOeval(rg, rg.loadRes(arr), "bbox")
        for E in (E1, E2):
            E.evaluate()
            E.accumulate()
            E.summarize()
    assert_same_eval(E1, E2)


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(
    seed=st.integers(0, 2**31 - 1),
    nan_scores=st.booleans(),
    degenerate=st.booleans(),
    dup_ids=st.booleans(),
    int_coords=st.booleans(),
    crowd_p=st.sampled_from([0.0, 0.15, 0.6]),
    use_cats=st.booleans(),
    max_dets=st.sampled_from([[1, 10, 100], [1, 2, 3], [0, 5, 7]]),
)
def test_hypothesis_random_datasets_bit_exact(
    seed, nan_scores, degenerate, dup_ids, int_coords, crowd_p, use_cats, max_dets
):
    gt, dt = random_dataset(
        seed,
        n_images=6,
        nan_scores=nan_scores,
        degenerate=degenerate,
        dup_ids=dup_ids,
        int_coords=int_coords,
        crowd_p=crowd_p,
    )
    params = {"useCats": int(use_cats), "maxDets": max_dets}
    assert_same_eval(run_eval(fm, gt, dt, "bbox", params), run_eval(REF, gt, dt, "bbox", params))


def test_accumulate_with_other_params():
    """accumulate(p) with a subset of categories, area ranges and maxDets of the evaluated ones
    (pycocotools maps them onto its evaluated cells)."""
    import contextlib
    import copy
    import io

    gt, dt = random_dataset(21)
    results = []
    for mod in (fm, REF):
        with contextlib.redirect_stdout(io.StringIO()):
            cg = mod.COCO()
            cg.dataset = copy.deepcopy(gt)
            cg.createIndex()
            E = mod.COCOeval(cg, cg.loadRes(copy.deepcopy(dt)), "bbox")
            E.evaluate()
            p = copy.deepcopy(E.params)
            p.catIds = [1, 3]
            p.maxDets = [1, 100]
            p.areaRng = [p.areaRng[0], p.areaRng[2]]
            p.areaRngLbl = ["all", "medium"]
            E.accumulate(p)
        results.append(E)
    for key in ("precision", "recall", "scores"):
        assert results[0].eval[key].tobytes() == results[1].eval[key].tobytes(), key
        assert results[0].eval[key].shape == results[1].eval[key].shape


def test_same_bits_for_any_thread_count():
    gt, dt = random_dataset(22, n_images=60, max_dt=40)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_eval(fm, gt, dt, "bbox")
        torch.set_num_threads(max(2, before))
        many = run_eval(fm, gt, dt, "bbox")
    finally:
        torch.set_num_threads(before)
    assert_same_eval(one, many)


def test_accepts_pycocotools_coco_objects():
    """COCOeval takes pycocotools' COCO objects too (their dataset dicts are read)."""
    import contextlib
    import copy
    import io

    gt, dt = random_dataset(23)
    with contextlib.redirect_stdout(io.StringIO()):
        rg = RefCOCO()
        rg.dataset = copy.deepcopy(gt)
        rg.createIndex()
        rd = rg.loadRes(copy.deepcopy(dt))
        E = fm.COCOeval(rg, rd, "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    assert_same_eval(E, run_eval(REF, gt, dt, "bbox"))
    with pytest.raises(TypeError, match="COCO object"):
        fm.COCOeval(object(), None, "bbox")


def _same_eval_imgs(ours, ref):
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert (a is None) == (b is None)
        if a is None:
            continue
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(b[key], np.ndarray):
                assert np.array_equal(a[key], b[key]) and a[key].shape == b[key].shape, key
            else:
                assert list(a[key]) == list(b[key]) if isinstance(b[key], list) else a[key] == b[key], key


@pytest.mark.parametrize("variant", ["plain", "duplicate_ann_ids", "float_coords_crowds"])
@pytest.mark.parametrize("params", ["default", "useCats0", "maxDets"])
def test_eval_imgs_equal_pycocotools(variant, params):
    gt, dt = random_dataset(31, **VARIANTS[variant])
    ours, ref = run_eval(fm, gt, dt, "bbox", PARAMS[params]), run_eval(REF, gt, dt, "bbox", PARAMS[params])
    _same_eval_imgs(ours.evalImgs, ref.evalImgs)


def test_eval_imgs_segm():
    from test_coco_mask import segm_dataset

    gt, dt = segm_dataset(2)
    _same_eval_imgs(run_eval(fm, gt, dt, "segm").evalImgs, run_eval(REF, gt, dt, "segm").evalImgs)


def test_no_images_or_no_categories():
    """Degenerate datasets evaluate to all -1, as pycocotools (which cannot run the first one)."""
    for gt in (
        {"images": [], "annotations": [], "categories": [{"id": 1}]},
        {"images": [{"id": 1}], "annotations": [], "categories": []},
    ):
        E = run_eval(fm, gt, [], "bbox")
        assert (E.stats == -1).all()
        assert (E.eval["precision"] == -1).all() and E.eval["precision"].shape[2] == len(gt["categories"])


def test_concurrent_threads_give_the_sequential_results():
    """Evaluations from several Python threads at once (the ops' parallel loops share their work
    counters with no other call; one ground-truth object shared by every thread, its cached state
    built by whichever thread comes first) equal the same evaluations run one after another."""
    gt, _ = random_dataset(30, n_images=150, max_gt=8, max_dt=30)
    kgt, _ = random_keypoint_dataset(31, n_images=60)
    jobs = [("bbox", random_dataset(30, n_images=150, max_gt=8, max_dt=30 + s)[1]) for s in range(4)]
    jobs += [("keypoints", random_keypoint_dataset(31 + s, n_images=60)[1]) for s in range(0, 3)]

    def run(shared, job):
        iou_type, dt = job
        with contextlib.redirect_stdout(io.StringIO()):
            E = fm.COCOeval(shared[iou_type], shared[iou_type].loadRes(dt), iou_type)
            E.evaluate()
            E.accumulate()
            E.summarize()
        return E

    def fresh():
        return {"bbox": fm.COCO(gt), "keypoints": fm.COCO(kgt)}

    alone = [run(fresh(), job) for job in jobs]
    shared = fresh()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(2):
            together = list(pool.map(lambda job: run(shared, job), jobs * 2))
            for ours, want in zip(together, alone * 2):
                assert_same_eval(ours, want)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_memory_flat_over_repeated_evaluations():
    """Hundreds of epochs (new results each, from dicts, arrays and keypoint lists; one GT object
    kept) leave the process' resident memory where the first epochs put it: nothing is kept per
    call and the readers drop every reference they take."""

    gt, dt = random_dataset(40, n_images=40, max_dt=30)
    kgt, kdt = random_keypoint_dataset(41, n_images=30)
    cg, kcg = fm.COCO(gt), fm.COCO(kgt)
    arr = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in dt])

    def epoch():
        with contextlib.redirect_stdout(io.StringIO()):
            for coco, res, iou_type in (
                (cg, [dict(d) for d in dt], "bbox"),
                (cg, arr.copy(), "bbox"),
                (kcg, [dict(d) for d in kdt], "keypoints"),
            ):
                E = fm.COCOeval(coco, coco.loadRes(res), iou_type)
                E.evaluate()
                E.accumulate()
                E.summarize()

    for _ in range(60):
        epoch()
    before = _rss_bytes()
    for _ in range(400):
        epoch()
    grown = _rss_bytes() - before
    assert grown < 4 << 20, f"resident memory grew by {grown / 2**20:.1f} MB over 400 epochs"
