"""The flows users run, bit for bit with pycocotools: ground truth from its JSON file (read by C++,
dicts built on demand), results from a JSON file, a list of dicts or an [N, 7] array, bbox, segm
(RLE results) and keypoints; the ground truth's state kept across epochs with no stale cache; the
file reader on unusual and invalid JSON; ids that are no integers; bad input in every flow."""

import array
import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch
from coco_common import FIXTURE_CASES, FIXTURES, assert_same_eval, load_json, random_dataset, random_keypoint_dataset

import fastops.metrics as fm

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO as RefCOCO  # noqa: E402
from pycocotools.cocoeval import COCOeval as RefCOCOeval  # noqa: E402


def quiet(fn):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def evaluate(E):
    quiet(E.evaluate)
    quiet(E.accumulate)
    quiet(E.summarize)
    return E


def ref_eval(gt, dt, iou_type, params=None):
    """pycocotools on deep copies of dicts (dt: list or array)."""

    def go():
        cg = RefCOCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        E = RefCOCOeval(cg, cg.loadRes(dt if isinstance(dt, np.ndarray) else copy.deepcopy(dt)), iou_type)
        for k, v in (params or {}).items():
            setattr(E.params, k, copy.deepcopy(v))
        return evaluate(E)

    return quiet(go)


def ours(cg, res, iou_type, params=None):
    E = fm.COCOeval(cg, cg.loadRes(res), iou_type)
    for k, v in (params or {}).items():
        setattr(E.params, k, copy.deepcopy(v))
    return evaluate(E)


def write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj, default=lambda b: b.decode()))  # RLE counts given as bytes
    return str(path)


@pytest.mark.parametrize("gt_name,dt_name,iou_type,expected", FIXTURE_CASES, ids=lambda x: str(x)[:24])
def test_fixtures_in_every_flow(gt_name, dt_name, iou_type, expected):
    """GT from its file; results from their file, from a list of dicts and (boxes) from an [N, 7] array."""
    gt, dt = load_json(gt_name), load_json(dt_name)
    want = [float(x) for x in expected.split()]
    ref = ref_eval(gt, dt, iou_type)
    cg = fm.COCO(str(FIXTURES / gt_name))
    for res in (str(FIXTURES / dt_name), copy.deepcopy(dt)):
        E = ours(cg, res, iou_type)
        assert_same_eval(E, ref)
        assert [round(float(s), 12) for s in E.stats] == want
    if iou_type == "bbox":
        arr = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in dt])
        assert_same_eval(ours(cg, arr, "bbox"), ref_eval(gt, arr, "bbox"))


def test_file_gt_builds_pycocotools_dicts_on_demand(tmp_path):
    gt, dt = random_dataset(40)
    gt["info"] = {"year": 2024}
    path = write(tmp_path, "gt.json", gt)
    ref = quiet(lambda: RefCOCO(path))
    cg = fm.COCO(path)
    assert cg.getImgIds() == ref.getImgIds() and cg.getCatIds() == ref.getCatIds()
    assert cg.dataset == ref.dataset
    assert cg.anns == ref.anns and cg.imgs == ref.imgs and cg.cats == ref.cats
    assert dict(cg.imgToAnns) == dict(ref.imgToAnns) and dict(cg.catToImgs) == dict(ref.catToImgs)
    assert cg.getAnnIds(imgIds=[1, 2], catIds=[2]) == ref.getAnnIds(imgIds=[1, 2], catIds=[2])
    # results: pycocotools' loadRes dicts (ids, areas, iscrowd, the box polygons), built on first access
    for res in (write(tmp_path, "dt.json", dt), copy.deepcopy(dt)):
        r_ours = cg.loadRes(res)
        r_ref = quiet(lambda: ref.loadRes(copy.deepcopy(dt)))
        assert r_ours.dataset["annotations"] == r_ref.dataset["annotations"]
        assert r_ours.dataset["categories"] == r_ref.dataset["categories"]
        assert r_ours.dataset["info"] == r_ref.dataset["info"]
        assert r_ours.getImgIds() == r_ref.getImgIds()


