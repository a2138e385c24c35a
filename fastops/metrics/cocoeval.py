"""pycocotools' ``COCOeval`` for boxes and masks, with the same results to the last bit (``stats``
and the ``eval`` arrays), computed in C++ (``csrc/coco_eval/``).

Usage is pycocotools'::

    gt = COCO("instances_val.json")          # or COCO(dataset_dict)
    dt = gt.loadRes("results.json")          # or a list of result dicts, or an [N, 7] array
    E = COCOeval(gt, dt, "bbox")             # or "segm"
    E.evaluate(); E.accumulate(); E.summarize()
    E.stats                                  # the 12 numbers; E.eval["precision"] [T, R, K, A, M]

What is reproduced (``tests/test_coco_eval.py`` checks each against pycocotools): the float64
thresholds ``np.linspace(.5, .95, 10)`` and ``np.linspace(0, 1, 101)``; GT ``ignore`` replaced by
``iscrowd``; GT area read from the annotation (even for bbox); ``loadRes`` deciding from the first
result; the crowd IoU rule (intersection over the detection's area) and crowd regions absorbing
many detections; greedy matching in stable score order where IoU equal to the threshold matches,
on tied IoU the later GT wins and a regular match is never replaced by an ignored GT; inclusive
area ranges; a match on GT id 0 counting as unmatched; ``tp / (tp + fp + np.spacing(1))``, the
right-to-left envelope and ``searchsorted(..., 'left')``; -1 for cells without GT; duplicate
annotation ids resolved as ``COCO.loadAnns`` does (the last annotation with that id).

Differences, deliberate: evaluating no detections gives AP 0 where GT exist; ``evalImgs`` (pycocotools'
per-cell dicts, what makes it slow) is built only when first read, and ``ious`` is not kept;
keypoints are not supported. Detection scores may be NaN: such detections sort last, as in numpy. Results must
refer to images of the GT set (AssertionError, as pycocotools).

Runtime needs numpy and torch only.
"""

from __future__ import annotations

import copy
import datetime

import numpy as np
import torch

from . import rle
from .coco import COCO, AnnotationColumns

__all__ = ["COCOeval", "Params"]


class Params:
    """pycocotools' evaluation parameters (same attributes, same float64 thresholds)."""

    def setDetParams(self):
        self.imgIds = []
        self.catIds = []
        # np.linspace, as pycocotools: some entries are one ulp off i/100, and that is the spec
        self.iouThrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
        self.recThrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
        self.maxDets = [1, 10, 100]
        self.areaRng = [[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]]
        self.areaRngLbl = ["all", "small", "medium", "large"]
        self.useCats = 1

    def __init__(self, iouType="segm"):
        if iouType == "segm" or iouType == "bbox":
            self.setDetParams()
        elif iouType == "keypoints":
            raise NotImplementedError("fastops COCOeval: iouType 'keypoints' is not supported (bbox and segm are)")
        else:
            raise Exception("iouType not supported")
        self.iouType = iouType
        self.useSegm = None


