"""Fuzzing the metric API's inputs: malformed annotation dicts (missing keys, None, strings, lists,
NaN, infinities, bools, huge and fractional numbers), ids that match nothing, wrong types and
shapes, through every entry point (COCO from dicts and files, loadRes, COCOeval for bbox / segm /
keypoints, the mask API, MeanAveragePrecision, voc_evaluate, average_precision). Each input must
give pycocotools' result (bit for bit, where pycocotools gives one) or a clear error, never a crash,
a hang or an error from deep inside. A quick profile runs in the normal suite; FASTOPS_FUZZ=long
runs thousands of examples per property."""

import contextlib
import copy
import io
import json
import os

import numpy as np
import pytest
import torch
from coco_common import assert_same_eval
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastops.metrics as fm

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO as RefCOCO
from pycocotools.cocoeval import COCOeval as RefCOCOeval

FUZZ = settings(
    max_examples=2000 if os.environ.get("FASTOPS_FUZZ") == "long" else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
CLEAR = (ValueError, TypeError, KeyError, AssertionError, IndexError)
MISSING = object()
JUNK = [None, "1", "x", [], {}, [1], float("nan"), float("inf"), -float("inf"), True, 2**70, 1.5, -3, 0]
# one element of a box or keypoint list: other number types (each reader's fast path or fallback) and junk
ELEMENT_JUNK = [True, False, 2**70, -(2**63), np.float64(3.5), np.float32(2.5), np.int64(7), None, "1", [1.0]]


def clear_error(e: BaseException) -> bool:
    """An error a user can act on: one of the expected types, with a message."""
    return isinstance(e, CLEAR) and (bool(str(e)) or isinstance(e, KeyError))


coord = st.one_of(st.integers(0, 60), st.floats(0, 60, allow_nan=False), st.sampled_from([-5.0, 1e9, float("nan")]))
box = st.lists(coord, min_size=4, max_size=4)
kpts = st.lists(st.one_of(st.integers(0, 60), st.floats(0, 60)), min_size=9, max_size=9)
poly = st.lists(st.lists(st.floats(0, 64, allow_nan=False), min_size=6, max_size=10), min_size=1, max_size=2)


@st.composite
def datasets(draw, iou_type):
    """A small well-formed GT and result list (with the legal oddities: ids 2.0 / 2.5, NaN scores and
    coordinates, far boxes, unknown categories), then maybe one box or keypoint element of another
    type, and up to three fields made missing or junk."""
    n_img = draw(st.integers(1, 3))
    images = [{"id": i + 1, "height": 64, "width": 64} for i in range(n_img)]
    cats = [{"id": c + 1} for c in range(draw(st.integers(1, 2)))]
    anns = []
    for j in range(draw(st.integers(0, 4))):
        a = {
            "id": j + 1,
            "image_id": draw(st.sampled_from([1, 2, 3, 2.0, 2.5])),
            "category_id": draw(st.sampled_from([1, 2, 1.0, 1.5, 7])),
            "area": draw(st.floats(0, 5000)),
            "iscrowd": draw(st.sampled_from([0, 0, 0, 1])),
            "bbox": draw(box),
        }
        if iou_type == "segm":
            a["segmentation"] = draw(poly)
        if iou_type == "keypoints":
            a["keypoints"] = draw(kpts)
            a["num_keypoints"] = draw(st.integers(0, 3))
        anns.append(a)
    dets = []
    for _ in range(draw(st.integers(0, 5))):
        d = {
            "image_id": draw(st.sampled_from([1, 1, 2, 1.0])),
            "category_id": draw(st.sampled_from([1, 2, 2.5, 2.0])),
            "score": draw(st.floats(0, 1) | st.just(float("nan"))),
        }
        if iou_type == "keypoints":
            d["keypoints"] = draw(kpts)
        elif iou_type == "segm":
            x, y = draw(st.integers(0, 60)), draw(st.integers(0, 60))
            m = np.zeros((64, 64), np.uint8)
            m[y : y + 4, x : x + 4] = 1
            rle = fm.mask.encode(np.asfortranarray(m))
            d["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
        else:
            d["bbox"] = draw(box)
        dets.append(d)
    if iou_type != "segm":  # a result id beyond the GT's images: pycocotools' assertion
        dets += draw(st.lists(st.just({**(dets[0] if dets else {}), "image_id": 9}), max_size=1))
    gt = {"images": images, "categories": cats, "annotations": anns}
    for _ in range(draw(st.sampled_from([0, 0, 1]))):
        lists = [r[k] for r in anns + dets for k in ("bbox", "keypoints") if isinstance(r.get(k), list) and r[k]]
        if lists:
            target = draw(st.sampled_from(lists))
            target[draw(st.integers(0, len(target) - 1))] = draw(st.sampled_from(ELEMENT_JUNK))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        records = [("images", r) for r in images] + [("categories", r) for r in cats]
        records += [("annotations", r) for r in anns] + [("dets", r) for r in dets]
        _, rec = draw(st.sampled_from(records))
        key = draw(st.sampled_from([*sorted(rec), "id"]))
        value = draw(st.sampled_from([MISSING, *JUNK]))
        if value is MISSING:
            rec.pop(key, None)
        else:
            rec[key] = value
    return gt, dets


def _run(mod, gt, dt, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        cg = mod.COCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        E = mod.COCOeval(cg, cg.loadRes(copy.deepcopy(dt)), iou_type)
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


def _outcome(fn):
    try:
        return fn(), None
    except BaseException as e:
        return None, e


def _pycocotools_safe(gt) -> bool:
    """Inputs pycocotools evaluates without hanging or allocating in proportion to a coordinate."""
    for a in gt["annotations"]:
        s = a.get("segmentation")
        far = lambda p: isinstance(p, list) and any(abs(v) > 1e4 for v in p if isinstance(v, float))
        if isinstance(s, list) and any(far(p) for p in s):
            return False
    return True


@pytest.mark.parametrize("iou_type", ["bbox", "segm", "keypoints"])
@FUZZ
@given(data=st.data())
def test_fuzz_datasets_clear_error_or_pycocotools(iou_type, data, tmp_path_factory):
    gt, dt = data.draw(datasets(iou_type))
    if iou_type == "keypoints":
        sig = {"kpt_oks_sigmas": np.array([0.5, 0.4, 0.3])}
    ours, err = _outcome(lambda: _run(fm, gt, dt, iou_type) if iou_type != "keypoints" else _run_kp(fm, gt, dt, sig))
    if err is not None:
        assert clear_error(err), repr(err)
    if _pycocotools_safe(gt):
        if iou_type == "keypoints":
            ref, _ = _outcome(lambda: _run_kp(_Ref, gt, dt, sig))
        else:
            ref, _ = _outcome(lambda: _run(_Ref, gt, dt, iou_type))
        if ours is not None and ref is not None:
            assert_same_eval(ours, ref)
    # the same through files (what json can write): the same outcome class as from dicts
    try:
        text_gt, text_dt = json.dumps(gt), json.dumps(dt)
    except (TypeError, ValueError):
        return
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "gt.json").write_text(text_gt)
    (folder / "dt.json").write_text(text_dt)

    def from_files():
        cg = fm.COCO(str(folder / "gt.json"))
        E = fm.COCOeval(cg, cg.loadRes(str(folder / "dt.json")), iou_type)
        if iou_type == "keypoints":
            E.params.kpt_oks_sigmas = sig["kpt_oks_sigmas"]
        E.evaluate()
        E.accumulate()
        E.summarize(verbose=False)
        return E

    files, ferr = _outcome(from_files)
    if ferr is not None:
        assert clear_error(ferr), repr(ferr)
    if files is not None and ours is not None:
        assert_same_eval(files, ours)


class _Ref:
    COCO = RefCOCO
    COCOeval = RefCOCOeval


def _run_kp(mod, gt, dt, params):
    with contextlib.redirect_stdout(io.StringIO()):
        cg = mod.COCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        E = mod.COCOeval(cg, cg.loadRes(copy.deepcopy(dt)), "keypoints")
        for k, v in params.items():
            setattr(E.params, k, v)
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


@FUZZ
@given(
    arr=st.lists(
        st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)), min_size=0, max_size=8),
        min_size=0,
        max_size=4,
    )
)
def test_fuzz_result_arrays(arr):
    gt = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}],
    }
    try:
        a = np.array(arr, dtype=np.float64)
    except ValueError:
        a = np.array([1.0])
    _, err = _outcome(lambda: fm.COCOeval(fm.COCO(gt), fm.COCO(gt).loadRes(a), "bbox").evaluate())
    if err is not None:
        assert clear_error(err), repr(err)