def _segm_case(seed):
    from test_coco_mask import segm_dataset

    return segm_dataset(seed)


def test_segm_rle_results_every_flow(tmp_path):
    gt, dt = _segm_case(4)
    gt_path, dt_path = write(tmp_path, "gt.json", gt), write(tmp_path, "dt.json", dt)
    ref = ref_eval(gt, dt, "segm")
    cg = fm.COCO(gt_path)
    for res in (dt_path, copy.deepcopy(dt)):
        assert_same_eval(ours(cg, res, "segm"), ref)
        # segm results evaluated as boxes: their given or mask boxes
        assert_same_eval(ours(cg, res, "bbox"), ref_eval(gt, dt, "bbox"))
    # results that carry their own box (detectron2 writes both): bbox evaluation reads it
    with_box = copy.deepcopy(dt)
    for i, d in enumerate(with_box[1::2]):  # (the first has none: these are segm results)
        d["bbox"] = [float(i % 7), 2.0, 20.0, 15.5]
    for res in (write(tmp_path, "wb.json", with_box), copy.deepcopy(with_box)):
        assert_same_eval(ours(cg, res, "bbox"), ref_eval(gt, with_box, "bbox"))
    r_ref = quiet(lambda: RefCOCO(gt_path).loadRes(copy.deepcopy(dt)))
    r_ours = cg.loadRes(dt_path)
    for a, b in zip(r_ours.dataset["annotations"], r_ref.dataset["annotations"]):
        assert a["area"] == b["area"] and type(a["area"]) is type(b["area"])
        assert np.array_equal(a["bbox"], b["bbox"]) and a["id"] == b["id"] and a["iscrowd"] == b["iscrowd"]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ground_truth_state_reused_and_never_stale(tmp_path, iou_type):
    """One GT object, new detections each epoch: every epoch equals a fresh evaluation (pycocotools'),
    while the GT's grouping is built once; createIndex() or new annotations rebuild it."""
    if iou_type == "segm":
        gt, dt1 = _segm_case(5)
        _, dt2 = _segm_case(6)
        dt2 = [d for d in dt2 if d["image_id"] in {i["id"] for i in gt["images"]}]
    else:
        gt, dt1 = random_dataset(41)
        dt2 = random_dataset(42)[1]
    cg = fm.COCO(write(tmp_path, "gt.json", gt))
    cache = cg.columns().eval_cache
    for epoch, dt in enumerate([dt1, dt2, dt1[: len(dt1) // 2], dt2]):
        assert_same_eval(ours(cg, copy.deepcopy(dt), iou_type), ref_eval(gt, dt, iou_type))
        assert len(cache) == 1, epoch  # built once, reused
    assert cg.columns().eval_cache is cache
    # edited GT: after createIndex() the annotations are read again (as pycocotools reads them)
    cg.dataset["annotations"][0]["iscrowd"] = 1 - cg.dataset["annotations"][0]["iscrowd"]
    cg.createIndex()
    assert cg.columns().eval_cache is not cache
    edited = copy.deepcopy(cg.dataset)
    assert_same_eval(ours(cg, copy.deepcopy(dt1), iou_type), ref_eval(edited, dt1, iou_type))
    # a new annotation list is seen without createIndex()
    cg.dataset["annotations"] = cg.dataset["annotations"][1:]
    edited = copy.deepcopy(cg.dataset)
    assert_same_eval(ours(cg, copy.deepcopy(dt1), iou_type), ref_eval(edited, dt1, iou_type))


def test_other_params_do_not_reuse_a_wrong_state():
    gt, dt = random_dataset(43)
    cg = fm.COCO(copy.deepcopy(gt))
    for params in (None, {"useCats": 0}, {"imgIds": [1, 2, 3]}, {"catIds": [2, 1]}, None):
        assert_same_eval(ours(cg, copy.deepcopy(dt), "bbox", params), ref_eval(gt, dt, "bbox", params))


# ---- the file reader ----------------------------------------------------------------------------


def _read_both(tmp_path, text: str):
    path = tmp_path / "f.json"
    path.write_text(text)
    return fm.COCO(str(path)), quiet(lambda: RefCOCO(str(path)))


def test_reader_unusual_but_valid_json(tmp_path):
    """NaN / Infinity literals, escapes (RLE counts hold backslashes), a BOM, exponents, -0, floats
    that are integers, bools, big integers, repeated keys: the same dicts and the same evaluation as
    pycocotools' json reading."""
    gt, dt = random_dataset(44)
    anns = gt["annotations"]
    text = json.dumps(gt)
    # repeated key (json keeps the last), a big integer and an escaped key: the Python path
    variants = [  # (text, read by C++ rather than json)
        (text, True),
        (text.replace('"iscrowd": 0', '"iscrowd": false', 3).replace('"area": 1024.0', '"area": 1.024E3'), True),
        ("\ufeff" + text, True),
        (text.replace('"width": 240', '"width": 240.0').replace('"category_id": 1,', '"category_id": 1.0,'), True),
        (text.replace('"iscrowd": 0}', '"iscrowd": 0, "iscrowd": 1}', 2), False),  # json keeps the last
        (text.replace('"area": ', '"area": 123456789012345678901234567890, "was": ', 1), False),  # past int64
        (text.replace('"image_id"', '"\\u0069mage_id"'), True),
        (text.replace(", ", ",\n\t ").replace(": ", " :  "), True),
    ]
    from fastops.metrics import cocojson

    for v, by_cpp in variants:
        assert (cocojson.parse(v.encode()) is not None) == by_cpp
        if v.startswith("\ufeff"):  # json.load (pycocotools) refuses a BOM; we skip it
            path = tmp_path / "bom.json"
            path.write_text(v)
            assert fm.COCO(str(path)).getImgIds() == [i["id"] for i in gt["images"]]
            assert fm.COCO(str(path)).dataset == gt
            continue
        ours_coco, ref_coco = _read_both(tmp_path, v)
        assert ours_coco.getImgIds() == ref_coco.getImgIds()
        E = evaluate(fm.COCOeval(ours_coco, ours_coco.loadRes(copy.deepcopy(dt)), "bbox"))
        assert_same_eval(E, ref_eval(ref_coco.dataset, dt, "bbox"))
        assert ours_coco.dataset == ref_coco.dataset
    # NaN and Infinity literals in results (json accepts them; pycocotools sorts NaN scores last)
    dets = copy.deepcopy(dt)
    dets[0]["score"] = float("nan")
    dets[1]["bbox"][2] = float("inf")
    path = tmp_path / "dt.json"
    path.write_text(json.dumps(dets))
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()
    cg = fm.COCO(copy.deepcopy(gt))
    assert_same_eval(evaluate(fm.COCOeval(cg, cg.loadRes(str(path)), "bbox")), ref_eval(gt, dets, "bbox"))
    del anns


def test_reader_rejects_invalid_json(tmp_path):
    for text in ['{"images": [}', '{"a": 1,}', "[1, 2", '{"a": 01}', '{"a": "x\ty"}', "[] []", '{"a": tru}', ""]:
        path = tmp_path / "bad.json"
        path.write_text(text)
        with pytest.raises(ValueError):
            json.loads(text)
        with pytest.raises(ValueError, match="JSON"):
            fm.COCO(str(path))
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises(AssertionError, match="not supported"):
        fm.COCO(str(path))
    gt, _ = random_dataset(45)
    cg = fm.COCO(gt)
    path.write_text('{"annotations": []}')
    with pytest.raises(AssertionError, match="array of objects"):
        cg.loadRes(str(path))


def test_reader_columns_equal_json(tmp_path):
    """The C++ reader's columns are the values json gives (boxes, areas, ids, polygons, RLE strings)."""
    from fastops.metrics import cocojson

    data = (FIXTURES / "instances_val2014_100.json").read_bytes()
    p = cocojson.parse(data)
    ref = json.loads(data)
    anns = ref["annotations"]
    assert p is not None and not p.top_is_list
    assert p.bbox.tolist() == [a["bbox"] for a in anns]
    assert p.anns.col("area")[0].tolist() == [a["area"] for a in anns]
    assert p.anns.python_values("id") == [a["id"] for a in anns]
    polys = [poly for a in anns if isinstance(a["segmentation"], list) for poly in a["segmentation"]]
    assert p.poly_xy.tolist() == [v for poly in polys for v in poly]
    rle_counts = [a["segmentation"]["counts"] for a in anns if isinstance(a["segmentation"], dict)]
    assert len(rle_counts) > 0 and p.rle_counts.size == sum(len(c) for c in rle_counts)
    segm = (FIXTURES / "fakesegm100_results.json").read_bytes()
    q = cocojson.parse(segm)
    strings = b"".join(d["segmentation"]["counts"].encode() for d in json.loads(segm))
    assert q.rle_chars.tobytes() == strings and b"\\" in strings  # escaped backslashes decoded


def _result_file(n: int, caption: str, seed: int = 0) -> bytes:
    """A result file of n detections mixing boxes, polygons, RLE strings, keypoints and captions."""
    rng = np.random.default_rng(seed)
    dets = []
    for i in range(n):
        d = {"image_id": int(i % 97), "category_id": int(i % 5 + 1), "score": float(rng.random())}
        kind = i % 4
        if kind == 0:
            d["bbox"] = [float(v) for v in rng.random(4) * 100]
        elif kind == 1:
            d["segmentation"] = [[float(v) for v in rng.random(8) * 50], [1.5, 2, 3, 4.25, 5, 6]]
        elif kind == 2:
            d["segmentation"] = {"size": [40, 60], "counts": "PPYo0`0"}
        else:
            d["keypoints"] = [float(v) for v in rng.random(6)]
        d["caption"] = caption
        dets.append(d)
    return json.dumps(dets, indent=None if seed % 2 == 0 else 1).encode()


@pytest.mark.parametrize(
    "caption,seed",
    [("a cat", 0), ("a cat", 1), ("}, {", 0), ('"}, {\\"x": [}, {', 1)],  # a cut inside a string is no cut
)
def test_reader_reads_a_large_result_file_in_parts_as_in_one(caption, seed):
    """Result files over 2 MB are read in parts by several threads; the columns equal one thread's."""
    data = _result_file(22_000, caption, seed)
    assert len(data) > (2 << 20)
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.fastops.coco_json_read(buf)
        for n in (2, 3):
            torch.set_num_threads(n)
            parts = torch.ops.fastops.coco_json_read(buf)
            assert len(parts) == len(one)
            for a, b in zip(one, parts):
                assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.nan_to_num(), b.nan_to_num())
        for bad in (data[:-1], data[:-1] + b",]", data.replace(b"{", b"[", 1), data + b"x"):
            torch.set_num_threads(1)
            with pytest.raises(ValueError) as want:
                torch.ops.fastops.coco_json_read(torch.frombuffer(bytearray(bad), dtype=torch.uint8))
            torch.set_num_threads(2)
            with pytest.raises(ValueError) as got:
                torch.ops.fastops.coco_json_read(torch.frombuffer(bytearray(bad), dtype=torch.uint8))
            assert str(got.value) == str(want.value)
    finally:
        torch.set_num_threads(threads)
    from fastops.metrics import cocojson

    p = cocojson.parse(data)
    dets = json.loads(data)
    assert p is not None and p.top_is_list and len(p.bbox) == len(dets)
    assert p.anns.col("score")[0].tolist() == [d["score"] for d in dets]
    assert p.keypoints.tolist() == [v for d in dets for v in d.get("keypoints", [])]
    polygons = [q for d in dets if isinstance(d.get("segmentation"), list) for q in d["segmentation"]]
    assert p.poly_xy.tolist() == [v for q in polygons for v in q]


# ---- ids that are no integers ------------------------------------------------------------------


def _one_box_gt():
    return {
        "images": [{"id": 1, "height": 20, "width": 20}, {"id": 2, "height": 20, "width": 20}],
        "categories": [{"id": 1}, {"id": 2}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 8, 8], "area": 64.0, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [2, 2, 8, 8], "area": 64.0, "iscrowd": 0},
        ],
    }


