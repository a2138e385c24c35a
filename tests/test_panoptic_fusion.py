"""Panoptic FPN's fusion (``combine_semantic_and_instances``) against a plain-Python transcription of
its description (tests/reference/panoptic_fusion.py) on generated cases, its threshold edges, and
the ``category * divisor + instance`` form read back by ``fastops.metrics.panoptic_quality``."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from reference import panoptic_fusion as ref

from fastops.metrics import panoptic_quality
from fastops.models.components import combine_semantic_and_instances, panoptic_labels


def _fuse(masks, scores, labels, semantic, **kw):
    return combine_semantic_and_instances(
        torch.as_tensor(masks, dtype=torch.bool).reshape(-1, *torch.as_tensor(semantic).shape),
        torch.as_tensor(scores, dtype=torch.float32),
        torch.as_tensor(labels, dtype=torch.int64),
        torch.as_tensor(semantic, dtype=torch.int64),
        **kw,
    )


def _assert_matches_reference(masks, scores, labels, semantic, overlap, area, score):
    panoptic, segments = _fuse(
        masks, scores, labels, semantic, overlap_threshold=overlap, stuff_area_threshold=area, score_threshold=score
    )
    # the reference compares the float32 scores the op sees
    scores32 = torch.as_tensor(scores, dtype=torch.float32).tolist()
    expected_map, expected_segments = ref.fuse(
        torch.as_tensor(masks, dtype=torch.bool).tolist(), scores32, labels, semantic, overlap, area, score
    )
    assert panoptic.dtype == torch.int64
    assert panoptic.tolist() == expected_map
    got = [(s["id"], s["category_id"], s["isthing"], s["score"], s["area"]) for s in segments]
    assert got == expected_segments
    for s in segments:
        assert int((panoptic == s["id"]).sum()) == s["area"] > 0
        if s["isthing"]:
            assert s["category_id"] == labels[s["instance"]]


@st.composite
def _cases(draw):
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    k = draw(st.integers(0, 6))
    # rectangles, so masks overlap in every proportion; some empty
    masks = []
    for _ in range(k):
        y0, y1 = sorted(draw(st.lists(st.integers(0, h), min_size=2, max_size=2)))
        x0, x1 = sorted(draw(st.lists(st.integers(0, w), min_size=2, max_size=2)))
        masks.append([[y0 <= y < y1 and x0 <= x < x1 for x in range(w)] for y in range(h)])
    # few distinct scores, so ties and scores at the threshold occur
    scores = draw(st.lists(st.sampled_from([0.2, 0.5, 0.7, 0.7, 0.9, 1.0]), min_size=k, max_size=k))
    labels = draw(st.lists(st.integers(1, 3), min_size=k, max_size=k))
    semantic = draw(st.lists(st.lists(st.integers(0, 3), min_size=w, max_size=w), min_size=h, max_size=h))
    overlap = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    area = draw(st.integers(0, 6))
    score = draw(st.sampled_from([0.0, 0.5, 0.7]))
    return masks, scores, labels, semantic, overlap, area, score


@given(_cases())
def test_fusion_matches_the_reference(case):
    masks, scores, labels, semantic, overlap, area, score = case
    _assert_matches_reference(masks, scores, labels, semantic, overlap, area, score)


def _rect(h, w, y0, y1, x0, x1):
    return [[y0 <= y < y1 and x0 <= x < x1 for x in range(w)] for y in range(h)]


def test_overlap_at_the_threshold_keeps_the_instance_and_above_drops_it():
    first = _rect(4, 4, 0, 4, 0, 2)  # 8 pixels, the left half
    second = _rect(4, 4, 0, 4, 1, 3)  # 8 pixels, 4 of them under the first
    semantic = [[0] * 4] * 4
    for overlap, kept in [(0.5, True), (0.49, False)]:
        panoptic, segments = _fuse([first, second], [0.9, 0.8], [1, 2], semantic, overlap_threshold=overlap)
        assert [s["category_id"] for s in segments] == ([1, 2] if kept else [1])
        if kept:  # the second takes only its free pixels
            assert segments[1]["area"] == 4 and int((panoptic == 2).sum()) == 4
            assert bool((panoptic[:, 1] == 1).all())


def test_the_better_score_goes_first_whatever_the_order():
    a, b = _rect(3, 3, 0, 3, 0, 3), _rect(3, 3, 0, 3, 0, 3)
    semantic = [[0] * 3] * 3
    _, segments = _fuse([a, b], [0.6, 0.95], [1, 2], semantic)
    assert [(s["category_id"], s["instance"]) for s in segments] == [(2, 1)]


def test_score_and_area_thresholds_are_inclusive():
    mask = _rect(4, 4, 0, 2, 0, 2)
    semantic = [[0, 0, 5, 5], [0, 0, 5, 5], [6, 6, 6, 6], [7, 7, 7, 7]]
    _, segments = _fuse([mask], [0.5], [1], semantic, score_threshold=0.5, stuff_area_threshold=4)
    assert [(s["category_id"], s["isthing"]) for s in segments] == [(1, True), (5, False), (6, False), (7, False)]
    _, segments = _fuse([mask], [0.4999], [1], semantic, score_threshold=0.5, stuff_area_threshold=5)
    assert segments == []


def test_empty_masks_and_empty_stuff_make_no_segment():
    semantic = [[3, 3], [3, 3]]
    panoptic, segments = _fuse(
        [_rect(2, 2, 0, 0, 0, 0), _rect(2, 2, 0, 2, 0, 2)], [0.9, 0.8], [1, 2], semantic, stuff_area_threshold=0
    )
    assert [(s["id"], s["category_id"]) for s in segments] == [(1, 2)]  # stuff 3 is fully covered
    assert bool((panoptic == 1).all())


def test_no_instances_gives_stuff_only_and_void_elsewhere():
    panoptic, segments = _fuse(torch.zeros(0, 3, 3), [], [], [[0, 1, 1], [0, 1, 1], [0, 2, 2]], stuff_area_threshold=3)
    assert [s["category_id"] for s in segments] == [1]
    assert panoptic.tolist() == [[0, 1, 1], [0, 1, 1], [0, 0, 0]]


def test_bad_input_names_the_argument():
    masks, scores, labels = torch.zeros(2, 4, 4, dtype=torch.bool), torch.ones(2), torch.ones(2, dtype=torch.int64)
    semantic = torch.zeros(4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"masks: expected \[K, 4, 4\]"):
        combine_semantic_and_instances(masks[:, :3], scores, labels, semantic)
    with pytest.raises(ValueError, match=r"scores and labels: expected shape \[2\]"):
        combine_semantic_and_instances(masks, scores[:1], labels, semantic)
    with pytest.raises(ValueError, match=r"semantic: expected an integer \[H, W\] map"):
        combine_semantic_and_instances(masks, scores, labels, semantic.float())


def test_label_form_numbers_instances_per_category_and_scores_as_the_map():
    semantic = [[9] * 6 for _ in range(4)]
    masks = [_rect(4, 6, 0, 2, 0, 2), _rect(4, 6, 0, 2, 2, 4), _rect(4, 6, 2, 4, 0, 3)]
    panoptic, segments = _fuse(masks, [0.9, 0.8, 0.7], [1, 1, 2], semantic, stuff_area_threshold=1)
    labels = panoptic_labels(panoptic, segments, label_divisor=100)
    assert labels.tolist() == [
        [101, 101, 102, 102, 900, 900],
        [101, 101, 102, 102, 900, 900],
        [201, 201, 201, 900, 900, 900],
        [201, 201, 201, 900, 900, 900],
    ]
    # the same map as ground truth and prediction: every segment matches
    result = panoptic_quality([labels], [labels], {1: True, 2: True, 9: False}, label_divisor=100)
    assert result["All"]["pq"] == 1.0 and result["All"]["n"] == 3
    void = panoptic_labels(torch.zeros(2, 2, dtype=torch.int64), [], label_divisor=100)
    assert void.tolist() == [[-1, -1], [-1, -1]]
    with pytest.raises(ValueError, match="label_divisor"):
        panoptic_labels(panoptic, segments, label_divisor=2)
    with pytest.raises(ValueError, match="panoptic: segment ids"):
        panoptic_labels(panoptic + 5, segments)
    with pytest.raises(ValueError, match="segments_info: ids must be distinct and positive"):
        panoptic_labels(panoptic, [*segments, segments[0]])
    # unlisted ids (a segment dropped after the fusion) are void
    assert panoptic_labels(panoptic, segments[1:], label_divisor=100)[0, 0] == -1
