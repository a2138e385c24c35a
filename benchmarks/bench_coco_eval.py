"""COCO evaluation in the flows users run: fastops.metrics against pycocotools, faster-coco-eval,
hotcoco and ultrafast-pycocotools (whichever are installed), each library in its own process,
every result checked against pycocotools' bit for bit; MeanAveragePrecision against torchmetrics'.

Workload: 5,000 images of 640 x 480, 80 categories, ~35k ground-truth boxes (1% crowd, areas over
small/medium/large) and 140k detections (jittered copies of the GT, wrong classes and random false
positives); for segm every GT is an octagon polygon and every detection the compressed RLE of its
octagon; for keypoints ~10k people with 17 keypoints and ~50k detections.

Flows (the ground truth is read from its JSON file once, ``COCO(path)``; then each epoch brings new
detections, whose loadRes + evaluate + accumulate + summarize is timed):
  dicts   results as a list of dicts (what an evaluation loop builds), bbox
  file    results from their JSON file, loadRes(path) (what tools/eval.py --dt results.json does)
  array   results as a numpy array [N, 7] (image_id, x, y, w, h, score, category_id)
  segm    results as a list of dicts with compressed RLE masks, against polygon GT
  kps     keypoint results as a list of dicts (iouType "keypoints")
Reported per flow and library: per epoch (median of the epochs after the first), first call (the
first epoch: whatever a library converts on first use included) and total (GT load + first call).
Secondary, labelled as such: the repeated call (evaluate again on the same loaded objects, what
benchmarks usually report and no user runs), and the JSON parse of the results file.

Floor: every evaluation sorts the detections by score; numpy's stable argsort of the scores is
reported as a rough floor.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from common import Row, bench_main, run_python, time_ms

NOTES = (
    "Each library runs in its own process, one after the other. Per epoch = loadRes + evaluate + accumulate + "
    "summarize on new result objects, GT loaded once from its JSON file (median of the epochs after the first; "
    "pycocotools: one epoch). first = the first epoch; total = GT load + first epoch. 'exact' = the 12 (10) stats "
    "equal pycocotools' bit for bit in every epoch."
)

FLOWS = {"dicts": "bbox", "file": "bbox", "array": "bbox", "segm": "segm", "kps": "keypoints"}
W, H = 640, 480


# ---- data ---------------------------------------------------------------------------------------
def _octagon(b):
    x0, y0, w, h = b
    fx = [0.3, 0.7, 1, 1, 0.7, 0.3, 0, 0]
    fy = [0, 0, 0.3, 0.7, 1, 1, 0.7, 0.3]
    return [[round(v, 2) for xy in zip(fx, fy) for v in (x0 + xy[0] * w, y0 + xy[1] * h)]]


def synthetic_coco(n_images: int = 5000, n_cats: int = 80, gt_per_image: float = 7.0, seed: int = 0, masks=False):
    """(gt dataset dict, result list) of the box / mask workload; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": W, "height": H, "file_name": f"{i + 1}.jpg"} for i in range(n_images)]
    cats = [{"id": c + 1, "name": f"class{c + 1}", "supercategory": "thing"} for c in range(n_cats)]
    n_gt = rng.poisson(gt_per_image, n_images)
    img_of_gt = np.repeat(np.arange(1, n_images + 1), n_gt)
    G = img_of_gt.size
    side = np.exp(rng.uniform(np.log(8), np.log(400), (G, 2)))
    x = rng.uniform(0, W - side[:, 0].clip(max=W - 1))
    y = rng.uniform(0, H - side[:, 1].clip(max=H - 1))
    gt_box = np.stack([x, y, side[:, 0], side[:, 1]], 1).round(2)
    gt_cat = rng.integers(1, n_cats + 1, G)
    crowd = rng.random(G) < 0.01
    anns = []
    for i in range(G):
        b = gt_box[i].tolist()
        ann = {
            "id": i + 1,
            "image_id": int(img_of_gt[i]),
            "category_id": int(gt_cat[i]),
            "bbox": b,
            "area": round(b[2] * b[3] * (0.86 if masks else 1.0), 2),
            "iscrowd": int(crowd[i]),
        }
        if masks:
            ann["segmentation"] = _octagon(b)
        anns.append(ann)
    copies = rng.poisson(2.5, G)
    src = np.repeat(np.arange(G), copies)
    jit = gt_box[src].copy()
    jit[:, :2] += rng.normal(0, 0.12, (src.size, 2)) * jit[:, 2:]
    jit[:, 2:] *= np.exp(rng.normal(0, 0.15, (src.size, 2)))
    det_cat = np.where(rng.random(src.size) < 0.9, gt_cat[src], rng.integers(1, n_cats + 1, src.size))
    n_fp = max(0, 28 * n_images - src.size)
    fp_side = np.exp(rng.uniform(np.log(8), np.log(300), (n_fp, 2)))
    fp_box = np.stack([rng.uniform(0, W - 8, n_fp), rng.uniform(0, H - 8, n_fp), fp_side[:, 0], fp_side[:, 1]], 1)
    boxes = np.concatenate([jit, fp_box]).round(2)
    imgs = np.concatenate([img_of_gt[src], rng.integers(1, n_images + 1, n_fp)])
    cls = np.concatenate([det_cat, rng.integers(1, n_cats + 1, n_fp)])
    score = np.concatenate([rng.beta(4, 2, src.size), rng.beta(1.5, 4, n_fp)]).round(5)
    results = [
        {"image_id": im, "category_id": c, "bbox": b, "score": s}
        for b, im, c, s in zip(boxes.tolist(), imgs.tolist(), cls.tolist(), score.tolist())
    ]
    if masks:  # detections as compressed RLEs of their octagons, rasterized in one batch
        from fastops.metrics import rle

        xy = np.concatenate([_octagon(r["bbox"])[0] for r in results])
        n = len(results)
        batch = rle.from_polygons(xy, np.arange(0, 16 * n + 1, 16), np.arange(n + 1), np.tile([H, W], (n, 1)))
        for r, obj in zip(results, batch.to_objects()):
            r["segmentation"] = {"size": obj["size"], "counts": obj["counts"].decode()}
            del r["bbox"]  # segm results: loadRes takes the area and the box from the mask
    return {"images": images, "annotations": anns, "categories": cats}, results