@pytest.mark.parametrize("source", ["dicts", "file", "array"])
def test_non_integer_ids_match_nothing_as_in_pycocotools(tmp_path, source):
    """A detection with category_id 2.5 is no detection of category 2 (pycocotools: AP 0 there, where
    truncating it gives 1); 2.0 is category 2. Array rows are int()-ed, as pycocotools does."""
    gt = _one_box_gt()
    for cat, want in ((2.5, 0.0), (2.0, 1.0), (2, 1.0)):
        dt = [{"image_id": 1, "category_id": cat, "bbox": [0, 0, 8, 8], "score": 0.9}]
        if source == "file":
            res = write(tmp_path, "dt.json", dt)
        elif source == "array":
            res = np.array([[1, 0, 0, 8, 8, 0.9, cat]])
            want = 1.0  # loadNumpyAnnotations takes int(2.5) = 2
        else:
            res = copy.deepcopy(dt)
        E = ours(fm.COCO(copy.deepcopy(gt)), res, "bbox")
        ref = ref_eval(gt, res if source == "array" else dt, "bbox")
        assert_same_eval(E, ref)
        cell = E.eval["precision"][0, 0, 1, 0, 2]  # category 2, IoU .5, area all, maxDets 100
        assert cell == pytest.approx(want, abs=1e-12)


