"""fastops.metrics.mask (RLE API) against pycocotools.mask, bit for bit, and the segm evaluation
against pycocotools on random polygon / RLE datasets."""

import numpy as np
import pytest
import torch
from coco_common import assert_same_eval, random_dataset, run_eval

import fastops.metrics as fm
from fastops.metrics import mask as fmask
from fastops.metrics.rle import RleBatch

pmask = pytest.importorskip("pycocotools.mask")
import types  # noqa: E402

from pycocotools.coco import COCO as RefCOCO  # noqa: E402
from pycocotools.cocoeval import COCOeval as RefCOCOeval  # noqa: E402

REF = types.SimpleNamespace(COCO=RefCOCO, COCOeval=RefCOCOeval)


def random_masks(rng, h, w, n):
    """Blobs, noise, full and empty masks (column-major, as pycocotools wants them)."""
    masks = np.zeros((h, w, n), np.uint8)
    for i in range(n):
        kind = i % 5
        if kind == 0:
            masks[:, :, i] = rng.random((h, w)) < 0.3
        elif kind == 1:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            masks[y0 : y0 + rng.integers(1, h), x0 : x0 + rng.integers(1, w), i] = 1
        elif kind == 2:
            masks[:, :, i] = 1
        elif kind == 3:
            pass
        else:
            yy, xx = np.mgrid[:h, :w]
            masks[:, :, i] = (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 3) ** 2
    return np.asfortranarray(masks)


def random_polygon(rng, h, w, n_points=None):
    n = n_points or int(rng.integers(3, 12))
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(1, max(h, w) / 2, n)
    pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
    if rng.random() < 0.3:
        pts = np.round(pts)  # integer corners: the rasterizer's exact .5 cases
    if rng.random() < 0.2:
        pts = pts * 1.5 - 10  # partly outside the image
    return pts.reshape(-1).tolist()


