"""fastops.metrics.MeanAveragePrecision: equal in float64 to pycocotools on the COCO datasets
torchmetrics builds from the same tensors; torchmetrics itself as a second oracle (its results are
float32); synchronization across two gloo processes."""

import contextlib
import io
import os
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from coco_common import random_dataset

from fastops.metrics import MeanAveragePrecision

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

KEYS = [
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
]


def to_tensors(gt, dt, fmt="xyxy", dtype=torch.float64, with_area=False):
    """Per-image lists of dicts (torchvision's detection format) from a COCO dataset and results."""
    preds, targets = [], []
    for img in gt["images"]:
        g = [a for a in gt["annotations"] if a["image_id"] == img["id"]]
        d = [x for x in dt if x["image_id"] == img["id"]]

        def boxes(items):
            b = torch.tensor([x["bbox"] for x in items], dtype=torch.float64).reshape(-1, 4)
            x, y, w, h = b.unbind(-1)
            out = {
                "xywh": b,
                "xyxy": torch.stack([x, y, x + w, y + h], -1),
                "cxcywh": torch.stack([x + w / 2, y + h / 2, w, h], -1),
            }[fmt]
            return out.to(dtype)

        t = {
            "boxes": boxes(g),
            "labels": torch.tensor([a["category_id"] for a in g], dtype=torch.int64),
            "iscrowd": torch.tensor([a["iscrowd"] for a in g], dtype=torch.int64),
        }
        if with_area:
            t["area"] = torch.tensor([a["area"] for a in g], dtype=torch.float64)
        targets.append(t)
        preds.append(
            {
                "boxes": boxes(d),
                "scores": torch.tensor([x["score"] for x in d], dtype=dtype),
                "labels": torch.tensor([x["category_id"] for x in d], dtype=torch.int64),
            }
        )
    return preds, targets


def _xywh_like_torchmetrics(boxes, fmt):
    import torchvision

    return torchvision.ops.box_convert(boxes, in_fmt=fmt, out_fmt="xywh")


def reference_stats(preds, targets, fmt, iou_type="bbox"):
    """pycocotools on the dataset torchmetrics' _get_coco_format builds from these tensors."""
    labels = sorted({int(v) for x in preds + targets for v in x["labels"].tolist()})

    def coco(items, scores):
        anns, ann_id = [], 1
        for i, it in enumerate(items):
            b = _xywh_like_torchmetrics(it["boxes"], fmt).tolist()
            area = it.get("area")
            for k, lab in enumerate(it["labels"].tolist()):
                a = area[k].item() if area is not None and area[k].item() > 0 else b[k][2] * b[k][3]
                ann = {
                    "id": ann_id,
                    "image_id": i,
                    "area": a,
                    "category_id": lab,
                    "bbox": b[k],
                    "iscrowd": it["iscrowd"][k].item() if "iscrowd" in it else 0,
                }
                if scores:
                    ann["score"] = it["scores"][k].item()
                anns.append(ann)
                ann_id += 1
        c = COCO()
        c.dataset = {
            "images": [{"id": i} for i in range(len(items))],
            "annotations": anns,
            "categories": [{"id": x} for x in labels],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            c.createIndex()
        return c

    with contextlib.redirect_stdout(io.StringIO()):
        E = COCOeval(coco(targets, False), coco(preds, True), iou_type)
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(3))
def test_equal_to_pycocotools(seed, fmt, dtype):
    gt, dt = random_dataset(seed, n_images=15, id_zero=False)
    preds, targets = to_tensors(gt, dt, fmt, dtype, with_area=seed == 1)
    m = MeanAveragePrecision(box_format=fmt, class_metrics=True)
    for i in range(0, len(preds), 4):  # several update() calls
        m.update(preds[i : i + 4], targets[i : i + 4])
    out = m.compute()
    E = reference_stats(preds, targets, fmt)
    ours = np.array([out[k].item() for k in KEYS])
    assert ours.tobytes() == np.asarray(E.stats, np.float64).tobytes()
    for k, c in enumerate(out["classes"].tolist()):
        s = E.eval["precision"][:, :, k, 0, -1]
        want = np.mean(s[s > -1]) if (s > -1).any() else -1.0
        assert out["map_per_class"][k].item() == want, c
    assert all(v.dtype in (torch.float64, torch.int32) for v in out.values())


