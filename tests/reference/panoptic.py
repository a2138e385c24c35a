"""Panoptic quality as the COCO panoptic API computes it (panopticapi/evaluation.py: the per-image
loop of pq_compute and PQStat.pq_average), transcribed from the published algorithm in float64
Python, one image and one segment pair at a time.

Inputs per image: a ground-truth and a predicted map of segment ids (id 0 is void) and their
segment lists ({id: (category_id, iscrowd)} for the ground truth, {id: category_id} for the
prediction). The ground truth's segment areas are its pixel counts (the API reads them from its
JSON, where they are those counts).
"""

from collections import defaultdict

import numpy as np

VOID = 0
OFFSET = 256 * 256 * 256


def image_stats(gt_map, pred_map, gt_segments: dict, pred_segments: dict, stats: dict) -> None:
    """Adds one image's true positives, false positives, false negatives and IoU sums to ``stats``
    ({category_id: [tp, fp, fn, iou]})."""
    gt_map = np.asarray(gt_map, dtype=np.int64)
    pred_map = np.asarray(pred_map, dtype=np.int64)
    gt_area = {i: int((gt_map == i).sum()) for i in gt_segments}
    pred_area = {}
    ids, counts = np.unique(pred_map, return_counts=True)
    for i, n in zip(ids.tolist(), counts.tolist(), strict=True):
        if i not in pred_segments:
            if i == VOID:
                continue
            raise KeyError(f"segment {i} in the predicted map is not in its list")
        pred_area[i] = n
    if set(pred_area) != set(pred_segments):
        raise KeyError("a listed predicted segment is absent from its map")
    # the (gt id, pred id) pixel histogram
    pairs, counts = np.unique(gt_map.astype(np.uint64) * OFFSET + pred_map.astype(np.uint64), return_counts=True)
    inter = {(int(p // OFFSET), int(p % OFFSET)): int(n) for p, n in zip(pairs, counts, strict=True)}
    gt_matched, pred_matched = set(), set()
    for (g, p), n in inter.items():
        if g not in gt_segments or p not in pred_segments:
            continue
        g_cat, g_crowd = gt_segments[g]
        if g_crowd == 1 or g_cat != pred_segments[p]:
            continue
        union = pred_area[p] + gt_area[g] - n - inter.get((VOID, p), 0)
        iou = n / union
        if iou > 0.5:
            stats[g_cat][0] += 1
            stats[g_cat][3] += iou
            gt_matched.add(g)
            pred_matched.add(p)
    crowd_of = {}
    for g, (g_cat, g_crowd) in gt_segments.items():
        if g in gt_matched:
            continue
        if g_crowd == 1:
            crowd_of[g_cat] = g
            continue
        stats[g_cat][2] += 1
    for p, p_cat in pred_segments.items():
        if p in pred_matched:
            continue
        ignored = inter.get((VOID, p), 0)
        if p_cat in crowd_of:
            ignored += inter.get((crowd_of[p_cat], p), 0)
        if ignored / pred_area[p] > 0.5:
            continue
        stats[p_cat][1] += 1


def pq_average(stats: dict, categories: dict, isthing: bool | None):
    """(averages {'pq', 'sq', 'rq', 'n'}, per category {'pq', 'sq', 'rq'}) over the categories
    ({category_id: isthing}) of the kind asked for (None: all); categories never seen have zeros
    and do not count in the averages."""
    pq = sq = rq = 0.0
    n = 0
    per_class = {}
    for cat, thing in categories.items():
        if isthing is not None and thing != isthing:
            continue
        tp, fp, fn, iou = stats[cat]
        if tp + fp + fn == 0:
            per_class[cat] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
            continue
        n += 1
        pq_c = iou / (tp + 0.5 * fp + 0.5 * fn)
        sq_c = iou / tp if tp != 0 else 0.0
        rq_c = tp / (tp + 0.5 * fp + 0.5 * fn)
        per_class[cat] = {"pq": pq_c, "sq": sq_c, "rq": rq_c}
        pq, sq, rq = pq + pq_c, sq + sq_c, rq + rq_c
    if n == 0:
        return {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}, per_class
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class


def pq_compute(images, categories: dict) -> dict:
    """pq_compute's results for ``images``, a list of (gt_map, pred_map, gt_segments,
    pred_segments): {'All', 'Things', 'Stuff'} averages and 'per_class'."""
    stats = defaultdict(lambda: [0, 0, 0, 0.0])
    for gt_map, pred_map, gt_segments, pred_segments in images:
        image_stats(gt_map, pred_map, gt_segments, pred_segments, stats)
    results = {}
    for name, isthing in [("All", None), ("Things", True), ("Stuff", False)]:
        results[name], per_class = pq_average(stats, categories, isthing)
        if name == "All":
            results["per_class"] = per_class
    return results