@pytest.mark.parametrize("seed", range(5))
def test_encode_decode_area_bbox(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    masks = random_masks(rng, h, w, 10)
    ours, ref = fmask.encode(masks), pmask.encode(masks)
    assert ours == ref
    assert fmask.encode(masks[:, :, 0]) == pmask.encode(np.asfortranarray(masks[:, :, 0]))
    dec = fmask.decode(ours)
    assert dec.shape == (h, w, 10) and dec.flags.f_contiguous
    assert np.array_equal(dec, pmask.decode(ref))
    assert np.array_equal(fmask.area(ours), pmask.area(ref)) and fmask.area(ours).dtype == np.uint32
    assert fmask.toBbox(ours).tobytes() == pmask.toBbox(ref).tobytes()
    assert fmask.area(ours[0]) == pmask.area(ref[0])
    assert np.array_equal(fmask.decode(ours[1]), pmask.decode(ref[1]))


@pytest.mark.parametrize("seed", range(5))
def test_merge_and_iou(seed):
    rng = np.random.default_rng(10 + seed)
    h, w = 30, 25
    rles = pmask.encode(random_masks(rng, h, w, 8))
    for intersect in (0, 1):
        assert fmask.merge(rles, intersect) == pmask.merge(rles, intersect)
        assert fmask.merge(rles[:1], intersect) == pmask.merge(rles[:1], intersect)
    crowd = [int(c) for c in rng.integers(0, 2, 5)]
    a, b = fmask.iou(rles[:4], rles[3:], crowd), pmask.iou(rles[:4], rles[3:], crowd)
    assert a.tobytes() == b.tobytes()
    # boxes, crowd and zero-size ones
    boxes = np.concatenate([rng.uniform(0, 20, (6, 2)), rng.uniform(0, 10, (6, 2))], 1)
    boxes[0, 2] = 0
    boxes[1] = boxes[2]
    a = fmask.iou(boxes, boxes[::-1].copy(), [0, 1, 0, 0, 1, 0])
    b = pmask.iou(boxes, boxes[::-1].copy(), [0, 1, 0, 0, 1, 0])
    assert a.tobytes() == b.tobytes()
    assert fmask.iou([], rles, [0] * len(rles)) == pmask.iou([], rles, [0] * len(rles)) == []


def test_iou_of_different_sizes_is_minus_one():
    a = pmask.encode(np.asfortranarray(np.ones((4, 5, 1), np.uint8)))
    b = pmask.encode(np.asfortranarray(np.ones((5, 4, 1), np.uint8)))
    ours, ref = fmask.iou(a, b, [0]), pmask.iou(a, b, [0])
    assert ours.tobytes() == ref.tobytes() and ours[0, 0] in (-1, 0)


@pytest.mark.parametrize("seed", range(8))
def test_polygons_and_boxes(seed):
    rng = np.random.default_rng(20 + seed)
    h, w = int(rng.integers(5, 120)), int(rng.integers(5, 120))
    polys = [random_polygon(rng, h, w) for _ in range(6)]
    assert fmask.frPyObjects(polys, h, w) == pmask.frPyObjects(polys, h, w)
    for bad in (polys[0], [[1.0, 2.0, 3.0, 4.0]]):  # pycocotools raises TypeError for both: so do we
        with pytest.raises(TypeError):
            pmask.frPyObjects(bad, h, w)
        with pytest.raises(TypeError):
            fmask.frPyObjects(bad, h, w)
    assert fmask.merge(fmask.frPyObjects(polys, h, w)) == pmask.merge(pmask.frPyObjects(polys, h, w))
    boxes = np.concatenate([rng.uniform(-5, w, (5, 2)), rng.uniform(0, 40, (5, 2))], 1)
    if seed % 2:
        boxes = np.round(boxes * 2) / 2
    assert fmask.frPyObjects(boxes, h, w) == pmask.frPyObjects(boxes, h, w)
    unc = {"size": [h, w], "counts": [3, 5, 2, h * w - 10]}
    assert fmask.frPyObjects(unc, h, w) == pmask.frPyObjects(unc, h, w)
    assert fmask.frPyObjects([unc, unc], h, w) == pmask.frPyObjects([unc, unc], h, w)


def test_string_round_trip_large_counts():
    # counts beyond 2^16 and deltas that go negative exercise the LEB128 sign handling
    rle = {"size": [700, 900], "counts": [0, 300000, 5, 200000, 7, 700 * 900 - 500012]}
    ours, ref = fmask.frPyObjects(rle, 700, 900), pmask.frPyObjects(rle, 700, 900)
    assert ours == ref
    assert fmask.area(ours) == pmask.area(ref)
    assert fmask.toBbox(ours).tolist() == pmask.toBbox(ref).tolist()


def test_invalid_rle_raises():
    bad = {"size": [2, 2], "counts": pmask.frPyObjects({"size": [4, 4], "counts": [0, 16]}, 4, 4)["counts"]}
    with pytest.raises(ValueError, match="Invalid RLE"):
        fmask.decode(bad)
    with pytest.raises(ValueError):
        fmask.decode([])


def segm_dataset(seed, n_images=8, n_cats=3):
    """Random polygon GT (crowds as uncompressed RLE) and results as compressed RLEs."""
    rng = np.random.default_rng(seed)
    h, w = 60, 80
    gt, _ = random_dataset(seed, n_images=n_images, n_cats=n_cats, max_dt=0)
    for img in gt["images"]:
        img["height"], img["width"] = h, w
    for ann in gt["annotations"]:
        if ann["iscrowd"]:
            m = random_masks(rng, h, w, 5)[:, :, int(rng.integers(0, 5))]
            ann["segmentation"] = {"size": [h, w], "counts": _uncompressed(m)}
        else:
            ann["segmentation"] = [random_polygon(rng, h, w) for _ in range(int(rng.integers(1, 3)))]
        ann["area"] = float(pmask.area(RefCOCO.annToRLE(_fake_coco(gt), ann)))
    dets = []
    for ann in gt["annotations"]:
        for _ in range(int(rng.integers(0, 3))):
            poly = ann["segmentation"] if isinstance(ann["segmentation"], list) else [random_polygon(rng, h, w)]
            jitter = [[v + float(rng.integers(-2, 3)) for v in p] for p in poly]
            rle = pmask.merge(pmask.frPyObjects(jitter, h, w))
            dets.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": ann["category_id"],
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                    "score": float(rng.integers(0, 10)) / 10,
                }
            )
    for img in gt["images"][:3]:
        rle = pmask.merge(pmask.frPyObjects([random_polygon(rng, h, w)], h, w))
        dets.append({"image_id": img["id"], "category_id": 1, "segmentation": rle, "score": 0.33})
    return gt, dets