def test_matches_torchmetrics_in_float32():
    tm = pytest.importorskip("torchmetrics.detection")
    gt, dt = random_dataset(4, n_images=15, id_zero=False)
    preds, targets = to_tensors(gt, dt, "xyxy", torch.float32)
    ours = MeanAveragePrecision(box_format="xyxy")
    ours.update(preds, targets)
    theirs = tm.MeanAveragePrecision(
        box_format="xyxy",
        backend="pycocotools",
        iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
        rec_thresholds=np.linspace(0, 1, 101).tolist(),
    )
    theirs.update(preds, targets)
    a, b = ours.compute(), theirs.compute()
    for k in KEYS:
        assert a[k].float().item() == b[k].item(), k


def test_empty_and_bad_inputs():
    m = MeanAveragePrecision()
    m.update(
        [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}],
        [{"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([3])}],
    )
    out = m.compute()
    assert out["map"].item() == 0.0 and out["classes"].tolist() == [3]
    with pytest.raises(ValueError, match="box_format"):
        MeanAveragePrecision(box_format="yxyx")
    with pytest.raises(ValueError, match="predictions"):
        m.update([], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}])
    with pytest.raises(ValueError, match="scores"):
        m.update(
            [{"boxes": torch.zeros(2, 4), "scores": torch.zeros(3), "labels": torch.zeros(2)}],
            [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}],
        )
    empty = MeanAveragePrecision()
    assert empty.compute()["map"].item() == -1.0
    m.reset()
    assert m.compute()["map"].item() == -1.0


def test_segm_masks_equal_to_box_equivalent():
    """Rectangular masks evaluate like their boxes, when areas are given (masks' own areas differ from
    w*h only by the pixel grid, so integer boxes are used)."""
    h, w = 40, 50
    rng = np.random.default_rng(0)
    preds, targets, bpreds, btargets = [], [], [], []
    for _ in range(6):

        def rects(n):
            xy = rng.integers(0, 30, (n, 2))
            wh = rng.integers(1, 20, (n, 2))
            b = torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float64)
            m = torch.zeros(n, h, w, dtype=torch.bool)
            for i, (x1, y1, x2, y2) in enumerate(b.long().tolist()):
                m[i, y1:y2, x1:x2] = True
            return b, m

        gb, gm = rects(int(rng.integers(1, 4)))
        db, dm = rects(int(rng.integers(0, 5)))
        gl = torch.tensor(rng.integers(1, 3, len(gb)))
        dl = torch.tensor(rng.integers(1, 3, len(db)))
        sc = torch.tensor(rng.random(len(db)))
        targets.append({"masks": gm, "labels": gl})
        preds.append({"masks": dm, "scores": sc, "labels": dl})
        btargets.append({"boxes": gb, "labels": gl})
        bpreds.append({"boxes": db, "scores": sc, "labels": dl})
    ms = MeanAveragePrecision(iou_type="segm")
    ms.update(preds, targets)
    mb = MeanAveragePrecision(iou_type="bbox")
    mb.update(bpreds, btargets)
    a, b = ms.compute(), mb.compute()
    for k in KEYS:
        assert a[k].item() == pytest.approx(b[k].item(), abs=1e-12), k