RLE_JUNK = [
    {"size": [4, 4], "counts": "0<"},
    {"size": [4, 4], "counts": ""},
    {"size": [4], "counts": "0<"},
    {"size": [-1, 4], "counts": [16]},
    {"size": [4, 4], "counts": [3, 20]},
    {"size": [4, 4], "counts": [-1, 17]},
    {"size": [4, 4], "counts": None},
    {"counts": "0<"},
    {"size": [4, 4]},
    {"size": [4.5, 4], "counts": [16]},
    [],
    None,
    "0<",
]


@FUZZ
@given(
    objs=st.lists(st.sampled_from(range(len(RLE_JUNK) + 2)), min_size=0, max_size=4),
    h=st.integers(0, 6),
    w=st.integers(0, 6),
    poly=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=10),
)
def test_fuzz_mask_api(objs, h, w, poly):
    good = fm.mask.encode(np.asfortranarray(np.eye(4, dtype=np.uint8)))
    items = [copy.deepcopy(RLE_JUNK[i]) if i < len(RLE_JUNK) else dict(good) for i in objs]
    for fn in (
        lambda: fm.mask.merge(items),
        lambda: fm.mask.iou(items, items, [0] * len(items)),
        lambda: fm.mask.area(items),
        lambda: fm.mask.toBbox(items),
        lambda: fm.mask.decode(items),
        lambda: fm.mask.frPyObjects(items, h, w),
        lambda: fm.mask.frPyObjects([poly], h, w),
        lambda: fm.mask.frPyObjects(poly, h, w),
    ):
        _, err = _outcome(fn)
        if err is not None:
            pycocotools_own = type(err) is Exception  # pycocotools' own plain Exceptions, same messages
            assert clear_error(err) or pycocotools_own, repr(err)