def _uncompressed(m):
    flat = np.asfortranarray(m).reshape(-1, order="F")
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])))
    return np.diff(np.concatenate([[0], change])).tolist()


def _fake_coco(gt):
    c = RefCOCO()
    c.dataset = gt
    c.createIndex()
    return c


@pytest.mark.parametrize("seed", range(6))
def test_segm_evaluation_bit_exact(seed):
    gt, dt = segm_dataset(seed)
    assert_same_eval(run_eval(fm, gt, dt, "segm"), run_eval(REF, gt, dt, "segm"))


def test_segm_with_bbox_results():
    """Box results evaluated as segm: loadRes makes each box a polygon (pycocotools' rule)."""
    gt, dt = segm_dataset(3)
    boxes = [
        {
            "image_id": d["image_id"],
            "category_id": d["category_id"],
            "bbox": pmask.toBbox(d["segmentation"]).tolist(),
            "score": d["score"],
        }
        for d in dt
    ]
    assert_same_eval(run_eval(fm, gt, boxes, "segm"), run_eval(REF, gt, boxes, "segm"))


def test_rle_ops_opcheck_schema():
    rles = pmask.encode(random_masks(np.random.default_rng(0), 6, 7, 3))
    b = RleBatch.from_objects(rles)
    torch.library.opcheck(torch.ops.fastops.rle_area.default, (b.counts, b.offsets, b.hw), test_utils="test_schema")
    with pytest.raises(TypeError, match="counts"):
        torch.ops.fastops.rle_area(b.counts.long(), b.offsets, b.hw)
    with pytest.raises(ValueError, match="offsets"):
        torch.ops.fastops.rle_area(b.counts, b.offsets + 1, b.hw)


def test_large_batches_chunked_in_parallel_keep_order():
    """Thousands of polygons and strings are converted in parallel chunks; the order and the counts
    must be those of one sequential pass (pycocotools')."""
    rng = np.random.default_rng(99)
    h, w = 50, 60
    polys = [random_polygon(rng, h, w) for _ in range(3000)]
    ours, ref = fmask.frPyObjects(polys, h, w), pmask.frPyObjects(polys, h, w)
    assert ours == ref
    rles = ref * 2  # 6000 strings through the parallel decoder
    # (pycocotools' area() overflows a uint8 past 255 RLEs under numpy 2: ask it in slices)
    assert np.array_equal(
        fmask.area(rles), np.concatenate([pmask.area(rles[i : i + 200]) for i in range(0, 6000, 200)])
    )
    assert fmask.toBbox(rles).tobytes() == pmask.toBbox(rles).tobytes()


