"""COCO evaluation: fastops.metrics.COCOeval against pycocotools, faster-coco-eval, hotcoco and
ultrafast-pycocotools (whichever are installed), and fastops' MeanAveragePrecision against
torchmetrics', on a synthetic COCO-sized workload.

Workload (issue 7): 5,000 images of 640 x 480, 80 categories, ~35k ground-truth boxes (1% crowd,
areas spread over small/medium/large) and ~140k detections (jittered copies of the GT, wrong
classes and random false positives, up to 100 per image); a mask variant where every GT and
detection is an octagon polygon inside its box (segm evaluation on RLEs). Timed: COCOeval
evaluate + accumulate + summarize on already loaded COCO objects (how every library reports it);
loading the JSON and loadRes are reported separately. Every library's stats are checked against
pycocotools' bit for bit (printed as "exact" / "max abs diff").

Floor: the work that cannot be skipped is one pass over the detections per (area range, IoU
threshold) to match them, and sorting them by score per category; we report the time of
numpy's stable argsort of the 140k scores as a rough floor.
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time

import numpy as np
from common import Row, bench_main, run_python, time_ms

NOTES = (
    "Timed: COCOeval(gt, dt).evaluate(); accumulate(); summarize() on loaded COCO objects, each library "
    "in its own process (median of 9 runs; pycocotools: one run). fastops converts a COCO object's masks to "
    "RLE once, on its first segm "
    "evaluation (fastops_first_call_ms includes it); the other libraries convert at load time. "
    "Other builds were running on the 2 cores at the same time: timings are disturbed."
)


def synthetic_coco(
    n_images: int = 5000, n_cats: int = 80, gt_per_image: float = 7.0, seed: int = 0, masks: bool = False
):
    """(gt dataset dict, result list) of the benchmark workload; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    W, H = 640, 480
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

    def polygon(b):
        x0, y0, w, h = b
        fx = [0.3, 0.7, 1, 1, 0.7, 0.3, 0, 0]
        fy = [0, 0, 0.3, 0.7, 1, 1, 0.7, 0.3]
        return [[round(v, 2) for xy in zip(fx, fy) for v in (x0 + xy[0] * w, y0 + xy[1] * h)]]

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
            ann["segmentation"] = polygon(b)
        anns.append(ann)
    # detections: ~2.5 jittered copies per GT (some with the wrong class), plus random boxes
    copies = rng.poisson(2.5, G)
    src = np.repeat(np.arange(G), copies)
    jit = gt_box[src].copy()
    jit[:, :2] += rng.normal(0, 0.12, (src.size, 2)) * jit[:, 2:]
    jit[:, 2:] *= np.exp(rng.normal(0, 0.15, (src.size, 2)))
    det_cat = np.where(rng.random(src.size) < 0.9, gt_cat[src], rng.integers(1, n_cats + 1, src.size))
    det_img = img_of_gt[src]
    n_fp = max(0, 140_000 - src.size)
    fp_img = rng.integers(1, n_images + 1, n_fp)
    fp_side = np.exp(rng.uniform(np.log(8), np.log(300), (n_fp, 2)))
    fp_box = np.stack([rng.uniform(0, W - 8, n_fp), rng.uniform(0, H - 8, n_fp), fp_side[:, 0], fp_side[:, 1]], 1)
    boxes = np.concatenate([jit, fp_box]).round(2)
    imgs = np.concatenate([det_img, fp_img])
    cls = np.concatenate([det_cat, rng.integers(1, n_cats + 1, n_fp)])
    score = np.concatenate([rng.beta(4, 2, src.size), rng.beta(1.5, 4, n_fp)]).round(5)
    results = []
    for b, im, c, s in zip(boxes.tolist(), imgs.tolist(), cls.tolist(), score.tolist()):
        r = {"image_id": im, "category_id": c, "bbox": b, "score": s}
        results.append(r)
    if masks:
        # detections as compressed RLEs of their octagons (segm results), rasterized in one batch
        from fastops.metrics import rle

        xy = np.concatenate([polygon(r["bbox"])[0] for r in results])
        n = len(results)
        batch = rle.from_polygons(xy, np.arange(0, 16 * n + 1, 16), np.arange(n + 1), np.tile([H, W], (n, 1)))
        for r, obj in zip(results, batch.to_objects()):
            r["segmentation"] = {"size": obj["size"], "counts": obj["counts"].decode()}
            del r["bbox"]  # segm results: loadRes takes the area and the box from the mask
    return {"images": images, "annotations": anns, "categories": cats}, results


def _quiet(fn):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn()


def _evaluators():
    """name -> (COCO class, COCOeval class) for the installed libraries."""
    out = {}
    import fastops.metrics as fm

    out["fastops"] = (fm.COCO, fm.COCOeval)
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        out["pycocotools"] = (COCO, COCOeval)
    except ImportError:
        pass
    try:
        from faster_coco_eval import COCO as FC
        from faster_coco_eval import COCOeval_faster as FE

        out["faster-coco-eval"] = (FC, FE)
    except ImportError:
        pass
    try:
        import hotcoco

        out["hotcoco"] = (hotcoco.COCO, hotcoco.COCOeval)
    except (ImportError, AttributeError):
        pass
    try:
        from ultrafast_pycocotools.coco import COCO as UC
        from ultrafast_pycocotools.cocoeval import COCOeval as UE

        out["ultrafast-pycocotools"] = (UC, UE)
    except ImportError:
        pass
    return out