def _dist_worker(rank, world, path, init_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        gt, dt = random_dataset(9, n_images=20, id_zero=False)
        preds, targets = to_tensors(gt, dt)
        half = len(preds) // world
        m = MeanAveragePrecision(class_metrics=True)
        m.update(preds[rank * half : (rank + 1) * half], targets[rank * half : (rank + 1) * half])
        out = m.compute()
        torch.save({k: v.clone() for k, v in out.items()}, f"{path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_distributed_sync_two_gloo_processes():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out")
        mp.spawn(_dist_worker, args=(2, path, os.path.join(d, "init")), nprocs=2, join=True)
        r0, r1 = torch.load(f"{path}.0"), torch.load(f"{path}.1")
    gt, dt = random_dataset(9, n_images=20, id_zero=False)
    preds, targets = to_tensors(gt, dt)
    single = MeanAveragePrecision(class_metrics=True)
    single.update(preds, targets)
    want = single.compute()
    for k in want:
        assert torch.equal(r0[k], want[k]) and torch.equal(r1[k], want[k]), k


def test_segm_equal_to_pycocotools():
    from pycocotools import mask as pmask

    h, w = 30, 40
    rng = np.random.default_rng(5)
    preds, targets = [], []
    for _ in range(8):

        def blobs(n):
            m = np.zeros((n, h, w), bool)
            for i in range(n):
                y, x = rng.integers(0, h - 5), rng.integers(0, w - 5)
                m[i, y : y + rng.integers(2, 15), x : x + rng.integers(2, 15)] = True
                m[i] &= rng.random((h, w)) < 0.9
            return torch.from_numpy(m)

        gm, dm = blobs(int(rng.integers(0, 4))), blobs(int(rng.integers(0, 5)))
        targets.append(
            {
                "masks": gm,
                "labels": torch.tensor(rng.integers(1, 3, len(gm))),
                "iscrowd": torch.tensor((rng.random(len(gm)) < 0.2).astype(int)),
            }
        )
        preds.append(
            {
                "masks": dm,
                "scores": torch.tensor(rng.integers(0, 5, len(dm)) / 5.0),
                "labels": torch.tensor(rng.integers(1, 3, len(dm))),
            }
        )
    m = MeanAveragePrecision(iou_type="segm")
    m.update(preds, targets)
    out = m.compute()
    labels = sorted({int(v) for x in preds + targets for v in x["labels"].tolist()})

    def coco(items, scores):
        anns, ann_id = [], 1
        for i, it in enumerate(items):
            for k, lab in enumerate(it["labels"].tolist()):
                rle = pmask.encode(np.asfortranarray(it["masks"][k].numpy().astype(np.uint8)))
                ann = {
                    "id": ann_id,
                    "image_id": i,
                    "category_id": lab,
                    "segmentation": rle,
                    "area": float(pmask.area(rle)),
                    "iscrowd": int(it["iscrowd"][k]) if "iscrowd" in it else 0,
                }
                if scores:
                    ann["score"] = it["scores"][k].item()
                anns.append(ann)
                ann_id += 1
        c = COCO()
        c.dataset = {
            "images": [{"id": i, "height": h, "width": w} for i in range(len(items))],
            "annotations": anns,
            "categories": [{"id": x} for x in labels],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            c.createIndex()
        return c

    with contextlib.redirect_stdout(io.StringIO()):
        E = COCOeval(coco(targets, False), coco(preds, True), "segm")
        E.evaluate()
        E.accumulate()
        E.summarize()
    ours = np.array([out[k].item() for k in KEYS])
    assert ours.tobytes() == np.asarray(E.stats, np.float64).tobytes()


@pytest.mark.cuda
def test_cuda_inputs_give_the_cpu_result():
    """The evaluation runs on the host; CUDA tensors are accepted and give the same result."""
    gt, dt = random_dataset(6, n_images=10, id_zero=False)
    preds, targets = to_tensors(gt, dt, "xyxy", torch.float32)
    on = lambda items: [{k: v.cuda() for k, v in x.items()} for x in items]
    a, b = MeanAveragePrecision(), MeanAveragePrecision()
    a.update(preds, targets)
    b.update(on(preds), on(targets))
    ra, rb = a.compute(), b.compute()
    for k in ra:
        assert torch.equal(ra[k], rb[k]), k


def boxes_and_masks(seed, n_images=12, h=40, w=50, with_area=False):
    """Images with GT masks and boxes (crowds, optional given areas) and detections that are shifted
    copies of them (some relabelled) plus random ones."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 5))
        gm, gb = np.zeros((n, h, w), bool), np.zeros((n, 4))
        for i in range(n):
            y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
            hh, ww = int(rng.integers(3, 30)), int(rng.integers(3, 30))
            gm[i, y : y + hh, x : x + ww] = True
            gm[i] &= rng.random((h, w)) < 0.85
            gb[i] = [x, y, min(x + ww, w), min(y + hh, h)]
        labels = rng.integers(1, 4, n)
        dm, db, dl = [], [], []
        for i in range(n):
            for _ in range(int(rng.integers(0, 3))):
                dm.append(np.roll(gm[i], tuple(rng.integers(-2, 3, 2)), (0, 1)))
                b = gb[i] + rng.normal(0, 1.5, 4)
                db.append([b[0], b[1], max(b[2], b[0] + 1), max(b[3], b[1] + 1)])
                dl.append(labels[i] if rng.random() < 0.85 else int(rng.integers(1, 4)))
        for _ in range(int(rng.integers(0, 2))):
            m = np.zeros((h, w), bool)
            y, x = int(rng.integers(0, h - 5)), int(rng.integers(0, w - 5))
            m[y : y + 6, x : x + 9] = True
            dm.append(m)
            db.append([x, y, x + 9, y + 6])
            dl.append(int(rng.integers(1, 4)))
        t = {
            "masks": torch.from_numpy(gm),
            "boxes": torch.from_numpy(gb).float(),
            "labels": torch.tensor(labels),
            "iscrowd": torch.tensor((rng.random(n) < 0.15).astype(int)),
        }
        if with_area:
            t["area"] = torch.tensor(np.where(rng.random(n) < 0.5, rng.uniform(10, 2000, n), 0.0))
        targets.append(t)
        k = len(dm)
        preds.append(
            {
                "masks": torch.from_numpy(np.array(dm, bool).reshape(k, h, w)),
                "boxes": torch.tensor(np.array(db, np.float64).reshape(k, 4)).float(),
                "scores": torch.tensor(rng.integers(0, 10, k) / 10.0).float(),
                "labels": torch.tensor(np.array(dl, np.int64)),
            }
        )
    return preds, targets


@pytest.mark.parametrize("with_area", [False, True])
def test_bbox_and_segm_in_one_object_equal_torchmetrics(with_area):
    """iou_type=("bbox", "segm"): torchmetrics' keys (prefixed) and values, its area rules included
    (a detection's area per iou type, a ground truth's given area or else its mask's for both)."""
    tm = pytest.importorskip("torchmetrics.detection")
    preds, targets = boxes_and_masks(3, with_area=with_area)
    kw = {"iou_thresholds": np.linspace(0.5, 0.95, 10).tolist(), "rec_thresholds": np.linspace(0, 1, 101).tolist()}
    theirs = tm.MeanAveragePrecision(iou_type=("bbox", "segm"), backend="pycocotools", class_metrics=True, **kw)
    theirs.update(preds, targets)
    ours = MeanAveragePrecision(iou_type=("bbox", "segm"), class_metrics=True)
    for i in range(0, len(preds), 5):
        ours.update(preds[i : i + 5], targets[i : i + 5])
    a, b = ours.compute(), theirs.compute()
    assert sorted(a) == sorted(b)
    assert a["bbox_map"].item() > 0.05 and a["segm_map"].item() > 0.02  # matches happen
    for k in b:
        assert torch.equal(a[k].to(b[k].dtype).reshape(-1), b[k].reshape(-1)), k
    # each half equals the single-type metric where the area rules agree (segm always does)
    single = MeanAveragePrecision(iou_type="segm", class_metrics=True)
    single.update(preds, targets)
    s = single.compute()
    for k in KEYS:
        assert a["segm_" + k].item() == s[k].item(), k


def test_masks_as_rle_dicts():
    """Masks may arrive as RLEs (compressed, as str or bytes, or uncompressed): the same result as
    boolean masks."""
    from fastops.metrics import mask

    preds, targets = boxes_and_masks(8)
    want = MeanAveragePrecision(iou_type=("bbox", "segm"))
    want.update(preds, targets)
    want = want.compute()

    def as_rles(items, kind):
        out = []
        for it in items:
            m = it["masks"].numpy().astype(np.uint8)
            rles = [mask.encode(np.asfortranarray(x)) for x in m]
            if kind == "str":
                rles = [{"size": r["size"], "counts": r["counts"].decode()} for r in rles]
            elif kind == "uncompressed":
                rles = [{"size": r["size"], "counts": _uncompressed(x)} for r, x in zip(rles, m)]
            out.append({**it, "masks": rles})
        return out

    for kind in ("bytes", "str", "uncompressed"):
        m = MeanAveragePrecision(iou_type=("bbox", "segm"))
        m.update(as_rles(preds, kind), as_rles(targets, kind))
        got = m.compute()
        for k in want:
            assert torch.equal(got[k], want[k]), (kind, k)


def _uncompressed(m):
    flat = np.asfortranarray(m).reshape(-1, order="F")
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])))
    return np.diff(np.concatenate([[0], change])).tolist()