def _group_rows(cols: AnnotationColumns, img_ids: np.ndarray, cat_ids: list, use_cats: bool):
    """Rows of one COCO object in pycocotools' evaluation order, grouped by (category, image).

    Returns (rows, offsets): group p = k * I + i (useCats) or i (useCats=0) holds rows
    rows[offsets[p]:offsets[p + 1]], in the order COCOeval._prepare collects them.
    """
    loaded = cols.loaded_rows()
    if use_cats and loaded is None:
        rows, offsets = torch.ops.fastops.coco_group(
            _t(cols.image_id), _t(cols.category_id), _t(img_ids), _t(np.asarray(cat_ids, dtype=np.int64).reshape(-1))
        )
        return rows.numpy(), offsets.numpy()
    I = len(img_ids)
    img_idx = np.searchsorted(img_ids, cols.image_id) if I else np.zeros(cols.n, np.int64)
    img_idx = np.minimum(img_idx, max(I - 1, 0))
    img_ok = (img_ids[img_idx] == cols.image_id) if I else np.zeros(cols.n, bool)
    cat_arr = np.asarray(cat_ids, dtype=np.int64).reshape(-1)
    if use_cats:
        K = len(cat_arr)  # unique and sorted by evaluate()
        cat_idx = np.minimum(np.searchsorted(cat_arr, cols.category_id), max(K - 1, 0))
        cat_ok = (cat_arr[cat_idx] == cols.category_id) if K else np.zeros(cols.n, bool)
        if loaded is None:
            sel = np.flatnonzero(img_ok & cat_ok)
            key = cat_idx[sel] * I + img_idx[sel]
        else:
            # getAnnIds walks the images in order, filtering by each annotation's own category;
            # loadAnns then returns the last annotation with each id, grouped by its own keys.
            seq = np.flatnonzero(img_ok & cat_ok)
            seq = seq[np.argsort(img_idx[seq], kind="stable")]
            sel = loaded[seq]
            keep = img_ok[sel] & cat_ok[sel]
            sel = sel[keep]
            key = cat_idx[sel] * I + img_idx[sel]
        order = np.argsort(key, kind="stable")
        rows = sel[order]
        counts = np.bincount(key, minlength=K * I) if K * I else np.zeros(0, np.int64)
    else:
        # one group per image: categories in p.catIds order (duplicates repeat), then load order
        C = len(cat_arr)
        base = np.flatnonzero(img_ok)
        if loaded is not None:
            base = base[np.argsort(img_idx[base], kind="stable")]
            base = loaded[base]
            base = base[img_ok[base]]
        cid = cols.category_id[base]
        rows_list, keys_list = [], []
        for pos, c in enumerate(cat_arr.tolist()):  # a category listed twice is collected twice
            b = base[cid == c]
            rows_list.append(b)
            keys_list.append(img_idx[b] * C + pos)
        rows_all = np.concatenate(rows_list) if rows_list else np.zeros(0, np.int64)
        keys = np.concatenate(keys_list) if keys_list else np.zeros(0, np.int64)
        order = np.argsort(keys, kind="stable")
        rows = rows_all[order]
        counts = np.bincount(keys // max(C, 1), minlength=I) if I else np.zeros(0, np.int64)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return rows.astype(np.int64, copy=False), offsets


def _copy_params(p: Params) -> Params:
    """copy.deepcopy(p) for the usual attribute types, without deep-copying 5,000 numpy ints."""
    q = copy.copy(p)
    for name, value in vars(p).items():
        if isinstance(value, np.ndarray):
            setattr(q, name, value.copy())
        elif isinstance(value, list) and all(not isinstance(v, (list, dict, np.ndarray)) for v in value):
            setattr(q, name, list(value))
        else:
            setattr(q, name, copy.deepcopy(value))
    return q


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


class COCOeval:
    """pycocotools' ``COCOeval`` for iouType "bbox" and "segm": same parameters, same
    ``evaluate()``/``accumulate()``/``summarize()``, same ``eval`` arrays and ``stats``, bit for
    bit; the per-image matching and the accumulation run in C++ threads.

    ``eval["precision"]``: float64 [T, R, K, A, M]; ``eval["recall"]``: [T, K, A, M];
    ``eval["scores"]``: [T, R, K, A, M]; -1 where a cell has no ground truth.
    """

    def __init__(self, cocoGt=None, cocoDt=None, iouType="segm"):
        if not iouType:
            iouType = "segm"
        self.cocoGt = COCO.from_other(cocoGt)
        self.cocoDt = COCO.from_other(cocoDt)
        self._evalImgs = None
        self.eval = {}
        self.params = Params(iouType=iouType)
        self._paramsEval = {}
        self.stats = []
        self.ious = {}
        self._evaluated = None
        if cocoGt is not None:
            self.params.imgIds = sorted(cocoGt.getImgIds())
            self.params.catIds = sorted(cocoGt.getCatIds())

    # ---- evaluate -------------------------------------------------------------------------------
    def evaluate(self):
        """Per (category, area range, image) matching of detections to ground truths
        (COCOeval.evaluate + evaluateImg); the results stay in C++ arrays for accumulate()."""
        p = self.params
        if p.useSegm is not None:
            p.iouType = "segm" if p.useSegm == 1 else "bbox"
        if p.iouType not in ("bbox", "segm"):
            raise NotImplementedError(f"fastops COCOeval: iouType {p.iouType!r} is not supported")
        p.imgIds = list(np.unique(p.imgIds))
        if p.useCats:
            p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        self.params = p

        img_ids = np.asarray(p.imgIds, dtype=np.int64).reshape(-1)
        gcols = self.cocoGt.columns()
        dcols = self.cocoDt.columns()
        use_cats = bool(p.useCats)
        g_rows, g_off = _group_rows(gcols, img_ids, p.catIds, use_cats)
        d_rows, d_off = _group_rows(dcols, img_ids, p.catIds, use_cats)
        crowd, ignore = gcols.crowd()
        g_crowd, g_ignore = crowd[g_rows], ignore[g_rows]
        g_area = gcols.area()[g_rows]
        d_area = dcols.area()[d_rows]
        d_score = dcols.score()[d_rows]
        iou_thrs = np.asarray(p.iouThrs, dtype=np.float64).reshape(-1)
        area_rng = np.asarray(p.areaRng, dtype=np.float64).reshape(-1, 2)
        max_det = int(p.maxDets[-1])
        if p.iouType == "bbox":
            g_box, d_box = gcols.bbox()[g_rows], dcols.bbox()[d_rows]
            ious = iou_off = None
        else:
            g_box = np.zeros((len(g_rows), 4))
            d_box = np.zeros((len(d_rows), 4))
            ious, iou_off = self._segm_ious(g_rows, g_off, d_rows, d_off, g_crowd)
        args = (
            _t(g_off),
            _t(g_box),
            _t(g_area),
            _t(g_crowd),
            _t(g_ignore),
            _t(gcols.id[g_rows]),
            _t(d_off),
            _t(d_box),
            _t(d_area),
            _t(d_score),
            _t(dcols.id[d_rows]),
            ious,
            iou_off,
            _t(iou_thrs),
            _t(area_rng),
            max_det,
        )
        det_off, det_index, det_flags, npos, _ = torch.ops.fastops.coco_evaluate(*args, False)
        self._evalImgs = None
        self._evaluated = {
            "args": args,
            "det_offsets": det_off,
            "gt_offsets": _t(g_off),
            "det_score": _t(d_score)[det_index],
            "det_flags": det_flags,
            "num_positive": npos,
            "num_images": len(img_ids),
            "num_iou_thrs": len(iou_thrs),
        }
        self._paramsEval = _copy_params(self.params)

    def _segm_ious(self, g_rows, g_off, d_rows, d_off, g_crowd):
        """Mask IoU of every (category, image) group, [n_dt, n_gt] row-major per group (maskApi.c rleIou)."""
        grles = self.cocoGt.rle_batch()
        drles = self.cocoDt.rle_batch()
        return rle.grouped_iou(drles, _t(d_rows), _t(d_off), grles, _t(g_rows), _t(g_off), _t(g_crowd))

    @property
    def evalImgs(self) -> list:
        """pycocotools' per-(category, area range, image) results, built on first access (slow, as
        in pycocotools: one dict per cell; evaluate() itself does not need them)."""
        if self._evalImgs is None:
            self._evalImgs = [] if self._evaluated is None else self._build_eval_imgs()
        return self._evalImgs

    @evalImgs.setter
    def evalImgs(self, value):
        self._evalImgs = value

    def _build_eval_imgs(self) -> list:
        ev = self._evaluated
        args = ev["args"]
        det_off, det_index, det_flags, _, det_match = torch.ops.fastops.coco_evaluate(*args, True)
        det_off, det_index = det_off.numpy(), det_index.numpy()
        det_flags, det_match = det_flags.numpy(), det_match.numpy()
        g_off, g_area, g_ignore, g_ids = args[0].numpy(), args[2].numpy(), args[4].numpy(), args[5].numpy()
        d_off, d_score, d_ids = args[6].numpy(), args[9].numpy(), args[10].numpy()
        p = self._paramsEval
        cat_ids = p.catIds if p.useCats else [-1]
        I, T = len(p.imgIds), len(p.iouThrs)
        out = []
        for k, cat_id in enumerate(cat_ids):
            for a, rng in enumerate(p.areaRng):
                lo, hi = rng[0], rng[1]
                for i, img_id in enumerate(p.imgIds):
                    q = k * I + i
                    g0, g1 = g_off[q], g_off[q + 1]
                    if g1 == g0 and d_off[q + 1] == d_off[q]:
                        out.append(None)
                        continue
                    area = g_area[g0:g1]
                    ig = (g_ignore[g0:g1] | (area < lo) | (area > hi)).astype(np.int64)
                    gtind = np.argsort(ig, kind="mergesort")
                    pos = np.empty(len(gtind), np.int64)
                    pos[gtind] = np.arange(len(gtind))
                    gid = g_ids[g0:g1]
                    rows = det_index[det_off[q] : det_off[q + 1]]
                    dt_ids = d_ids[rows].tolist()
                    m = det_match[det_off[q] : det_off[q + 1], a, :].T  # [T, D], group-local GT or -1
                    dtm = np.where(m >= 0, gid[np.maximum(m, 0)] if len(gid) else 0, 0).astype(np.float64)
                    gtm = np.zeros((T, len(gid)))
                    for t, j in zip(*np.nonzero(m >= 0)):  # in score order: a later match overwrites
                        gtm[t, pos[m[t, j]]] = dt_ids[j]
                    out.append(
                        {
                            "image_id": img_id,
                            "category_id": cat_id,
                            "aRng": rng,
                            "maxDet": p.maxDets[-1],
                            "dtIds": dt_ids,
                            "gtIds": gid[gtind].tolist(),
                            "dtMatches": dtm,
                            "gtMatches": gtm,
                            "dtScores": d_score[rows].tolist(),
                            "gtIgnore": ig[gtind],
                            "dtIgnore": (det_flags[det_off[q] : det_off[q + 1], a, :].T & 2) != 0,
                        }
                    )
        return out

    # ---- accumulate -----------------------------------------------------------------------------
    def accumulate(self, p=None):
        """precision [T, R, K, A, M], recall [T, K, A, M] and scores [T, R, K, A, M] (float64, -1
        where a cell has no ground truth), as COCOeval.accumulate, in self.eval."""
        if self._evaluated is None:
            print("Please run evaluate() first")
            raise RuntimeError("COCOeval.accumulate: run evaluate() first")
        if p is None:
            p = self.params
        p.catIds = p.catIds if p.useCats == 1 else [-1]
        T = len(p.iouThrs)
        R = len(p.recThrs)
        K = len(p.catIds) if p.useCats else 1
        A = len(p.areaRng)
        M = len(p.maxDets)
        _pe = self._paramsEval
        catIds = _pe.catIds if _pe.useCats else [-1]
        setK = set(catIds)
        setA = set(map(tuple, _pe.areaRng))
        setM = set(_pe.maxDets)
        setI = set(_pe.imgIds)
        k_list = [n for n, k in enumerate(p.catIds) if k in setK]
        m_list = [m for n, m in enumerate(p.maxDets) if m in setM]
        a_list = [n for n, a in enumerate(map(lambda x: tuple(x), p.areaRng)) if a in setA]
        i_list = [n for n, i in enumerate(p.imgIds) if i in setI]
        ev = self._evaluated
        if ev["num_iou_thrs"] != T:
            raise ValueError(
                f"COCOeval.accumulate: params.iouThrs has {T} thresholds but evaluate() used "
                f"{ev['num_iou_thrs']}; run evaluate() again"
            )
        rec = np.asarray(p.recThrs, dtype=np.float64).reshape(-1)
        lists = [torch.tensor(x, dtype=torch.int64).reshape(-1) for x in (k_list, a_list, m_list, i_list)]
        precision, recall, scores = torch.ops.fastops.coco_accumulate(
            ev["det_offsets"],
            ev["gt_offsets"],
            ev["det_score"],
            ev["det_flags"],
            ev["num_positive"],
            ev["num_images"],
            *lists,
            _t(rec),
            T,
            K,
            A,
            M,
        )
        self.eval = {
            "params": p,
            "counts": [T, R, K, A, M],
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "precision": precision.numpy(),
            "recall": recall.numpy(),
            "scores": scores.numpy(),
        }

    # ---- summarize (pycocotools' code: numpy's mean over the cells > -1) ------------------------
    def summarize(self, verbose: bool = True):
        """The 12 COCO numbers in self.stats (float64), printed as pycocotools prints them."""

        def _summarize(ap=1, iouThr=None, areaRng="all", maxDets=100):
            p = self.params
            iStr = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
            titleStr = "Average Precision" if ap == 1 else "Average Recall"
            typeStr = "(AP)" if ap == 1 else "(AR)"
            iouStr = f"{p.iouThrs[0]:0.2f}:{p.iouThrs[-1]:0.2f}" if iouThr is None else f"{iouThr:0.2f}"
            aind = [i for i, aRng in enumerate(p.areaRngLbl) if aRng == areaRng]
            mind = [i for i, mDet in enumerate(p.maxDets) if mDet == maxDets]
            if ap == 1:
                s = self.eval["precision"]
                if iouThr is not None:
                    t = np.where(iouThr == p.iouThrs)[0]
                    s = s[t]
                s = s[:, :, :, aind, mind]
            else:
                s = self.eval["recall"]
                if iouThr is not None:
                    t = np.where(iouThr == p.iouThrs)[0]
                    s = s[t]
                s = s[:, :, aind, mind]
            if len(s[s > -1]) == 0:
                mean_s = -1
            else:
                mean_s = np.mean(s[s > -1])
            if verbose:
                print(iStr.format(titleStr, typeStr, iouStr, areaRng, maxDets, mean_s))
            return mean_s

        def _summarizeDets():
            stats = np.zeros((12,))
            stats[0] = _summarize(1)
            stats[1] = _summarize(1, iouThr=0.5, maxDets=self.params.maxDets[2])
            stats[2] = _summarize(1, iouThr=0.75, maxDets=self.params.maxDets[2])
            stats[3] = _summarize(1, areaRng="small", maxDets=self.params.maxDets[2])
            stats[4] = _summarize(1, areaRng="medium", maxDets=self.params.maxDets[2])
            stats[5] = _summarize(1, areaRng="large", maxDets=self.params.maxDets[2])
            stats[6] = _summarize(0, maxDets=self.params.maxDets[0])
            stats[7] = _summarize(0, maxDets=self.params.maxDets[1])
            stats[8] = _summarize(0, maxDets=self.params.maxDets[2])
            stats[9] = _summarize(0, areaRng="small", maxDets=self.params.maxDets[2])
            stats[10] = _summarize(0, areaRng="medium", maxDets=self.params.maxDets[2])
            stats[11] = _summarize(0, areaRng="large", maxDets=self.params.maxDets[2])
            return stats

        if not self.eval:
            raise Exception("Please run accumulate() first")
        self.stats = _summarizeDets()

    def __str__(self):
        self.summarize()
        return ""
