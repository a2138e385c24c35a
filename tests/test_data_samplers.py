"""ClassBalancedSampler and RepeatFactorSampler: the frequencies they aim at (within sampling
error), sharding like DistributedSampler, determinism by (seed, epoch), the LVIS formula."""

import math
import random
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastops
from fastops.data import ClassBalancedSampler, RepeatFactorSampler, SyntheticShapes, class_weights, repeat_factors


def single_label(counts):
    labels = [[c + 1] for c, n in enumerate(counts) for _ in range(n)]
    random.Random(0).shuffle(labels)
    return labels


def class_frequency(labels, order, num_classes):
    """Share of drawn images that contain each class."""
    seen = Counter(c for i in order for c in set(labels[i]))
    return torch.tensor([seen[c] / len(order) for c in range(1, num_classes + 1)], dtype=torch.float64)


def test_class_weights_is_the_ops_function():
    assert class_weights is fastops.ops.class_weights


def test_single_label_classes_balanced():
    labels = single_label([600, 120, 30, 6])
    n = 40000
    order = list(ClassBalancedSampler(labels, num_samples=n, seed=1))
    assert len(order) == n
    freq = class_frequency(labels, order, 4)
    sigma = math.sqrt(0.25 * 0.75 / n)
    assert float((freq - 0.25).abs().max()) < 5 * sigma, freq


@pytest.mark.parametrize("multilabel", ["mean", "rarest"])
def test_multilabel_frequencies_match_the_rule(multilabel):
    rng = random.Random(3)
    p_class = [0.7, 0.3, 0.1, 0.03]
    labels = [[c + 1 for c in range(4) if rng.random() < p_class[c]] for _ in range(3000)]
    n = 40000
    sampler = ClassBalancedSampler(labels, num_samples=n, multilabel=multilabel, seed=2)
    # the intended frequencies, from the definition in float64
    img_counts = [sum(1 for row in labels if c in row) for c in range(1, 5)]
    empty = sum(1 for row in labels if not row)
    raw = [1.0 / k for k in [*img_counts, empty]]
    w = []
    for row in labels:
        if not row:
            w.append(raw[4])
        elif multilabel == "mean":
            w.append(sum(raw[c - 1] for c in set(row)) / len(set(row)))
        else:
            w.append(max(raw[c - 1] for c in set(row)))
    total = sum(w)
    p_img = [x / total for x in w]
    intended = torch.tensor([sum(p for p, row in zip(p_img, labels) if c in row) for c in range(1, 5)])
    freq = class_frequency(labels, list(sampler), 4)
    sigma = torch.sqrt(intended * (1 - intended) / n)
    assert bool(((freq - intended).abs() < 5 * sigma).all()), (freq, intended)
    # the rare class is seen far more often than its share of the images
    assert float(freq[3]) > 3 * img_counts[3] / len(labels)


def test_undersample_no_repeats_and_balanced_length():
    labels = single_label([400, 100, 25])
    sampler = ClassBalancedSampler(labels, undersample=True, seed=5)
    order = list(sampler)
    assert len(order) == 3 * 25 == len(set(order))
    counts = Counter(labels[i][0] for i in order)
    assert counts[3] >= 10  # the rare class keeps a large share of its images
    with pytest.raises(ValueError, match="without replacement"):
        ClassBalancedSampler(labels, num_samples=10**4, replacement=False)