def test_non_integer_ids_elsewhere(tmp_path):
    gt = _one_box_gt()
    dt = [{"image_id": 1.5, "category_id": 2, "bbox": [0, 0, 8, 8], "score": 0.9}]
    with pytest.raises(AssertionError, match="do not correspond"):
        quiet(lambda: RefCOCO(write(tmp_path, "gt.json", gt)).loadRes(copy.deepcopy(dt)))
    for res in (copy.deepcopy(dt), write(tmp_path, "dt.json", dt)):
        with pytest.raises(AssertionError, match="do not correspond"):
            fm.COCO(copy.deepcopy(gt)).loadRes(res)
    # a GT annotation of image 2.5 or category 1.5 is never evaluated (pycocotools: no such key)
    g2 = copy.deepcopy(gt)
    g2["annotations"][0]["category_id"] = 1.5
    g2["annotations"][1]["image_id"] = 2.5
    ok = [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 8, 8], "score": 0.9}]
    for src in (copy.deepcopy(g2), write(tmp_path, "g2.json", g2)):
        assert_same_eval(ours(fm.COCO(src), copy.deepcopy(ok), "bbox"), ref_eval(g2, ok, "bbox"))
    # what cannot be represented raises clearly: annotation ids, GT image and category ids
    for key, where in (("annotations", "id"), ("images", "id"), ("categories", "id")):
        g3 = copy.deepcopy(gt)
        g3[key][0][where] = 1.5
        for src in (g3, write(tmp_path, "g3.json", g3)):
            with pytest.raises(ValueError, match="integers"):
                ours(fm.COCO(src), copy.deepcopy(ok), "bbox")
    # an annotation's category or image id that is no number is no key either: it matches nothing
    g4 = copy.deepcopy(gt)
    g4["annotations"][0]["category_id"] = "2"
    g4["annotations"][1]["image_id"] = None
    odd = [{"image_id": 1, "category_id": "2", "bbox": [0, 0, 8, 8], "score": 0.9}, *copy.deepcopy(ok)]
    assert_same_eval(ours(fm.COCO(copy.deepcopy(g4)), copy.deepcopy(odd), "bbox"), ref_eval(g4, odd, "bbox"))
    with pytest.raises(AssertionError, match="do not correspond"):
        fm.COCO(copy.deepcopy(gt)).loadRes([{"image_id": "1", "category_id": 2, "bbox": [0, 0, 1, 1], "score": 1}])