tensors = st.one_of(
    st.just(None),
    st.sampled_from(["x", 3, [1, 2]]),
    st.tuples(st.integers(0, 3), st.sampled_from([4, 3, 5])).map(lambda s: torch.rand(*s) * 50),
    st.integers(0, 4).map(lambda n: torch.rand(n)),
    st.integers(0, 4).map(lambda n: torch.randint(0, 3, (n,))),
    st.integers(0, 3).map(lambda n: torch.rand(n, 8, 8) > 0.5),
    st.integers(0, 3).map(lambda n: torch.full((n,), float("nan"))),
)


@FUZZ
@given(
    preds=st.lists(st.dictionaries(st.sampled_from(["boxes", "scores", "labels", "masks"]), tensors), max_size=3),
    target=st.lists(
        st.dictionaries(st.sampled_from(["boxes", "labels", "iscrowd", "area", "masks"]), tensors), max_size=3
    ),
    iou_type=st.sampled_from(["bbox", "segm", ("bbox", "segm")]),
)
def test_fuzz_mean_average_precision(preds, target, iou_type):
    m = fm.MeanAveragePrecision(iou_type=iou_type)
    _, err = _outcome(lambda: m.update(preds, target))
    if err is not None:
        assert clear_error(err), repr(err)
    out, err = _outcome(m.compute)
    if err is not None:
        assert clear_error(err), repr(err)
    else:
        assert all(isinstance(v, torch.Tensor) for v in out.values())


@FUZZ
@given(
    preds=st.lists(st.dictionaries(st.sampled_from(["boxes", "scores", "labels"]), tensors), max_size=3),
    target=st.lists(st.dictionaries(st.sampled_from(["boxes", "labels", "difficult"]), tensors), max_size=3),
    scores=st.lists(st.floats(allow_nan=True), max_size=6),
    labels=st.lists(st.sampled_from([0, 1, 2, True]), max_size=6),
)
def test_fuzz_voc_and_average_precision(preds, target, scores, labels):
    _, err = _outcome(lambda: fm.voc_evaluate(preds, target))
    if err is not None:
        assert clear_error(err), repr(err)
    _, err = _outcome(lambda: fm.average_precision(scores, labels))
    if err is not None:
        assert clear_error(err), repr(err)
