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