# ---- bad input in every flow ----------------------------------------------------------------------


def test_bad_results_in_every_flow(tmp_path):
    gt, dt = random_dataset(46)
    cg = fm.COCO(write(tmp_path, "gt.json", gt))
    unknown = [*copy.deepcopy(dt), {"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]
    for res in (unknown, write(tmp_path, "u.json", unknown), np.array([[999, 0, 0, 1, 1, 0.5, 1]])):
        with pytest.raises(AssertionError, match="do not correspond"):
            cg.loadRes(res)
    # empty results: AP 0 where GT exist (pycocotools raises IndexError)
    for res in ([], write(tmp_path, "e.json", []), np.zeros((0, 7))):
        E = ours(cg, res, "bbox")
        assert E.stats[0] == 0.0
    # NaN scores, negative and zero widths: pycocotools' results
    odd = copy.deepcopy(dt)
    for i, d in enumerate(odd[:12]):
        if i % 3 == 0:
            d["score"] = float("nan")
        elif i % 3 == 1:
            d["bbox"][2] = -abs(d["bbox"][2])
        else:
            d["bbox"][3] = 0.0
    want = ref_eval(gt, odd, "bbox")
    for res in (copy.deepcopy(odd), write(tmp_path, "odd.json", odd)):
        assert_same_eval(ours(cg, res, "bbox"), want)
    arr = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in odd])
    assert_same_eval(ours(cg, arr, "bbox"), ref_eval(gt, arr, "bbox"))
    # malformed boxes and arrays: clear errors
    bad = copy.deepcopy(dt)
    bad[3]["bbox"] = [1, 2, 3]
    for res in (bad, write(tmp_path, "bad.json", bad)):
        with pytest.raises(ValueError, match="bbox"):
            cg.loadRes(res)
    with pytest.raises(ValueError, match="finite"):
        cg.loadRes(np.array([[np.nan, 0, 0, 1, 1, 0.5, 1]]))
    with pytest.raises(AssertionError, match="N, 7"):
        cg.loadRes(np.zeros((3, 6)))
    missing = copy.deepcopy(dt)
    del missing[2]["score"]
    for res in (missing, write(tmp_path, "m.json", missing)):
        E = fm.COCOeval(cg, cg.loadRes(res), "bbox")
        with pytest.raises(KeyError, match="score"):
            E.evaluate()


