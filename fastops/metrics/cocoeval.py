"""pycocotools' ``COCOeval`` for boxes, masks and keypoints, with the same results to the last bit
(``stats`` and the ``eval`` arrays), computed in C++ (``csrc/coco_eval/``).

Usage is pycocotools'::

    gt = COCO("instances_val.json")          # or COCO(dataset_dict)
    dt = gt.loadRes("results.json")          # or a list of result dicts, or an [N, 7] array
    E = COCOeval(gt, dt, "bbox")             # or "segm", "keypoints"
    E.evaluate(); E.accumulate(); E.summarize()
    E.stats                                  # the 12 numbers (10 for keypoints); E.eval["precision"] [T, R, K, A, M]

What is reproduced (``tests/test_coco_eval.py`` checks each against pycocotools): the float64
thresholds ``np.linspace(.5, .95, 10)`` and ``np.linspace(0, 1, 101)``; GT ``ignore`` replaced by
``iscrowd`` (and, for keypoints, set where ``num_keypoints`` is 0); GT area read from the
annotation (even for bbox); ``loadRes`` deciding from the first result; the crowd IoU rule
(intersection over the detection's area) and crowd regions absorbing many detections; greedy
matching in stable score order where IoU equal to the threshold matches, on tied IoU the later GT
wins and a regular match is never replaced by an ignored GT; inclusive area ranges; a match on GT
id 0 counting as unmatched; ``tp / (tp + fp + np.spacing(1))``, the right-to-left envelope and
``searchsorted(..., 'left')``; -1 for cells without GT; duplicate annotation ids resolved as
``COCO.loadAnns`` does (the last annotation with that id); keypoint similarity with per-keypoint
sigmas (``params.kpt_oks_sigmas``), numpy's exp and sum (``keypoints.py``), and, with useCats=0,
no keypoint match at all (pycocotools looks the similarities up under category -1).

What depends only on the ground truth (its columns, RLEs and grouping) is computed on the first
evaluation and reused for every new set of detections (``grouping.py``).

Differences, deliberate: evaluating no detections gives AP 0 where GT exist; ``evalImgs`` (pycocotools'
per-cell dicts, what makes it slow) is built only when first read, and ``ious`` is not kept. Detection
scores may be NaN: such detections sort last, as in numpy. Results must refer to images of the GT set
(AssertionError, as pycocotools).

Runtime needs numpy and torch only.
"""

from __future__ import annotations

import copy
import datetime

import numpy as np
import torch

from . import keypoints, rle
from .coco import COCO
from .columns import INVALID_ID, ids_from_values, sorted_unique
from .grouping import dt_groups, gt_groups

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

    def setKpParams(self):
        self.imgIds = []
        self.catIds = []
        self.iouThrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
        self.recThrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
        self.maxDets = [20]
        self.areaRng = [[0**2, 1e5**2], [32**2, 96**2], [96**2, 1e5**2]]
        self.areaRngLbl = ["all", "medium", "large"]
        self.useCats = 1
        self.kpt_oks_sigmas = keypoints.SIGMAS.copy()

    def __init__(self, iouType="segm"):
        if iouType == "segm" or iouType == "bbox":
            self.setDetParams()
        elif iouType == "keypoints":
            self.setKpParams()
        else:
            raise Exception("iouType not supported")
        self.iouType = iouType
        self.useSegm = None


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


def _positions_in(values, value_set: set, evaluated) -> list:
    """[n for n, v in enumerate(values) if v in value_set] (accumulate's lists), in numpy when the
    ids are plain numbers."""
    try:
        v = np.asarray(values)
        e = np.asarray(list(evaluated))
        if v.dtype.kind in "iuf" and e.dtype.kind in "iuf" and v.ndim == 1 and e.ndim == 1:
            return np.flatnonzero(np.isin(v, e)).tolist()
    except (ValueError, TypeError):
        pass
    return [n for n, x in enumerate(values) if x in value_set]


def _param_ids(values, what: str) -> np.ndarray:
    """params.imgIds / catIds (sorted and unique, or catIds with useCats=0) -> int64; ids that are no
    integer match no annotation (pycocotools looks them up as keys)."""
    ids = ids_from_values(list(values), what)
    if (ids == INVALID_ID).any():
        raise ValueError(f"{what} must be integers (an id that is no integer matches no annotation)")
    return ids