def _load(lib, gt, dt):
    COCO, _ = lib

    def go():
        try:
            cg = COCO()
            cg.dataset = copy.deepcopy(gt)
            cg.createIndex()
        except Exception:
            cg = COCO(copy.deepcopy(gt))
        return cg, cg.loadRes(copy.deepcopy(dt))

    return _quiet(go)


def _evaluate(lib, cg, cd, iou_type):
    _, COCOeval = lib

    def go():
        E = COCOeval(cg, cd, iou_type)
        E.evaluate()
        E.accumulate()
        E.summarize()
        return np.asarray(E.stats, dtype=np.float64)

    return _quiet(go)


def _compare(stats, ref):
    if ref is None:
        return "no reference"
    if stats.tobytes() == ref.tobytes():
        return "exact"
    return f"max abs diff {np.max(np.abs(stats - ref)):.2e}"


def _worker(name: str, iou_type: str, n_images: int, repeat: int) -> dict:
    """One library in its own process (no other library's threads or memory around): load, one
    first evaluation, then `repeat` timed evaluations. Returns times (ms) and the stats."""
    libs = _evaluators()
    gt, dt = synthetic_coco(n_images=n_images, masks=iou_type == "segm")
    t0 = time.perf_counter()
    loaded = _load(libs[name], gt, dt)
    load_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    stats = _evaluate(libs[name], *loaded, iou_type)
    first_ms = (time.perf_counter() - t0) * 1e3
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _evaluate(libs[name], *loaded, iou_type)
        times.append((time.perf_counter() - t0) * 1e3)
    scores = np.array([d["score"] for d in dt])
    floor_ms = time_ms(lambda: np.argsort(-scores, kind="stable"), repeat=5)
    return {
        "load_ms": load_ms,
        "first_ms": first_ms,
        "times": times,
        "stats": stats.tolist(),
        "floor_ms": floor_ms,
        "n_gt": len(gt["annotations"]),
        "n_dt": len(dt),
    }


def _in_subprocess(name: str, iou_type: str, n_images: int, repeat: int) -> dict | None:
    import json

    proc = run_python([__file__, "--worker", name, iou_type, str(n_images), str(repeat)], check=False)
    if proc.returncode != 0:
        print(f"{name} ({iou_type}) failed:\n{proc.stderr[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    """Each library runs in its own process, one after the other, on the same generated data."""
    rows: list[Row] = []
    n_images = 500 if quick else 5000
    names = list(_evaluators())
    for iou_type in ["bbox"] + ([] if quick else ["segm"]):
        results = {
            name: _in_subprocess(name, iou_type, n_images, 0 if name == "pycocotools" else (3 if quick else 9))
            for name in names
        }
        ours = results.get("fastops")
        if ours is None:
            continue
        ref = results.get("pycocotools")
        ref_stats = np.array(ref["stats"]) if ref else None
        case = f"{iou_type} {n_images} images, {ours['n_gt']} GT, {ours['n_dt']} dets"
        ours_ms = statistics.median(ours["times"])
        for name in names:
            r = results.get(name)
            if name == "fastops" or r is None:
                continue
            ref_ms = r["first_ms"] if name == "pycocotools" else statistics.median(r["times"])
            extra = {
                f"{name}_vs_pycocotools": _compare(np.array(r["stats"]), ref_stats),
                f"{name}_load_ms": round(r["load_ms"]),
            }
            if name == "pycocotools":
                extra = {
                    "fastops_vs_pycocotools": _compare(np.array(ours["stats"]), ref_stats),
                    "fastops_min_ms": round(min(ours["times"]), 1),
                    "fastops_load_ms": round(ours["load_ms"]),
                    "fastops_first_call_ms": round(ours["first_ms"]),
                }
            rows.append(
                Row(
                    case,
                    ours_ms,
                    name + (" (1 run)" if name == "pycocotools" else ""),
                    ref_ms,
                    ours["floor_ms"],
                    "argsort of the scores",
                    extra,
                )
            )
    rows += _metric_rows(quick)
    return rows


def _metric_rows(quick: bool) -> list[Row]:
    """MeanAveragePrecision update + compute on the bbox workload, against torchmetrics."""
    try:
        import fastops.metrics as fm

        MAP = fm.MeanAveragePrecision
    except AttributeError:
        return []
    import torch

    n_images = 500 if quick else 5000
    gt, dt = synthetic_coco(n_images=n_images)
    preds, targets = _to_tensors(gt, dt)
    out = []

    def ours():
        m = MAP(box_format="xywh", iou_type="bbox")
        for p, t in zip(preds, targets):
            m.update([p], [t])
        return m.compute()

    ours_ms = time_ms(ours, warmup=1, repeat=3)
    ref_ms = None
    try:
        from torchmetrics.detection import MeanAveragePrecision as TM

        def theirs():
            m = TM(box_format="xywh", iou_type="bbox", backend="faster_coco_eval")
            for p, t in zip(preds, targets):
                m.update([p], [t])
            return m.compute()

        ref_ms = time_ms(theirs, warmup=0, repeat=1)
    except Exception as e:
        print("torchmetrics:", repr(e))
    out.append(
        Row(
            f"MeanAveragePrecision update (1 image per call) + compute, {n_images} images",
            ours_ms,
            "torchmetrics (faster_coco_eval backend)",
            ref_ms,
        )
    )
    _ = torch
    return out


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


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        import json

        out = _worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        print(json.dumps(out))
    else:
        bench_main("coco_eval", __doc__, run, NOTES)