@settings(max_examples=20)
@given(n=st.integers(1, 60), replicas=st.integers(1, 5), seed=st.integers(0, 1000), drop_last=st.booleans())
def test_shards_disjoint_and_covering(n, replicas, seed, drop_last):
    labels = [[1 + (i % 3)] for i in range(n)]
    full = list(ClassBalancedSampler(labels, seed=seed, num_replicas=1, rank=0))
    shards = [
        list(ClassBalancedSampler(labels, seed=seed, num_replicas=replicas, rank=r, drop_last=drop_last))
        for r in range(replicas)
    ]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1
    per = lengths.pop()
    assert per == (n // replicas if drop_last else math.ceil(n / replicas))
    # interleaving the shards gives the epoch's order (padded by wrapping around)
    merged = [shards[k % replicas][k // replicas] for k in range(per * replicas)]
    padded = (full * (replicas + 1))[: per * replicas]
    assert merged == padded


def test_order_pure_function_of_seed_and_epoch():
    labels = single_label([50, 20, 5])
    a = ClassBalancedSampler(labels, seed=9)
    b = ClassBalancedSampler(labels, seed=9)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    state = a.state_dict()
    assert state == {"seed": 9, "epoch": 3}
    c = ClassBalancedSampler(labels, seed=0)
    c.set_epoch(3)
    assert list(c) != list(a)  # iterated before loading: the loaded seed must not read a stale order
    c.load_state_dict(state)
    assert list(c) == list(a)
    r1 = RepeatFactorSampler(labels, repeat_thresh=0.3, seed=1)
    r2 = RepeatFactorSampler(labels, repeat_thresh=0.3, seed=1)
    r1.set_epoch(2)
    r2.load_state_dict(r1.state_dict())
    assert list(r1) == list(r2) and len(r1) == len(list(r2))


def test_defaults_from_torch_distributed(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 4)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 2)
    s = ClassBalancedSampler([[1]] * 10, seed=0)
    assert (s.num_replicas, s.rank) == (4, 2) and len(s) == 3
    r = RepeatFactorSampler([[1]] * 10, seed=0)
    assert (r.num_replicas, r.rank) == (4, 2)


def lvis_repeat_factors(labels, t):
    """The LVIS formula, transcribed in float64 Python."""
    n = len(labels)
    classes = {c for row in labels for c in row}
    f = {c: sum(1 for row in labels if c in row) / n for c in classes}
    r_c = {c: max(1.0, math.sqrt(t / f[c])) for c in classes}
    return [max((r_c[c] for c in set(row)), default=1.0) for row in labels]


@settings(max_examples=30)
@given(
    labels=st.lists(st.lists(st.integers(1, 6), max_size=4), min_size=1, max_size=40),
    t=st.floats(0.0, 1.0),
)
def test_repeat_factors_match_lvis(labels, t):
    got = repeat_factors(labels, t)
    want = lvis_repeat_factors(labels, t)
    assert got.dtype == torch.float64
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-15, atol=0)


def test_repeat_factor_sampler_stochastic_rounding():
    ds = SyntheticShapes(200, 32, num_classes=5, max_objects=2, imbalance=30, seed=4)
    labels = [ds.image_labels(i) for i in range(len(ds))]
    t = 0.2
    sampler = RepeatFactorSampler(labels, repeat_thresh=t, seed=3)
    r = torch.tensor(lvis_repeat_factors(labels, t), dtype=torch.float64)
    assert float(r.max()) > 1.5  # the rare classes are oversampled
    epochs = 200
    total = torch.zeros(len(labels), dtype=torch.float64)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        counts = torch.bincount(torch.tensor(list(sampler)), minlength=len(labels)).double()
        # each image floor(r_i) or ceil(r_i) times
        assert bool(((counts == torch.floor(r)) | (counts == torch.ceil(r))).all())
        total += counts
    mean = total / epochs
    frac = r - torch.floor(r)
    sigma = torch.sqrt(frac * (1 - frac) / epochs)
    assert bool(((mean - r).abs() <= 5 * sigma + 1e-12).all())


def test_repeat_factor_no_shuffle_keeps_index_order_and_shards():
    labels = [[1]] * 8 + [[2]]
    order = list(RepeatFactorSampler(labels, repeat_thresh=1.0, shuffle=False))
    assert order == sorted(order) and order.count(8) == 3  # sqrt(1 / (1/9)) = 3
    shards = [
        list(RepeatFactorSampler(labels, repeat_thresh=1.0, shuffle=False, num_replicas=2, rank=k)) for k in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 6


def test_bad_arguments():
    with pytest.raises(ValueError, match="labels must be in"):
        ClassBalancedSampler([[0]], num_classes=3)
    with pytest.raises(ValueError, match="rank"):
        ClassBalancedSampler([[1]], num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="multilabel"):
        ClassBalancedSampler([[1]], multilabel="max")
    with pytest.raises(ValueError, match="repeat_thresh"):
        RepeatFactorSampler([[1]], repeat_thresh=float("nan"))


def test_in_a_dataloader():
    ds = SyntheticShapes(20, 32, num_classes=3, imbalance=10, seed=1)
    labels = [ds.image_labels(i) for i in range(len(ds))]
    sampler = ClassBalancedSampler(labels, seed=0)
    from_dataset = ClassBalancedSampler(ds, seed=0)  # a dataset is read through its image_labels
    assert list(from_dataset) == list(sampler) and from_dataset.num_classes == 3
    assert torch.equal(RepeatFactorSampler(ds, repeat_thresh=0.5).repeat_factors, repeat_factors(labels, 0.5))
    loader = torch.utils.data.DataLoader(ds, batch_size=5, sampler=sampler, collate_fn=fastops.data.collate)
    assert sum(len(images) for images, _ in loader) == 20