def test_masks_of_the_wrong_size(tmp_path):
    """An RLE result of another size than its image: IoU -1 with every GT, as pycocotools."""
    gt, dt = _segm_case(7)
    from fastops.metrics import mask

    wrong = copy.deepcopy(dt)
    for d in wrong[::3]:
        m = mask.decode(d["segmentation"])
        rle = mask.encode(np.asfortranarray(m[:-5, :]))
        d["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
    want = ref_eval(gt, wrong, "segm")
    cg = fm.COCO(write(tmp_path, "gt.json", gt))
    for res in (copy.deepcopy(wrong), write(tmp_path, "w.json", wrong)):
        assert_same_eval(ours(cg, res, "segm"), want)
    # an uncompressed RLE or a polygon as a segm result: pycocotools' loadRes fails on them too
    unc = copy.deepcopy(dt)
    unc[0]["segmentation"] = {"size": [60, 80], "counts": [10, 4790]}
    for res in (unc, write(tmp_path, "unc.json", unc)):
        with pytest.raises(TypeError, match="compressed"):
            cg.loadRes(res)


def test_result_lists_of_mixed_number_types():
    """Boxes and keypoints as lists of ints, bools and numpy scalars, keypoints also as tuples: the
    C-API row reader takes floats, ints and bools, numpy takes the rest; both give pycocotools'
    result."""
    gt, dt = random_dataset(21, n_images=20, max_dt=10)
    rng = np.random.default_rng(0)
    for d in dt:
        kind = rng.integers(0, 4)
        if kind == 1:
            d["bbox"] = [round(v) for v in d["bbox"]]
        elif kind == 2:
            d["bbox"] = [True, *d["bbox"][1:]]
        elif kind == 3:
            d["bbox"] = [np.float64(v) for v in d["bbox"]]
    for rows in (dt, [d for d in dt if not isinstance(d["bbox"][0], np.float64)]):
        assert_same_eval(ours(fm.COCO(copy.deepcopy(gt)), copy.deepcopy(rows), "bbox"), ref_eval(gt, rows, "bbox"))

    gt, dt = random_keypoint_dataset(22, n_images=15)
    for i, d in enumerate(dt):
        kp = d["keypoints"]
        kind = i % 5
        if kind == 1:
            d["keypoints"] = tuple(kp)
        elif kind == 2:
            d["keypoints"] = [round(v) for v in kp]
        elif kind == 3:
            d["keypoints"] = [bool(v > 0.5) if j % 3 == 2 else v for j, v in enumerate(kp)]
        elif kind == 4:
            d["keypoints"] = [np.float64(v) for v in kp]
    for rows in (dt, [d for i, d in enumerate(dt) if i % 5 != 4]):
        ref = ref_eval(gt, rows, "keypoints")
        assert_same_eval(ours(fm.COCO(copy.deepcopy(gt)), copy.deepcopy(rows), "keypoints"), ref)
    bad = copy.deepcopy(dt)
    bad[3]["keypoints"] = [str(v) for v in bad[3]["keypoints"]]
    with pytest.raises(TypeError, match="keypoints"):
        fm.COCO(copy.deepcopy(gt)).loadRes(bad)


def test_row_reader_equals_numpy():
    """fastops._C.float_rows: the rows concatenated as numpy converts them, or None (numpy's path)
    for any other row or element type and for lengths that do not add up."""
    from fastops import _C

    rng = np.random.default_rng(1)
    rows = [
        [float(v) for v in rng.normal(0, 1e6, 7)],
        [int(v) for v in rng.integers(-(2**62), 2**62, 5)],
        [True, False, 3, -0.0, float("nan"), float("inf")],
        (1.5, 2**53 + 1),
        [],
    ]
    flat = _C.float_rows(rows, sum(map(len, rows)))
    want = np.concatenate([np.asarray(r, np.float64) for r in rows])
    assert flat.dtype == np.float64 and flat.tobytes() == want.tobytes()
    assert _C.float_rows([], 0).shape == (0,)
    for bad_rows, total in (
        ([[1.0, "2"]], 2),
        ([[1.0, None]], 2),
        ([[1.0, 2**63]], 2),
        ([[1.0, np.float32(2)]], 2),
        ([[1.0, [2.0]]], 2),
        ([np.zeros(2)], 2),
        ([{"a": 1.0}], 1),
        ([[1.0, 2.0]], 1),
        ([[1.0, 2.0]], 3),
    ):
        assert _C.float_rows(bad_rows, total) is None, bad_rows


def test_dict_column_reader_equals_array_and_numpy():
    """fastops._C.dict_columns: ids as array("q") reads them, scores as array("d"), rows as numpy
    converts them; None for a key some dict lacks or holds anything else in."""
    from fastops import _C

    rng = np.random.default_rng(2)
    anns = [
        {
            "image_id": int(rng.integers(-(2**62), 2**62)),
            "score": float(rng.normal()),
            "bbox": [float(v) for v in rng.normal(0, 100, 4)],
        }
        for _ in range(40)
    ]
    anns[3].update(image_id=True, score=7, bbox=[1, 2.5, True, 2**53 + 1])
    anns[4].update(score=np.float64(0.25), bbox=(0.0, -0.0, float("nan"), float("inf")))
    anns[5].update(score=False, bbox=[])
    got = _C.dict_columns(anns, ["image_id"], ["score"], ["bbox"])
    ids = np.frombuffer(array.array("q", [a["image_id"] for a in anns]), np.int64)
    scores = np.frombuffer(array.array("d", [a["score"] for a in anns]), np.float64)
    flat = np.concatenate([np.asarray(a["bbox"], np.float64) for a in anns])
    offsets = np.cumsum([0] + [len(a["bbox"]) for a in anns])
    assert got["image_id"].dtype == np.int64 and got["image_id"].tobytes() == ids.tobytes()
    assert got["score"].tobytes() == scores.tobytes()
    assert got["bbox"][0].tobytes() == flat.tobytes() and got["bbox"][1].tolist() == offsets.tolist()
    empty = _C.dict_columns([], ["image_id"], ["score"], ["bbox"])
    assert empty["image_id"].shape == (0,) and empty["bbox"][1].tolist() == [0]
    for key, value in (
        ("image_id", 2.0),
        ("image_id", 2**63),
        ("image_id", np.int64(2)),
        ("image_id", "2"),
        ("score", None),
        ("score", np.float32(0.5)),
        ("score", "0.5"),
        ("bbox", np.zeros(4)),
        ("bbox", [1.0, "2", 3.0, 4.0]),
        ("bbox", [1.0, np.float32(2)]),
    ):
        bad = copy.deepcopy(anns)
        bad[7][key] = value
        got = _C.dict_columns(bad, ["image_id"], ["score"], ["bbox"])
        assert got[key] is None, (key, value)
        assert all(got[k] is not None for k in ("image_id", "score", "bbox") if k != key)
    missing = copy.deepcopy(anns)
    del missing[9]["score"]
    assert _C.dict_columns(missing, [], ["score"], [])["score"] is None
    assert _C.dict_columns([{"score": 1.0}, 3], [], ["score"], [])["score"] is None


def test_rle_string_reader_equals_the_python_path():
    """fastops._C.rle_strings: the counts (str as UTF-8, bytes as they are) one after the other with
    their sizes, as RleBatch's Python path reads them; None for anything else."""
    from fastops import _C
    from fastops.metrics import rle

    objs = [
        {"size": [4, 5], "counts": "52"},
        {"size": (True, 3), "counts": b"03"},
        {"size": [0, 0], "counts": ""},
        {"size": [2**40, 1], "counts": "\u00e9x"},
    ]
    chars, offsets, hw = _C.rle_strings(objs)
    assert chars.tobytes() == b"5203" + "\u00e9x".encode()
    assert offsets.tolist() == [0, 2, 4, 4, 7] and hw.tolist() == [[4, 5], [1, 3], [0, 0], [2**40, 1]]
    assert [x.tolist() for x in _C.rle_strings([])] == [[], [0], []]
    for bad in (
        {"size": [4, 5]},
        {"counts": "52"},
        {"size": [4.0, 5], "counts": "52"},
        {"size": [4, 5, 1], "counts": "52"},
        {"size": np.array([4, 5]), "counts": "52"},
        {"size": [4, 5], "counts": bytearray(b"52")},
        {"size": [4, 5], "counts": [5, 2]},
        {"size": [4, 5], "counts": "\ud800"},
    ):
        assert _C.rle_strings([objs[0], bad]) is None, bad
    assert _C.rle_strings([objs[0], 3]) is None
    masks = np.asfortranarray((np.random.default_rng(3).random((7, 5, 6)) < 0.5).astype(np.uint8))
    encoded = fm.mask.encode(masks)
    assert (fm.mask.decode(encoded) == masks).all()
    as_str = [{"size": e["size"], "counts": e["counts"].decode()} for e in encoded]
    for objs in (encoded, as_str, [*encoded[:3], *as_str[3:]]):
        fast = rle.RleBatch.from_objects(objs)
        slow = rle.RleBatch.from_objects(tuple(objs))  # not a list: the Python path
        for a, b in zip((fast.counts, fast.offsets, fast.hw), (slow.counts, slow.offsets, slow.hw)):
            assert torch.equal(a, b)
        assert torch.equal(fast.counts, rle.RleBatch.from_objects(encoded).counts)


def test_segm_results_with_a_missing_or_bad_mask_name_it():
    gt = {
        "images": [{"id": 1, "width": 5, "height": 4}],
        "annotations": [],
        "categories": [{"id": 1, "name": "a"}],
    }

    def good():  # new dicts each time: loadRes adds a box to them, as pycocotools does
        return {"image_id": 1, "category_id": 1, "score": 0.5, "segmentation": {"size": [4, 5], "counts": "52"}}

    cg = fm.COCO(gt)
    assert len(cg.loadRes([good(), good()]).getAnnIds()) == 2
    with pytest.raises(KeyError, match="annotation 1 has no 'segmentation'"):
        cg.loadRes([good(), {k: v for k, v in good().items() if k != "segmentation"}])
    with pytest.raises(TypeError, match="size"):
        cg.loadRes([good(), {**good(), "segmentation": {"size": [4], "counts": "52"}}])
    with pytest.raises(TypeError, match="annotation 1 must be a dict"):
        fm.rle.RleBatch.from_objects([good(), 3], "segmentation")