def test_opcheck_every_rle_op_and_grouping_ops():
    rng = np.random.default_rng(1)
    objs = pmask.encode(random_masks(rng, 6, 7, 3))
    b = RleBatch.from_objects(objs)
    chars, char_off = torch.ops.fastops.rle_to_string(b.counts, b.offsets, b.hw)
    masks = torch.from_numpy(np.ascontiguousarray(random_masks(rng, 6, 7, 2).transpose(2, 1, 0)))
    crowd = torch.tensor([False, True, False])
    rows = torch.arange(3)
    groups = torch.tensor([0, 3])
    cases = [
        (torch.ops.fastops.rle_encode.default, (masks,)),
        (torch.ops.fastops.rle_from_string.default, (chars, char_off, b.hw)),
        (torch.ops.fastops.rle_to_string.default, (b.counts, b.offsets, b.hw)),
        (
            torch.ops.fastops.rle_from_polygons.default,
            (
                torch.tensor([1.0, 1, 5, 1, 5, 4], dtype=torch.float64),
                torch.tensor([0, 6]),
                torch.tensor([0, 1]),
                torch.tensor([[6, 7]]),
            ),
        ),
        (torch.ops.fastops.rle_merge.default, (b.counts, b.offsets, b.hw, False)),
        (torch.ops.fastops.rle_area.default, (b.counts, b.offsets, b.hw)),
        (torch.ops.fastops.rle_to_bbox.default, (b.counts, b.offsets, b.hw)),
        (torch.ops.fastops.rle_iou.default, (b.counts, b.offsets, b.hw, b.counts, b.offsets, b.hw, crowd)),
        (torch.ops.fastops.rle_decode.default, (b.counts, b.offsets, b.hw)),
        (
            torch.ops.fastops.rle_grouped_iou.default,
            (b.counts, b.offsets, b.hw, rows, groups, b.counts, b.offsets, b.hw, rows, groups, crowd),
        ),
        (
            torch.ops.fastops.coco_group.default,
            (torch.tensor([1, 2, 2, 9]), torch.tensor([3, 3, 4, 3]), torch.tensor([1, 2]), torch.tensor([3, 4])),
        ),
        (
            torch.ops.fastops.voc_match.default,
            (
                torch.tensor([0, 1]),
                torch.tensor([[0.0, 0, 9, 9]], dtype=torch.float64),
                torch.tensor([False]),
                torch.tensor([0, 2]),
                torch.tensor([[0.0, 0, 9, 9], [1.0, 1, 9, 9]], dtype=torch.float64),
                torch.tensor([0, 0]),
                1,
                0.5,
                True,
            ),
        ),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args, test_utils="test_schema")
    rows_, offs = torch.ops.fastops.coco_group(*cases[10][1])
    assert rows_.tolist() == [0, 1, 2] and offs.tolist() == [0, 1, 2, 2, 3]
    tp, fp = torch.ops.fastops.voc_match(*cases[11][1])
    assert tp.tolist() == [1, 0] and fp.tolist() == [0, 1]