def synthetic_keypoints(n_images: int = 5000, seed: int = 0):
    """(gt, results) of people with 17 keypoints: ~2 per image, ~10 detections per image."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": W, "height": H} for i in range(n_images)]
    cats = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": [f"k{i}" for i in range(17)]}]
    anns, results = [], []
    for img in images:
        people = []
        for _ in range(int(rng.poisson(2.0))):
            w, h = rng.uniform(20, 200), rng.uniform(40, 400)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            kx, ky = rng.uniform(x, x + w, 17).round(1), rng.uniform(y, y + h, 17).round(1)
            v = rng.choice([0, 1, 2], 17, p=[0.3, 0.1, 0.6])
            kp = [float(c) for t in zip(np.where(v > 0, kx, 0), np.where(v > 0, ky, 0), v) for c in t]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "category_id": 1,
                    "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h * 0.6, 2),
                    "iscrowd": int(rng.random() < 0.02),
                    "keypoints": kp,
                    "num_keypoints": int((v > 0).sum()),
                }
            )
            people.append((kx, ky, w * h))
        for _ in range(int(rng.poisson(10))):
            if people and rng.random() < 0.5:
                kx, ky, area = people[int(rng.integers(0, len(people)))]
                sd = np.sqrt(area) * rng.choice([0.01, 0.05, 0.15])
                px, py = kx + rng.normal(0, sd, 17), ky + rng.normal(0, sd, 17)
            else:
                cx, cy = rng.uniform(0, W), rng.uniform(0, H)
                px, py = cx + rng.normal(0, 40, 17), cy + rng.normal(0, 60, 17)
            kp = [round(float(c), 2) for t in zip(px, py, rng.random(17)) for c in t]
            results.append({"image_id": img["id"], "category_id": 1, "keypoints": kp, "score": round(rng.random(), 5)})
    return {"images": images, "annotations": anns, "categories": cats}, results


def write_data(folder: str, n_images: int) -> None:
    for name, (gt, dt) in (
        ("bbox", synthetic_coco(n_images)),
        ("segm", synthetic_coco(n_images, masks=True)),
        ("keypoints", synthetic_keypoints(n_images)),
    ):
        with open(os.path.join(folder, f"gt_{name}.json"), "w") as f:
            json.dump(gt, f)
        with open(os.path.join(folder, f"dt_{name}.json"), "w") as f:
            json.dump(dt, f)


# ---- one library, one flow, in its own process ----------------------------------------------------
def _library(name: str):
    """(COCO class, COCOeval class) of a library."""
    if name == "fastops":
        import fastops.metrics as fm

        return fm.COCO, fm.COCOeval
    if name == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if name == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    if name == "hotcoco":
        import hotcoco

        return hotcoco.COCO, hotcoco.COCOeval
    if name == "ultrafast-pycocotools":
        from ultrafast_pycocotools.coco import COCO
        from ultrafast_pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    raise KeyError(name)


def installed_libraries() -> list[str]:
    out = []
    for name in ("fastops", "pycocotools", "faster-coco-eval", "hotcoco", "ultrafast-pycocotools"):
        try:
            _library(name)
            out.append(name)
        except (ImportError, AttributeError):
            pass
    return out


def _worker(name: str, flow: str, folder: str, epochs: int, repeats: int) -> dict:
    """GT from its file, then `epochs` epochs of new results (and `repeats` repeated calls)."""
    COCO, COCOeval = _library(name)
    iou = FLOWS.get(flow, "bbox")
    gt_path = os.path.join(folder, f"gt_{iou}.json")
    dt_path = os.path.join(folder, f"dt_{iou}.json")
    with open(dt_path) as f:
        dt_text = f.read()
    array = None
    if flow == "array":
        dets = json.loads(dt_text)
        array = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in dets], np.float64)

    def results():  # new result objects every epoch, made outside the timed part
        if flow == "file":
            return dt_path
        if flow == "array":
            return array.copy()
        return json.loads(dt_text)

    out = {"epochs": [], "stats": []}
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        cg = COCO(gt_path)
        out["gt_load_ms"] = (time.perf_counter() - t0) * 1e3
        for _ in range(epochs):
            # the previous epoch's objects (and any result list they hold) are freed outside the
            # timed part, for every library alike
            res = cd = E = None
            res = results()
            t0 = time.perf_counter()
            cd = cg.loadRes(res)
            t1 = time.perf_counter()
            E = COCOeval(cg, cd, iou)
            E.evaluate()
            E.accumulate()
            E.summarize()
            t2 = time.perf_counter()
            out["epochs"].append(((t1 - t0) * 1e3, (t2 - t1) * 1e3))
            out["stats"].append(np.asarray(E.stats, np.float64).tolist())
        out["repeat_ms"] = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            E = COCOeval(cg, cd, iou)
            E.evaluate()
            E.accumulate()
            E.summarize()
            out["repeat_ms"].append((time.perf_counter() - t0) * 1e3)
    return out


def _in_subprocess(name: str, flow: str, folder: str, epochs: int, repeats: int) -> dict:
    proc = run_python([__file__, "--worker", name, flow, folder, str(epochs), str(repeats)], check=False)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- rows -----------------------------------------------------------------------------------------
def _exact(r: dict, ref: dict | None) -> str:
    if ref is None or "stats" not in ref:
        return "no reference"
    want = np.array(ref["stats"][0], np.float64).tobytes()
    if all(np.array(s, np.float64).tobytes() == want for s in r["stats"]):
        return "exact"
    diff = max(float(np.max(np.abs(np.array(s) - np.array(ref["stats"][0])))) for s in r["stats"])
    return f"max abs diff {diff:.1e}"


def _times(r: dict) -> dict:
    ep = [a + b for a, b in r["epochs"]]
    per_epoch = statistics.median(ep[1:]) if len(ep) > 1 else ep[0]
    return {"per_epoch": per_epoch, "first": ep[0], "total": r["gt_load_ms"] + ep[0], "gt_load": r["gt_load_ms"]}


def _flow_rows(flow: str, results: dict, case: str, floor_ms: float) -> list[Row]:
    ours = results.get("fastops")
    if ours is None or "error" in ours:
        print(f"fastops {flow}: {ours}")
        return []
    ref = results.get("pycocotools")
    ref = ref if ref and "error" not in ref else None
    t = _times(ours)
    rows = []
    for name, r in results.items():
        if name == "fastops":
            continue
        if "error" in r:
            rows.append(Row(case, t["per_epoch"], f"{name}: {r['error']}", None))
            continue
        u = _times(r)
        extra = {
            "first_ms": f"{t['first']:.0f} vs {u['first']:.0f}",
            "total_ms": f"{t['total']:.0f} vs {u['total']:.0f}",
            "gt_load_ms": f"{t['gt_load']:.0f} vs {u['gt_load']:.0f}",
            f"{name}": _exact(r, ref),
        }
        if name == "pycocotools":
            extra["fastops"] = _exact(ours, ref)
        label = name + (" (1 epoch)" if name == "pycocotools" else "")
        rows.append(Row(case, t["per_epoch"], label, u["per_epoch"], floor_ms, "argsort of the scores", extra))
    return rows


def _repeat_rows(results: dict, case: str) -> list[Row]:
    ours = results.get("fastops")
    if not ours or "error" in ours or not ours["repeat_ms"]:
        return []
    rows = []
    for name, r in results.items():
        if name == "fastops" or "error" in r or not r["repeat_ms"]:
            continue
        rows.append(Row(case, statistics.median(ours["repeat_ms"]), name, statistics.median(r["repeat_ms"]), extra={}))
    return rows


def _parse_rows(folder: str) -> list[Row]:
    """Secondary: reading the 140k-result JSON file: Python's json against the C++ reader (and orjson
    when installed)."""
    import torch

    import fastops.metrics  # noqa: F401  (loads the ops)

    path = os.path.join(folder, "dt_bbox.json")
    with open(path, "rb") as f:
        data = f.read()
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    ours = time_ms(lambda: torch.ops.fastops.coco_json_read(buf), warmup=1, repeat=5)
    theirs = time_ms(lambda: json.loads(data), warmup=1, repeat=5)
    rows = [Row(f"secondary: parse the results file ({len(data) >> 20} MB)", ours, "json.loads", theirs)]
    try:
        import orjson

        rows.append(Row(rows[0].case, ours, "orjson.loads", time_ms(lambda: orjson.loads(data), warmup=1, repeat=5)))
    except ImportError:
        rows[0].extra["orjson"] = "not installed"
    return rows


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    n_images = 500 if quick else 5000
    epochs = 3 if quick else 6
    names = installed_libraries()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        write_data(folder, n_images)
        sizes = {}
        for iou in ("bbox", "segm", "keypoints"):
            with open(os.path.join(folder, f"gt_{iou}.json")) as f:
                g = json.load(f)
            with open(os.path.join(folder, f"dt_{iou}.json")) as f:
                d = json.load(f)
            scores = np.array([x["score"] for x in d])
            floor = time_ms(lambda s=scores: np.argsort(-s, kind="stable"), repeat=5)
            sizes[iou] = (len(g["annotations"]), len(d), floor)
        for flow, iou in FLOWS.items():
            n_gt, n_dt, floor = sizes[iou]
            case = f"{flow}: {iou}, {n_images} images, {n_gt} GT, {n_dt} dets, per epoch"
            results = {n: _in_subprocess(n, flow, folder, 1 if n == "pycocotools" else epochs, 0) for n in names}
            rows += _flow_rows(flow, results, case, floor)
        for iou in ("bbox", "segm"):
            results = {
                n: _in_subprocess(n, "dicts" if iou == "bbox" else "segm", folder, 1, 3 if quick else 7)
                for n in names
                if n != "pycocotools"
            }
            rows += _repeat_rows(results, f"secondary: repeated call on loaded objects ({iou}; no user runs this)")
        rows += _parse_rows(folder)
    rows += _metric_rows(quick)
    return rows


# ---- MeanAveragePrecision -------------------------------------------------------------------------
def _to_tensors(gt, dt):
    import torch

    by_img_gt, by_img_dt = {}, {}
    for a in gt["annotations"]:
        by_img_gt.setdefault(a["image_id"], []).append(a)
    for d in dt:
        by_img_dt.setdefault(d["image_id"], []).append(d)
    preds, targets = [], []
    for img in gt["images"]:
        g = by_img_gt.get(img["id"], [])
        d = by_img_dt.get(img["id"], [])
        targets.append(
            {
                "boxes": torch.tensor([a["bbox"] for a in g], dtype=torch.float64).reshape(-1, 4),
                "labels": torch.tensor([a["category_id"] for a in g], dtype=torch.int64),
                "iscrowd": torch.tensor([a["iscrowd"] for a in g], dtype=torch.int64),
                "area": torch.tensor([a["area"] for a in g], dtype=torch.float64),
            }
        )
        preds.append(
            {
                "boxes": torch.tensor([x["bbox"] for x in d], dtype=torch.float64).reshape(-1, 4),
                "scores": torch.tensor([x["score"] for x in d], dtype=torch.float64),
                "labels": torch.tensor([x["category_id"] for x in d], dtype=torch.int64),
            }
        )
    return preds, targets


def _metric_rows(quick: bool) -> list[Row]:
    """tensors: MeanAveragePrecision update (one image per call) + compute, against torchmetrics."""
    import fastops.metrics as fm

    n_images = 500 if quick else 5000
    gt, dt = synthetic_coco(n_images=n_images)
    preds, targets = _to_tensors(gt, dt)

    def ours():
        m = fm.MeanAveragePrecision(box_format="xywh", iou_type="bbox")
        for p, t in zip(preds, targets):
            m.update([p], [t])
        return m.compute()

    ours_ms = time_ms(ours, warmup=1, repeat=3)
    rows = []
    for backend in ("faster_coco_eval", "pycocotools"):
        ref_ms, note = None, {}
        try:
            from torchmetrics.detection import MeanAveragePrecision as TM

            def theirs(backend=backend):
                m = TM(box_format="xywh", iou_type="bbox", backend=backend)
                for p, t in zip(preds, targets):
                    m.update([p], [t])
                return m.compute()

            ref_ms = time_ms(theirs, warmup=0, repeat=1)
        except Exception as e:
            note = {"error": repr(e)[:120]}
        rows.append(
            Row(
                f"tensors: MeanAveragePrecision update (1 image per call) + compute, {n_images} images",
                ours_ms,
                f"torchmetrics ({backend} backend, 1 run)",
                ref_ms,
                extra=note,
            )
        )
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        out = _worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
        print(json.dumps(out))
    else:
        bench_main("coco_eval", __doc__, run, NOTES)
