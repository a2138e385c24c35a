"""Shared pieces of the COCO evaluation tests: the fixture list, a seeded dataset generator that
hits pycocotools' quirks, and running pycocotools and fastops side by side."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "coco"
if not FIXTURES.exists():
    FIXTURES = Path("/work/shared/fixtures/coco")

# (ground truth, results, iouType, expected stats from the fixtures README, 12 decimals)
FIXTURE_CASES = [
    (
        "instances_val2014_100.json",
        "fakebbox100_results.json",
        "bbox",
        "0.504580698725 0.69697272473  0.57298166699  0.585625720941 0.519399694804 0.501397898635 0.386812779646 "
        "0.593679576284 0.595352982878 0.639810962611 0.566420597899 0.564290598291",
    ),
    (
        "instances_val2014_100.json",
        "fakesegm100_results.json",
        "segm",
        "0.319545275858 0.562288397252 0.298926534121 0.3873740316   0.310182724034 0.326933907101 0.268229722571 "
        "0.415448681149 0.41683949922  0.469449862275 0.376759226662 0.381471509972",
    ),
    (
        "sampled_gt_bbox_area.json",
        "sampled_bbox_results.json",
        "bbox",
        "0.503647324363 0.69697272473  0.571667059373 0.593252103003 0.557990667611 0.489363210196 0.386812779646 "
        "0.593679576284 0.595352982878 0.654764189378 0.603130023641 0.553744435596",
    ),
    (
        "edge_gt.json",
        "edge_dt.json",
        "bbox",
        "0.712871287129 0.712871287129 0.712871287129 0.663366336634 1.0 1.0 0.428571428571 0.714285714286 "
        "0.714285714286 0.666666666667 1.0 1.0",
    ),
    (
        "small_gt.json",
        "small_dt.json",
        "bbox",
        "0.694719471947 0.694719471947 0.694719471947 -1.0 0.792079207921 0.0 0.666666666667 0.75 0.75 -1.0 "
        "0.791666666667 0.0",
    ),
    (
        "small_gt.json",
        "small_dt.json",
        "segm",
        "0.694719471947 0.694719471947 0.694719471947 -1.0 0.792079207921 0.0 0.666666666667 0.75 0.75 -1.0 "
        "0.791666666667 0.0",
    ),
]


def load_json(name):
    with open(FIXTURES / name) as f:
        return json.load(f)


def run_eval(module, gt, dt, iou_type, params=None):
    """Runs module's COCO/COCOeval (pycocotools or fastops.metrics) on deep copies; returns the
    COCOeval object. params: dict of Params attributes to set before evaluate()."""
    with contextlib.redirect_stdout(io.StringIO()):
        cg = module.COCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        cd = cg.loadRes(copy.deepcopy(dt))
        E = module.COCOeval(cg, cd, iou_type)
        for k, v in (params or {}).items():
            setattr(E.params, k, copy.deepcopy(v))
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


def assert_same_eval(ours, ref):
    """Bit-identical stats and eval arrays."""
    for key in ("precision", "recall", "scores"):
        a, b = np.asarray(ours.eval[key]), np.asarray(ref.eval[key])
        assert a.shape == b.shape, (key, a.shape, b.shape)
        assert a.dtype == b.dtype == np.float64, key
        diff = np.flatnonzero(a.view(np.int64) != b.view(np.int64))
        assert diff.size == 0, (
            f"{key}: {diff.size} cells differ, first at {np.unravel_index(diff[0], a.shape)}: "
            f"{a.flat[diff[0]]!r} vs {b.flat[diff[0]]!r}"
        )
    sa, sb = np.asarray(ours.stats, np.float64), np.asarray(ref.stats, np.float64)
    assert sa.view(np.int64).tolist() == sb.view(np.int64).tolist(), (sa, sb)
    assert ours.eval["counts"] == ref.eval["counts"]


def random_dataset(
    seed: int,
    *,
    n_images=12,
    n_cats=4,
    max_gt=6,
    max_dt=14,
    crowd_p=0.15,
    id_zero=True,
    nan_scores=False,
    degenerate=False,
    dup_ids=False,
    empty_images=True,
    int_coords=True,
):
    """A small random COCO ground truth and result list meant to hit the evaluator's edge cases:
    crowd regions, tied scores, identical boxes (tied IoU), areas exactly on the 32^2 / 96^2
    boundaries, GT area different from the box area, a GT with id 0, empty images, categories
    without GT and detections for them."""
    rng = np.random.default_rng(seed)
    images = [{"id": int(i), "height": 200, "width": 240} for i in range(1, n_images + 1)]
    if not empty_images:
        pass
    cats = [{"id": int(c), "name": f"c{c}", "supercategory": "x"} for c in range(1, n_cats + 1)]
    anns, dets = [], []

    def rand_box():
        kind = rng.integers(0, 6)
        if kind == 0:
            return [float(rng.integers(0, 150)), float(rng.integers(0, 150)), 32.0, 32.0]  # area 1024
        if kind == 1:
            return [float(rng.integers(0, 100)), float(rng.integers(0, 100)), 96.0, 96.0]  # area 9216
        if int_coords and kind < 4:
            return [float(v) for v in rng.integers(0, 150, 2)] + [float(v) for v in rng.integers(1, 90, 2)]
        return [float(v) for v in rng.uniform(0, 150, 2)] + [float(v) for v in rng.uniform(0.5, 90, 2)]

    next_id = 1
    for img in images:
        if empty_images and rng.random() < 0.15:
            continue
        for _ in range(rng.integers(0, max_gt + 1)):
            box = rand_box()
            area = box[2] * box[3]
            r = rng.random()
            if r < 0.2:
                area = float(rng.choice([1024.0, 9216.0, 1023.0, 9217.0]))
            elif r < 0.3:
                area = area * float(rng.uniform(0.3, 1.0))
            anns.append(
                {
                    "id": next_id,
                    "image_id": img["id"],
                    "category_id": int(rng.integers(1, n_cats + 1)),
                    "bbox": box,
                    "area": area,
                    "iscrowd": int(rng.random() < crowd_p),
                }
            )
            next_id += 1
    if id_zero and anns:
        anns[int(rng.integers(0, len(anns)))]["id"] = 0
    if dup_ids and len(anns) > 3:
        for _ in range(2):
            a, b = rng.integers(0, len(anns), 2)
            anns[int(a)]["id"] = anns[int(b)]["id"]
    for img in images:
        own = [a for a in anns if a["image_id"] == img["id"]]
        for _ in range(rng.integers(0, max_dt + 1)):
            if own and rng.random() < 0.6:
                src = own[int(rng.integers(0, len(own)))]
                box = list(src["bbox"])
                if rng.random() < 0.5:
                    box = [box[0] + float(rng.integers(-4, 5)), box[1] + float(rng.integers(-4, 5)), box[2], box[3]]
                cat = src["category_id"] if rng.random() < 0.85 else int(rng.integers(1, n_cats + 2))
            else:
                box = rand_box()
                cat = int(rng.integers(1, n_cats + 2))  # n_cats + 1: a category the GT does not have
            if degenerate and rng.random() < 0.1:
                box[2] = float(rng.choice([0.0, -3.0]))
            score = float(rng.integers(0, 10)) / 10 if rng.random() < 0.5 else float(rng.random())
            if nan_scores and rng.random() < 0.1:
                score = float("nan")
            dets.append({"image_id": img["id"], "category_id": cat, "bbox": box, "score": score})
    rng.shuffle(dets)
    gt = {"images": images, "annotations": anns, "categories": cats}
    return gt, dets


def random_keypoint_dataset(seed: int, *, n_images=10, n_cats=2, n_kpts=17, max_gt=5, max_dt=8, int_coords=False):
    """A random person-keypoint ground truth and result list hitting computeOks' cases: visible and
    invisible keypoints (v 0 / 1 / 2), GTs without visible keypoints (the box-distance branch) and
    with num_keypoints 0 (ignored), crowds, areas on the 32^2 / 96^2 boundaries, tied scores,
    detections of categories without GT."""
    rng = np.random.default_rng(seed)
    images = [{"id": int(i), "height": 300, "width": 400} for i in range(1, n_images + 1)]
    cats = [{"id": c, "name": f"k{c}", "supercategory": "person"} for c in range(1, n_cats + 1)]
    num = (lambda v: float(round(v))) if int_coords else float
    anns, dets = [], []
    next_id = 1
    for img in images:
        for _ in range(int(rng.integers(0, max_gt + 1))):
            x0, y0 = rng.uniform(0, 300), rng.uniform(0, 200)
            w, h = rng.uniform(4, 120), rng.uniform(4, 150)
            kp = []
            for _ in range(n_kpts):
                v = int(rng.choice([0, 1, 2], p=[0.3, 0.2, 0.5]))
                x, y = (num(x0 + rng.uniform(0, w)), num(y0 + rng.uniform(0, h))) if v else (0.0, 0.0)
                kp += [x, y, v]
            if rng.random() < 0.15:  # no visible keypoint: box distance
                kp = [0.0 if i % 3 == 2 else kp[i] for i in range(len(kp))]
            nk = sum(1 for i in range(2, len(kp), 3) if kp[i] > 0)
            area = float(rng.choice([1024.0, 9216.0, 1023.5, w * h * 0.7])) if rng.random() < 0.3 else w * h * 0.6
            anns.append(
                {
                    "id": next_id,
                    "image_id": img["id"],
                    "category_id": int(rng.integers(1, n_cats + 1)),
                    "bbox": [num(x0), num(y0), num(w), num(h)],
                    "area": area,
                    "iscrowd": int(rng.random() < 0.1),
                    "keypoints": kp,
                    "num_keypoints": nk if rng.random() < 0.9 else 0,
                }
            )
            next_id += 1
    for img in images:
        own = [a for a in anns if a["image_id"] == img["id"]]
        for _ in range(int(rng.integers(0, max_dt + 1))):
            if own and rng.random() < 0.7:
                src = own[int(rng.integers(0, len(own)))]
                sd = float(rng.choice([0.5, 3.0, 15.0]))
                kp = []
                for i in range(n_kpts):
                    gx, gy = src["keypoints"][3 * i], src["keypoints"][3 * i + 1]
                    if gx == 0 and gy == 0:
                        gx, gy = src["bbox"][0] + src["bbox"][2] / 2, src["bbox"][1] + src["bbox"][3] / 2
                    kp += [num(gx + rng.normal(0, sd)), num(gy + rng.normal(0, sd)), float(rng.random())]
                cat = src["category_id"] if rng.random() < 0.9 else int(rng.integers(1, n_cats + 2))
            else:
                cx, cy = rng.uniform(0, 400), rng.uniform(0, 300)
                kp = []
                for _ in range(n_kpts):
                    kp += [num(cx + rng.normal(0, 30)), num(cy + rng.normal(0, 30)), 1.0]
                cat = int(rng.integers(1, n_cats + 2))
            score = float(rng.integers(0, 8)) / 8 if rng.random() < 0.4 else float(rng.random())
            dets.append({"image_id": img["id"], "category_id": cat, "keypoints": kp, "score": score})
    rng.shuffle(dets)
    return {"images": images, "annotations": anns, "categories": cats}, dets