def test_bad_masks_and_labels_raise_clearly():
    preds, targets = boxes_and_masks(9, n_images=6)
    m = MeanAveragePrecision(iou_type=("bbox", "segm"))
    i = next(i for i, p in enumerate(preds) if len(p["labels"]))
    j = next(j for j, t in enumerate(targets) if len(t["labels"]))
    bad = [dict(p) for p in preds]
    bad[i]["masks"] = bad[i]["masks"].float() * 0.5
    with pytest.raises(ValueError, match="boolean"):
        m.update(bad, targets)
    bad = [dict(p) for p in preds]
    bad[0]["masks"] = torch.zeros(len(bad[0]["boxes"]) + 1, 40, 50, dtype=torch.bool)
    with pytest.raises(ValueError, match="masks"):
        m.update(bad, targets)
    bad = [dict(t) for t in targets]
    del bad[2]["masks"]
    with pytest.raises(ValueError, match="masks"):
        m.update(preds, bad)
    bad = [dict(t) for t in targets]
    bad[j]["labels"] = bad[j]["labels"].double() + 0.5
    with pytest.raises(ValueError, match="integers"):
        m.update(preds, bad)
    for iou_type in ("keypoints", ("bbox", "bbox"), ()):
        with pytest.raises(ValueError, match="iou_type"):
            MeanAveragePrecision(iou_type=iou_type)
    assert m.compute()["bbox_map"].item() == -1.0  # nothing was added by the failed updates