class COCOeval:
    """pycocotools' ``COCOeval`` for iouType "bbox", "segm" and "keypoints": same parameters, same
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
        if p.iouType not in ("bbox", "segm", "keypoints"):
            raise Exception(f"unknown iouType for iou computation: {p.iouType!r}")
        p.imgIds = list(sorted_unique(p.imgIds))
        if p.useCats:
            p.catIds = list(sorted_unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        self.params = p

        img_ids = _param_ids(p.imgIds, "params.imgIds")
        cat_ids = _param_ids(p.catIds, "params.catIds")
        use_cats = bool(p.useCats)
        g = gt_groups(self.cocoGt, img_ids, cat_ids, use_cats, p.iouType)
        d = dt_groups(self.cocoDt, img_ids, cat_ids, use_cats, p.iouType)
        iou_thrs = np.asarray(p.iouThrs, dtype=np.float64).reshape(-1)
        area_rng = np.asarray(p.areaRng, dtype=np.float64).reshape(-1, 2)
        max_det = int(p.maxDets[-1])
        ious = iou_off = None
        if p.iouType == "segm":
            ious, iou_off = rle.grouped_iou(
                self.cocoDt.rle_batch(), d.rows, d.offsets, self.cocoGt.rle_batch(), g.rows, g.offsets, g.crowd
            )
        elif p.iouType == "keypoints":
            if use_cats:
                ious, iou_off = keypoints.grouped_oks(
                    self.cocoGt.columns(), g, self.cocoDt.columns(), d, getattr(p, "kpt_oks_sigmas", keypoints.SIGMAS)
                )
            else:
                ious, iou_off = keypoints.no_ious(g, d)
        no_boxes = torch.zeros(0, 4, dtype=torch.float64)
        args = (
            g.offsets,
            g.boxes if g.boxes is not None else no_boxes,
            g.area,
            g.crowd,
            g.ignore,
            g.ids,
            d.offsets,
            d.rows,
            d.boxes if d.boxes is not None else no_boxes,
            d.area,
            d.score,
            d.ids,
            ious,
            iou_off,
            _t(iou_thrs),
            _t(area_rng),
            max_det,
        )
        det_off, _, det_score, det_flags, npos, _ = torch.ops.fastops.coco_evaluate(*args, False)
        self._evalImgs = None
        self._evaluated = {
            "args": args,
            "det_offsets": det_off,
            "gt_offsets": g.offsets,
            "det_score": det_score,
            "det_flags": det_flags,
            "num_positive": npos,
            "num_images": len(img_ids),
            "num_iou_thrs": len(iou_thrs),
        }
        self._paramsEval = _copy_params(self.params)

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
        det_off, det_index, _, det_flags, _, det_match = torch.ops.fastops.coco_evaluate(*args, True)
        det_off, det_index = det_off.numpy(), det_index.numpy()
        det_flags, det_match = det_flags.numpy(), det_match.numpy()
        g_off, g_area, g_ignore, g_ids = args[0].numpy(), args[2].numpy(), args[4].numpy(), args[5].numpy()
        d_off, d_rows = args[6].numpy(), args[7].numpy()
        d_score, d_ids = args[10].numpy()[d_rows], args[11].numpy()[d_rows]  # by position
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
        k_list = _positions_in(p.catIds, setK, catIds)
        m_list = [m for n, m in enumerate(p.maxDets) if m in setM]
        a_list = [n for n, a in enumerate(map(lambda x: tuple(x), p.areaRng)) if a in setA]
        i_list = _positions_in(p.imgIds, setI, _pe.imgIds)
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
        """The 12 COCO numbers (10 for keypoints) in self.stats (float64), printed as pycocotools
        prints them."""

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

        def _summarizeKps():
            stats = np.zeros((10,))
            stats[0] = _summarize(1, maxDets=20)
            stats[1] = _summarize(1, maxDets=20, iouThr=0.5)
            stats[2] = _summarize(1, maxDets=20, iouThr=0.75)
            stats[3] = _summarize(1, maxDets=20, areaRng="medium")
            stats[4] = _summarize(1, maxDets=20, areaRng="large")
            stats[5] = _summarize(0, maxDets=20)
            stats[6] = _summarize(0, maxDets=20, iouThr=0.5)
            stats[7] = _summarize(0, maxDets=20, iouThr=0.75)
            stats[8] = _summarize(0, maxDets=20, areaRng="medium")
            stats[9] = _summarize(0, maxDets=20, areaRng="large")
            return stats

        if not self.eval:
            raise Exception("Please run accumulate() first")
        self.stats = _summarizeKps() if self.params.iouType == "keypoints" else _summarizeDets()

    def __str__(self):
        self.summarize()
        return ""
