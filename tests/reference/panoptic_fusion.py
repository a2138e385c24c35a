"""Panoptic FPN's fusion of instances and a semantic map (Kirillov et al. 2019, section 3; detectron2's
combine_semantic_and_instance_outputs), transcribed from its description in plain Python: pixel by
pixel on nested lists, scores and ratios in float64.

1. Instances with score >= score_threshold, best first (a stable sort: ties keep their order).
2. An instance with an empty mask is dropped; one whose mask has more than overlap_threshold of its
   pixels already assigned is dropped; otherwise its unassigned mask pixels, if any, get a new
   segment id.
3. Then, for each stuff category of the semantic map in increasing order (things_label skipped),
   its unassigned pixels get a new id if there are at least stuff_area_threshold of them (and at
   least one).
"""


def fuse(masks, scores, labels, semantic, overlap_threshold, stuff_area_threshold, score_threshold, things_label=0):
    """masks: K lists of H lists of W bools; scores, labels: K numbers; semantic: H lists of W ints.
    Returns (panoptic as H lists of W ints, segments as (id, category, isthing, score or None, area))."""
    height, width = len(semantic), len(semantic[0])
    panoptic = [[0] * width for _ in range(height)]
    segments = []
    order = sorted(range(len(scores)), key=lambda k: -float(scores[k]))
    for k in order:
        if float(scores[k]) < score_threshold:
            break
        pixels = [(y, x) for y in range(height) for x in range(width) if masks[k][y][x]]
        if not pixels:
            continue
        taken = sum(1 for y, x in pixels if panoptic[y][x] != 0)
        if float(taken) / float(len(pixels)) > overlap_threshold:
            continue
        free = [(y, x) for y, x in pixels if panoptic[y][x] == 0]
        if not free:
            continue
        new_id = len(segments) + 1
        for y, x in free:
            panoptic[y][x] = new_id
        segments.append((new_id, int(labels[k]), True, float(scores[k]), len(free)))
    categories = sorted({v for row in semantic for v in row})
    for category in categories:
        if category == things_label:
            continue
        pixels = [(y, x) for y in range(height) for x in range(width) if semantic[y][x] == category]
        free = [(y, x) for y, x in pixels if panoptic[y][x] == 0]
        if len(free) < stuff_area_threshold or not free:
            continue
        new_id = len(segments) + 1
        for y, x in free:
            panoptic[y][x] = new_id
        segments.append((new_id, category, False, None, len(free)))
    return panoptic, segments
