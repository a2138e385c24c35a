"""SyntheticShapes (determinism, invariants, the class distribution) and the batching helpers."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastops.data import SyntheticShapes, collate, image_labels, label_counts, stack_images


def check_sample(ds, i):
    image, t = ds[i]
    h, w = ds.image_size
    c = ds.num_classes
    assert image.dtype == torch.float32 and image.shape == (3, h, w)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    k = t["labels"].shape[0]
    assert t["labels"].dtype == torch.int64 and t["labels"].tolist() == ds.image_labels(i)
    assert t["boxes"].dtype == torch.float32 and t["boxes"].shape == (k, 4)
    assert t["masks"].dtype == torch.uint8 and t["masks"].shape == (k, h, w)
    assert t["semantic"].dtype == torch.int64 and t["semantic"].shape == (h, w)
    assert t["tags"].dtype == torch.float32 and t["tags"].shape == (c,)
    assert t["image_id"] == i
    assert ds.min_objects <= k <= ds.max_objects
    assert int(t["labels"].min()) >= 1 and int(t["labels"].max()) <= c
    # boxes: the tightest pixel-edge box around each mask, inside the image, positive size
    for j in range(k):
        m = t["masks"][j].bool()
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert ys.numel() > 0
        tight = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert torch.equal(t["boxes"][j], tight)
    b = t["boxes"]
    assert bool((b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all())
    assert bool((b[:, :2] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all())
    # masks never overlap; semantic is each mask's class, 0 elsewhere
    assert int(t["masks"].sum(0).max()) <= 1
    expected = (t["masks"].long() * t["labels"][:, None, None]).sum(0)
    assert torch.equal(t["semantic"], expected)
    tags = torch.zeros(c)
    tags[t["labels"] - 1] = 1
    assert torch.equal(t["tags"], tags)
    return image, t


def test_invariants_default():
    ds = SyntheticShapes(40, 96, num_classes=9, max_objects=6, imbalance=5, seed=3)
    for i in range(len(ds)):
        check_sample(ds, i)
    assert ds.has_masks and ds.has_semantic and len(ds.class_names) == 9


@settings(max_examples=25)
@given(
    h=st.integers(20, 80),
    w=st.integers(20, 80),
    c=st.integers(1, 12),
    max_objects=st.integers(1, 5),
    single=st.booleans(),
    seed=st.integers(0, 2**40),
    index=st.integers(0, 50),
)
def test_invariants_any_size(h, w, c, max_objects, single, seed, index):
    ds = SyntheticShapes(51, (h, w), num_classes=c, max_objects=max_objects, seed=seed, single_object=single)
    _, t = check_sample(ds, index)
    if single:
        assert t["labels"].shape == (1,)


def test_deterministic_by_seed_and_index():
    a = SyntheticShapes(10, 64, seed=7, imbalance=4)
    b = SyntheticShapes(1000, 64, seed=7, imbalance=4)  # the length does not change image i
    c = SyntheticShapes(10, 64, seed=8, imbalance=4)
    for i in (0, 5, 9):
        ia, ta = a[i]
        ib, tb = b[i]
        assert torch.equal(ia, ib)
        for key in ("boxes", "labels", "masks", "semantic", "tags"):
            assert torch.equal(ta[key], tb[key])
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[1][0])


def test_single_object_one_object_and_large():
    ds = SyntheticShapes(20, 64, num_classes=3, single_object=True, seed=2)
    for i in range(len(ds)):
        _, t = check_sample(ds, i)
        assert t["labels"].shape == (1,)
        bw, bh = (t["boxes"][0, 2:] - t["boxes"][0, :2]).tolist()
        assert bw >= 0.2 * 64 and bh >= 0.2 * 64


@pytest.mark.parametrize("imbalance", [1.0, 10.0, 100.0])
def test_class_distribution_matches_imbalance(imbalance):
    n_images, c = 20000, 5
    ds = SyntheticShapes(n_images, 64, num_classes=c, max_objects=3, imbalance=imbalance, seed=11)
    counts = ds.label_counts().double()
    total = counts.sum()
    # P(c) ~ imbalance^(-(c-1)/(C-1)), written from the definition
    p = torch.tensor([imbalance ** (-k / (c - 1)) for k in range(c)], dtype=torch.float64)
    p /= p.sum()
    z = (counts - total * p) / torch.sqrt(total * p * (1 - p))
    assert float(z.abs().max()) < 5.0, (counts, total * p)
    # objects per image uniform in [1, 3]
    assert abs(float(total) / n_images - 2.0) < 5 * math.sqrt(2 / 3 / n_images)
    # label_counts equals counting image_labels, also through the module-level helpers
    sub = SyntheticShapes(300, 64, num_classes=c, max_objects=3, imbalance=imbalance, seed=11)
    rows = image_labels(sub)
    assert torch.equal(label_counts(rows, c), sub.label_counts())
    assert torch.equal(label_counts(sub), sub.label_counts())


def test_label_helpers_follow_subsets_and_targets():
    ds = SyntheticShapes(30, 48, num_classes=4, seed=5)
    subset = torch.utils.data.Subset(ds, [3, 7, 11])
    assert image_labels(subset) == [ds.image_labels(i) for i in (3, 7, 11)]

    class Plain(torch.utils.data.Dataset):  # no image_labels: read from the targets
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return ds[i]

    assert image_labels(Plain()) == [ds.image_labels(i) for i in range(4)]
    with pytest.raises(ValueError, match="labels must be in"):
        label_counts([[1, 5]], 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="imbalance"):
        SyntheticShapes(4, 64, imbalance=0.5)
    with pytest.raises(ValueError, match="max_objects"):
        SyntheticShapes(4, 64, min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="too small"):
        SyntheticShapes(4, 16, max_objects=16)
    with pytest.raises(IndexError):
        SyntheticShapes(4, 64)[4]


def test_collate_and_stack_images():
    ds = SyntheticShapes(4, (40, 56), seed=1)
    images, targets = collate([ds[i] for i in range(3)])
    assert len(images) == 3 and len(targets) == 3 and torch.equal(images[1], ds[1][0])
    stacked = stack_images(images)
    assert stacked.shape == (3, 3, 40, 56) and torch.equal(stacked[2], images[2])
    assert stack_images([t["tags"] for t in targets]).shape == (3, 5)
    # different sizes: padded at the bottom and right
    a, b = torch.rand(3, 5, 7), torch.rand(3, 6, 4)
    out = stack_images([a, b])
    assert out.shape == (2, 3, 6, 7)
    assert torch.equal(out[0, :, :5, :7], a) and bool((out[0, :, 5:] == 0).all())
    assert torch.equal(out[1, :, :6, :4], b) and bool((out[1, :, :, 4:] == 0).all())
    sem = stack_images([torch.zeros(2, 2, dtype=torch.int64), torch.ones(3, 1, dtype=torch.int64)], pad_value=255)
    assert sem.tolist() == [[[0, 0], [0, 0], [255, 255]], [[1, 255], [1, 255], [1, 255]]]
    with pytest.raises(ValueError, match="only the last two sizes"):
        stack_images([torch.rand(3, 4, 4), torch.rand(1, 4, 4)])
    with pytest.raises(TypeError, match="pair"):
        collate([torch.rand(3)])


def test_works_in_a_dataloader():
    ds = SyntheticShapes(6, 32, seed=4)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)
    images, targets = next(iter(loader))
    assert len(images) == 4 and all(np.array_equal(t["labels"], ds[i][1]["labels"]) for i, t in enumerate(targets))


def test_pickles_for_dataloader_workers():
    import pickle

    ds = SyntheticShapes(5, 40, num_classes=3, imbalance=3, seed=12)
    copy = pickle.loads(pickle.dumps(ds))
    for i in range(len(ds)):
        assert torch.equal(copy[i][0], ds[i][0]) and torch.equal(copy[i][1]["masks"], ds[i][1]["masks"])