# ---- adversarial inputs: far-away vertices, RLEs whose runs do not add up --------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(
    h=st.integers(3, 40),
    w=st.integers(3, 40),
    far=st.sampled_from([10.0, 1e3, 1e5, 2e5]),
    n=st.integers(3, 7),
    seed=st.integers(0, 2**31 - 1),
    rounded=st.booleans(),
)
def test_polygons_with_far_vertices_bit_exact(h, w, far, n, seed, rounded):
    """Vertices far outside the image (pycocotools walks every step of such an edge; we visit only
    the image's columns): the same RLE, for steep, flat and repeated edges on either side."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-far, far, (n, 2))
    pts[0] = rng.uniform(0, w, 2)  # at least one vertex near the image
    if rounded:
        pts = np.round(pts)
    if rng.random() < 0.3:
        pts[1] = pts[0]  # a repeated vertex: a zero-length edge
    polys = [pts.reshape(-1).tolist(), random_polygon(rng, h, w)]
    assert fmask.frPyObjects(polys, h, w) == pmask.frPyObjects(polys, h, w)


def test_polygon_vertex_beyond_the_grid_is_bounded_and_nan_is_rejected():
    """A vertex at 1e7 .. 1e14 costs what a vertex next to the image costs (pycocotools allocates
    in proportion to the coordinate, and past 4e8 overflows its int grid); NaN and inf are an error
    in every path that rasterizes polygons."""
    import time

    h, w = 50, 60
    for far in (1e7, 4.3e8, 1e9, 1e12, 1e14):
        t0 = time.perf_counter()
        # a triangle whose hypotenuse lies far away covers the whole image
        tri = fmask.frPyObjects([[-1.0, -1.0, far, -1.0, -1.0, far]], h, w)[0]
        assert time.perf_counter() - t0 < 1.0
        assert fmask.area(tri) == h * w
        # a horizontal band from -far to +far equals the band drawn from just outside the image
        band = fmask.frPyObjects([[-far, 10.0, far, 10.0, far, 20.5, -far, 20.5]], h, w)[0]
        near = pmask.frPyObjects([[-3.0, 10.0, w + 3.0, 10.0, w + 3.0, 20.5, -3.0, 20.5]], h, w)[0]
        assert band == near
    gt = {
        "images": [{"id": 1, "height": h, "width": w}],
        "categories": [{"id": 1}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 10, 10],
                "area": 100.0,
                "iscrowd": 0,
                "segmentation": [[0.0, 0.0, 1e9, 0.0, 0.0, 1e9]],
            },
        ],
    }
    dt = [{"image_id": 1, "category_id": 1, "segmentation": fmask.encode(np.ones((h, w), np.uint8)), "score": 0.5}]
    assert run_eval(fm, gt, dt, "segm").stats[0] > 0.99  # the far triangle covers the image
    for bad in (float("nan"), float("inf"), -float("inf"), 1e15):
        with pytest.raises(ValueError, match="finite"):
            fmask.frPyObjects([[0.0, 0.0, bad, 0.0, 0.0, 5.0]], h, w)
        with pytest.raises(ValueError, match="finite"):
            fmask.frPyObjects(np.array([[0.0, 0.0, bad, 5.0]]), h, w)
        gt["annotations"][0]["segmentation"] = [[0.0, 0.0, bad, 0.0, 0.0, 5.0]]
        with pytest.raises(ValueError, match="finite"):
            fm.COCO(gt).annToRLE(gt["annotations"][0])
        with pytest.raises(ValueError, match="finite"):
            run_eval(fm, gt, dt, "segm")


def _runs(counts, h, w):
    return fmask.frPyObjects({"size": [h, w], "counts": counts}, h, w)


@pytest.mark.parametrize(
    "counts",
    [[0, 5], [0, 30], [2, 3, 100], [], [0, 19, 1, 4294967295]],
    ids=["short", "long", "overrun", "empty", "wraps"],
)
def test_merge_and_iou_reject_runs_that_do_not_add_up(counts):
    """An RLE whose runs do not add up to h * w: pycocotools' merge and iou loop forever on it (decode
    rejects it); every fastops path that walks two RLEs together raises instead."""
    h, w = 4, 5
    good = fmask.encode(np.ones((h, w), np.uint8))
    bad = _runs(counts, h, w)
    with pytest.raises(ValueError, match="Invalid RLE"):
        fmask.merge([good, bad])
    with pytest.raises(ValueError, match="Invalid RLE"):
        fmask.merge([bad, good], intersect=1)
    with pytest.raises(ValueError, match="Invalid RLE"):
        fmask.iou([good], [bad], [0])
    with pytest.raises(ValueError, match="Invalid RLE"):
        fmask.iou([bad], [good], [1])
    gt = {
        "images": [{"id": 1, "height": h, "width": w}],
        "categories": [{"id": 1}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 5, 4],
                "area": 20.0,
                "iscrowd": 0,
                "segmentation": good,
            },
        ],
    }
    dt = [{"image_id": 1, "category_id": 1, "segmentation": bad, "score": 0.5, "bbox": [0, 0, 5, 4]}]
    with pytest.raises(ValueError, match="Invalid RLE"):
        run_eval(fm, gt, dt, "segm")
    # what pycocotools computes stays computable
    assert fmask.merge([good, good]) == pmask.merge([good, good])
