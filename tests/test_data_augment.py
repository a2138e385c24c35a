"""Augmentations keep images and targets consistent: random erasing, copy-paste, mixup.

Invariants on generated inputs (SyntheticShapes of random sizes and seeds, and random overlapping
masks), exact hand-built cases, determinism by seed, and the argument errors."""

import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference.boxes import tight_boxes

from fastops.data import (
    CopyPaste,
    DetectionMixUp,
    MixUp,
    RandomErasing,
    SyntheticShapes,
    boxes_from_masks,
    collate,
    copy_paste,
    mixup,
    mixup_detection,
)
from fastops.data.transforms import Compose, RandomHorizontalFlip

NUM_CLASSES = 6


def gen(seed):
    return torch.Generator().manual_seed(seed)


def shapes(seed, size, max_objects=4):
    return SyntheticShapes(1, size, num_classes=NUM_CLASSES, max_objects=max_objects, seed=seed)[0]


def overlapping_sample(seed, h, w, k):
    """An image with k random rectangles and discs that may overlap: masks, tight boxes, semantic
    map painted larger first (smaller on top), tags, iscrowd all False."""
    g = gen(seed)
    ys, xs = torch.arange(h)[:, None], torch.arange(w)[None, :]
    masks = torch.zeros((k, h, w), dtype=torch.uint8)
    for j in range(k):
        cy, cx = int(torch.randint(0, h, (), generator=g)), int(torch.randint(0, w, (), generator=g))
        r = int(torch.randint(2, max(3, min(h, w) // 2), (), generator=g))
        if j % 2:
            masks[j] = ((ys - cy) ** 2 + (xs - cx) ** 2 <= r * r).to(torch.uint8)
        else:
            masks[j, max(0, cy - r) : cy + r, max(0, cx - r) : cx + r] = 1
    labels = torch.randint(1, NUM_CLASSES + 1, (k,), generator=g)
    semantic = torch.zeros((h, w), dtype=torch.int64)
    for j in torch.argsort(masks.flatten(1).sum(1), descending=True, stable=True).tolist():
        semantic[masks[j].bool()] = labels[j]
    tags = torch.zeros(NUM_CLASSES)
    tags[labels - 1] = 1
    target = {
        "boxes": tight_boxes(masks),
        "labels": labels,
        "masks": masks,
        "semantic": semantic,
        "tags": tags,
        "iscrowd": torch.zeros(k, dtype=torch.bool),
        "area": masks.flatten(1).sum(1).float(),
        "image_id": seed,
    }
    return torch.rand((3, h, w), generator=g), target


def check_target(image, t, *, disjoint):
    """Boxes tight around nonempty masks inside the image, semantic map and tags consistent with
    the labels; with disjoint masks, the semantic map is exactly their labels' sum."""
    h, w = image.shape[-2:]
    k = t["labels"].shape[0]
    assert t["boxes"].shape == (k, 4) and t["boxes"].dtype == torch.float32
    assert t["masks"].shape == (k, h, w) and t["masks"].dtype == torch.uint8
    assert t["semantic"].shape == (h, w) and t["semantic"].dtype == torch.int64
    assert t["labels"].dtype == torch.int64 and t["tags"].dtype == torch.float32
    assert bool((t["masks"].flatten(1).sum(1) > 0).all())
    assert torch.equal(t["boxes"], tight_boxes(t["masks"]))
    assert bool((t["boxes"] >= 0).all() and (t["boxes"][:, 0::2] <= w).all() and (t["boxes"][:, 1::2] <= h).all())
    tags = torch.zeros(NUM_CLASSES)
    tags[t["labels"] - 1] = 1
    assert torch.equal(t["tags"], tags)
    if disjoint:
        assert int(t["masks"].sum(0, dtype=torch.int64).amax()) <= 1
        painted = (t["masks"].long() * t["labels"][:, None, None]).sum(0)
        ignored = t["semantic"] == 255
        assert torch.equal(t["semantic"][~ignored], painted[~ignored]) and not bool(painted[ignored].any())
    else:
        # every labelled pixel lies under a mask of its class
        by_class = torch.zeros((NUM_CLASSES + 1, h, w), dtype=torch.bool)
        for m, c in zip(t["masks"].bool(), t["labels"].tolist()):
            by_class[c] |= m
        labelled = (t["semantic"] > 0) & (t["semantic"] != 255)
        covered = by_class.gather(0, t["semantic"].clamp(max=NUM_CLASSES)[None])[0]
        assert bool(covered[labelled].all())
    if "area" in t:
        assert torch.equal(t["area"], t["masks"].flatten(1).sum(1).float())


def assert_same(a, b):
    assert torch.equal(a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for key, value in a[1].items():
        assert torch.equal(value, b[1][key]) if isinstance(value, torch.Tensor) else value == b[1][key]


@settings(max_examples=30)
@given(
    k=st.integers(0, 5),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    density=st.floats(0.0, 0.3),
    dtype=st.sampled_from([torch.uint8, torch.bool, torch.float32, torch.int64]),
    seed=st.integers(0, 2**31),
)
def test_boxes_from_masks_against_a_loop(k, h, w, density, dtype, seed):
    g = gen(seed)
    values = torch.randint(1, 256, (k, h, w), generator=g)  # any nonzero value is inside
    masks = torch.where(torch.rand(k, h, w, generator=g) < density, values, 0).to(dtype)
    boxes = boxes_from_masks(masks)
    assert boxes.shape == (k, 4) and boxes.dtype == torch.float32
    for box, m in zip(boxes, masks):
        expected = tight_boxes(m[None]) if bool((m != 0).any()) else torch.zeros(1, 4)
        assert torch.equal(box, expected[0])


# ---------------------------------------------------------------- RandomErasing


@given(
    h=st.integers(1, 80),
    w=st.integers(1, 80),
    lo=st.floats(0.01, 1.0),
    span=st.floats(0.0, 1.0),
    rlo=st.floats(0.1, 3.0),
    rspan=st.floats(1.0, 4.0),
    seed=st.integers(0, 2**31),
)
def test_erasing_rectangle_inside_with_area_in_range(h, w, lo, span, rlo, rspan, seed):
    hi = min(1.0, lo + span)
    erasing = RandomErasing(scale=(lo, hi), ratio=(rlo, rlo * rspan), max_tries=20)
    rect = erasing.get_params(h, w, gen(seed))
    if rect is None:
        return
    top, left, eh, ew = rect
    assert top >= 0 and left >= 0 and eh >= 1 and ew >= 1 and top + eh <= h and left + ew <= w
    assert lo * h * w <= eh * ew <= hi * h * w


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**31),
    size=st.tuples(st.integers(16, 72), st.integers(16, 72)),
    mode=st.sampled_from(["image", "object", "image_and_object"]),
    semantic=st.sampled_from(["keep", "ignore"]),
    drop=st.booleans(),
)
def test_erasing_changes_exactly_the_drawn_rectangles(seed, size, mode, semantic, drop):
    image, target = shapes(seed % 1000, size)
    erasing = RandomErasing(
        p=0.7, scale=(0.05, 0.6), value=(2.0, -1.0, 3.0), mode=mode, semantic=semantic, drop_erased=drop
    )
    rects = erasing.rectangles(image, target, gen(seed))
    out_image, out = erasing(image, target, gen(seed))
    erased = torch.zeros(size, dtype=torch.bool)
    for top, left, eh, ew in rects:
        erased[top : top + eh, left : left + ew] = True
    assert out_image.shape == image.shape and out_image.dtype == image.dtype
    assert torch.equal(out_image[:, ~erased], image[:, ~erased])
    fill = torch.tensor([2.0, -1.0, 3.0])[:, None]
    assert torch.equal(out_image[:, erased], fill.expand(-1, int(erased.sum())))
    if mode == "object":
        inside = torch.zeros(size, dtype=torch.bool)
        for x0, y0, x1, y1 in target["boxes"].long().tolist():
            inside[y0:y1, x0:x1] = True
        assert bool(inside[erased].all())
    if semantic == "ignore":
        assert torch.equal(out["semantic"] == 255, erased)
    else:
        assert not bool((out["semantic"] == 255).any())
    hidden = ~(target["masks"].bool() & ~erased).flatten(1).any(1)
    kept = ~hidden if drop else torch.ones_like(hidden)
    for key in ("boxes", "labels", "masks"):
        assert torch.equal(out[key], target[key][kept])
    if semantic == "keep":
        check_target(out_image, out, disjoint=True)


def test_erasing_whole_image_drops_every_object_when_asked():
    image, target = shapes(3, 40)
    erase_all = dict(p=1.0, scale=(1.0, 1.0), ratio=(1.0, 1.0), value=0.0)
    out_image, out = RandomErasing(**erase_all, drop_erased=True)(image, target, gen(0))
    assert torch.equal(out_image, torch.zeros_like(image))
    assert out["labels"].numel() == 0 and out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 40, 40)
    assert torch.equal(out["semantic"], torch.zeros_like(target["semantic"]))
    assert torch.equal(out["tags"], torch.zeros(NUM_CLASSES))
    _, kept = RandomErasing(**erase_all)(image, target, gen(0))
    assert torch.equal(kept["boxes"], target["boxes"]) and torch.equal(kept["semantic"], target["semantic"])
    _, ignored = RandomErasing(**erase_all, semantic="ignore", drop_erased=True)(image, target, gen(0))
    assert bool((ignored["semantic"] == 255).all()) and ignored["labels"].numel() == 0


def test_erasing_drops_fully_erased_boxes_without_masks():
    image = torch.rand(3, 40, 40)
    target = {"boxes": torch.tensor([[2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 40.0, 40.0]]), "labels": torch.tensor([1, 2])}

    class OneRect(RandomErasing):
        def rectangles(self, image, target, generator=None):
            return [(1, 1, 10, 10)]

    _, out = OneRect(drop_erased=True)(image, target)
    assert out["labels"].tolist() == [2]


def test_erasing_random_values_and_determinism():
    image, target = shapes(5, (48, 64))
    erasing = RandomErasing(p=1.0, mode="image_and_object")
    a, b = erasing(image, target, gen(11)), erasing(image, target, gen(11))
    assert_same(a, b)
    assert not torch.equal(a[0], image)
    changed = (a[0] != image).any(0)
    assert float(a[0][:, changed].min()) >= 0 and float(a[0][:, changed].max()) < 1
    c = erasing(image, target, gen(12))
    assert not torch.equal(a[0], c[0])
    assert torch.equal(image, shapes(5, (48, 64))[0])  # the input is not modified


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_erasing_keeps_dtype_and_empty_targets(dtype):
    image = torch.rand(3, 20, 30).to(dtype)
    empty = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 20, 30, dtype=torch.uint8),
        "semantic": torch.zeros(20, 30, dtype=torch.int64),
        "tags": torch.zeros(NUM_CLASSES),
    }
    out_image, out = RandomErasing(p=1.0, mode="image_and_object", semantic="ignore", drop_erased=True)(
        image, empty, gen(0)
    )
    assert out_image.dtype == dtype and out_image.shape == image.shape
    assert out["labels"].numel() == 0 and out["masks"].shape == (0, 20, 30)


def test_erasing_no_fit_leaves_the_image():
    image = torch.rand(3, 1, 1)
    # a 1 x 1 region cannot hold 1% to 2% of itself in whole pixels
    out_image, out = RandomErasing(p=1.0, scale=(0.01, 0.02), mode="image")(image, {}, gen(0))
    assert torch.equal(out_image, image) and out == {}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(p=1.5), "p must be"),
        (dict(scale=(0.5, 0.2)), "scale"),
        (dict(scale=(0.0, 0.2)), "scale"),
        (dict(ratio=(0.0, 1.0)), "ratio"),
        (dict(ratio=(2.0, 1.0)), "ratio"),
        (dict(value="noise"), "value"),
        (dict(value=()), "value"),
        (dict(mode="boxes"), "mode"),
        (dict(semantic="drop"), "semantic"),
        (dict(max_tries=0), "max_tries"),
    ],
)
def test_erasing_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomErasing(**kwargs)


def test_erasing_bad_inputs():
    with pytest.raises(TypeError, match="image must be a floating Tensor"):
        RandomErasing(p=1.0)(torch.zeros(3, 8, 8, dtype=torch.uint8), {})
    with pytest.raises(TypeError, match="image must be a floating Tensor"):
        RandomErasing(p=1.0)(torch.zeros(8, 8), {})
    with pytest.raises(ValueError, match="2 entries for an image of 3 channels"):
        RandomErasing(p=1.0, value=(0.0, 1.0))(torch.zeros(3, 8, 8), {})


# ---------------------------------------------------------------- copy-paste


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**31),
    size=st.tuples(st.integers(24, 72), st.integers(24, 72)),
    source_size=st.tuples(st.integers(24, 96), st.integers(24, 96)),
    jitter=st.sampled_from([None, (0.5, 1.5), (0.1, 2.0)]),
    min_area=st.integers(1, 40),
)
def test_copy_paste_invariants_on_synthetic_shapes(seed, size, source_size, jitter, min_area):
    image, target = shapes(seed % 997, size)
    target["difficult"] = torch.ones_like(target["labels"], dtype=torch.bool)  # marks the target's own objects
    source_image, source_target = shapes(seed % 991 + 5000, source_size)
    out_image, out = copy_paste(
        image, target, source_image, source_target, generator=gen(seed), scale_range=jitter, min_area=min_area
    )
    assert out_image.shape == image.shape and out_image.dtype == image.dtype
    assert float(out_image.min()) >= 0 and float(out_image.max()) <= 1
    check_target(out_image, out, disjoint=True)
    assert out["image_id"] == target["image_id"]
    own = out["difficult"]
    k_own = int(own.sum())
    assert bool(own[:k_own].all()) and not bool(own[k_own:].any())  # the target's objects come first
    union = out["masks"][k_own:].bool().any(0)
    # each surviving object is its original less the pasted pixels (masks are disjoint: the
    # original is the one it overlaps); the others were occluded below min_area
    originals = target["masks"].bool()
    matched = []
    for m, label in zip(out["masks"][:k_own].bool(), out["labels"][:k_own].tolist()):
        i = int((originals & m).flatten(1).sum(1).argmax())
        matched.append(i)
        assert target["labels"][i] == label and torch.equal(m, originals[i] & ~union)
        if bool((originals[i] & union).any()):
            assert int(m.sum()) >= min_area
    assert matched == sorted(set(matched))
    left_of_dropped = torch.zeros(size, dtype=torch.bool)
    for i in set(range(originals.shape[0])) - set(matched):
        assert int((originals[i] & ~union).sum()) < min_area
        left_of_dropped |= originals[i] & ~union
    assert torch.equal(out["semantic"] == 255, left_of_dropped)
    # outside the pasted masks the image is unchanged
    assert torch.equal(out_image[:, ~union], image[:, ~union])
    assert set(out["labels"][k_own:].tolist()) <= set(source_target["labels"].tolist())


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31), k=st.integers(0, 6), k_source=st.integers(0, 6), sigma=st.sampled_from([0.0, 1.5]))
def test_copy_paste_invariants_with_overlapping_masks(seed, k, k_source, sigma):
    image, target = overlapping_sample(seed, 30, 40, k)
    source_image, source_target = overlapping_sample(seed + 1, 36, 28, k_source)
    out_image, out = copy_paste(image, target, source_image, source_target, generator=gen(seed), blend_sigma=sigma)
    check_target(out_image, out, disjoint=False)
    assert out["iscrowd"].dtype == torch.bool and out["iscrowd"].shape == out["labels"].shape
    if k_source == 0:
        assert_same((out_image, out), (image, target))
    assert out_image.shape == image.shape and float(out_image.min()) >= 0 and float(out_image.max()) <= 1


def test_copy_paste_exact_small_case():
    """A source object covering one target object fully and another by half."""
    h, w = 20, 30
    image = torch.full((3, h, w), 0.25)
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 2:6, 2:6] = 1  # 16 pixels, fully covered
    masks[1, 10:20, 10:20] = 1  # 100 pixels, columns 10..14 covered
    target = {
        "boxes": torch.tensor([[2.0, 2.0, 6.0, 6.0], [10.0, 10.0, 20.0, 20.0]]),
        "labels": torch.tensor([1, 2]),
        "masks": masks,
        "semantic": (masks.long() * torch.tensor([1, 2])[:, None, None]).sum(0),
        "tags": torch.tensor([1.0, 1.0, 0.0]),
        "difficult": torch.tensor([False, True]),
        "image_id": 7,
    }
    source_image = torch.full((3, h, w), 0.75)
    source_mask = torch.zeros(1, h, w, dtype=torch.uint8)
    source_mask[0, 0:20, 0:15] = 1
    source = {"boxes": torch.tensor([[0.0, 0.0, 15.0, 20.0]]), "labels": torch.tensor([3]), "masks": source_mask}
    for min_area, survives in ((50, True), (51, False)):
        out_image, out = copy_paste(image, target, source_image, source, generator=gen(0), min_area=min_area)
        expected_image = torch.where(source_mask[0].bool(), 0.75, 0.25).expand(3, -1, -1)
        assert torch.equal(out_image, expected_image)
        assert out["labels"].tolist() == ([2, 3] if survives else [3])
        assert out["difficult"].tolist() == ([True, False] if survives else [False])
        assert out["tags"].tolist() == ([0.0, 1.0, 1.0] if survives else [0.0, 0.0, 1.0])
        assert out["boxes"][-1].tolist() == [0.0, 0.0, 15.0, 20.0]
        if survives:
            assert out["boxes"][0].tolist() == [15.0, 10.0, 20.0, 20.0]
            assert int(out["masks"][0].sum()) == 50
        semantic = torch.zeros(h, w, dtype=torch.int64)
        semantic[:, :15] = 3
        semantic[10:20, 15:20] = 2 if survives else 255  # what is left of a dropped object: ignore
        assert torch.equal(out["semantic"], semantic)
        assert out["image_id"] == 7


def test_copy_paste_blend_and_crowd():
    h, w = 24, 24
    image = torch.zeros(3, h, w)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, h, w, dtype=torch.uint8)}
    m = torch.zeros(2, h, w, dtype=torch.uint8)
    m[0, 8:16, 8:16] = 1
    m[1, 0:4, 0:4] = 1
    source = {"labels": torch.tensor([1, 2]), "masks": m, "iscrowd": torch.tensor([False, True])}
    out_image, out = copy_paste(image, empty, torch.ones(3, h, w), source, generator=gen(0), blend_sigma=1.0)
    assert out["labels"].tolist() == [1]  # crowd regions are never pasted
    assert torch.equal(out["masks"][0], m[0])
    centre, far = out_image[:, 11:13, 11:13], out_image[:, :, 20:]
    assert bool((centre > 0.99).all()) and bool((far == 0).all())
    edge = out_image[0, 12, 7:9]  # just outside and inside the mask's left edge: soft
    assert 0 < float(edge[0]) < 0.5 < float(edge[1]) < 1
    only_crowd = {"labels": torch.tensor([2]), "masks": m[1:], "iscrowd": torch.tensor([True])}
    assert_same(copy_paste(image, empty, torch.ones(3, h, w), only_crowd, generator=gen(0)), (image, empty))


def test_copy_paste_transform_forms_and_determinism():
    source = SyntheticShapes(8, 40, num_classes=NUM_CLASSES, seed=99)
    image, target = shapes(2, 40)
    by_dataset = CopyPaste(source, scale_range=(0.5, 1.5))
    a, b = by_dataset(image, target, gen(3)), by_dataset(image, target, gen(3))
    assert_same(a, b)
    assert any(not torch.equal(by_dataset(image, target, gen(s))[0], a[0]) for s in range(4, 8))

    def draw(generator):
        return source[int(torch.randint(0, len(source), (), generator=generator))]

    assert_same(CopyPaste(draw, scale_range=(0.5, 1.5))(image, target, gen(3)), a)
    assert_same(CopyPaste(source, p=0.0)(image, target, gen(3)), (image, target))
    # in a dataset's transforms, through a loader's collate
    pipeline = Compose([RandomHorizontalFlip(), CopyPaste(source, blend_sigma=1.0)], seed=5)
    dataset = SyntheticShapes(4, 40, num_classes=NUM_CLASSES, seed=1, transforms=pipeline)
    images, targets = collate([dataset[i] for i in range(4)])
    for im, t in zip(images, targets):
        check_target(im, t, disjoint=True)


def test_copy_paste_bad_arguments():
    image, target = shapes(0, 32)
    with pytest.raises(ValueError, match="source_target has no 'masks'"):
        copy_paste(image, target, image, {"labels": target["labels"], "boxes": target["boxes"]})
    with pytest.raises(ValueError, match=r"target\['masks'\] is \[.*expected"):
        copy_paste(image, {**target, "masks": target["masks"][:, :8]}, image, target)
    with pytest.raises(ValueError, match="channels and dtype must match"):
        copy_paste(image, target, image[:1], {**target})
    with pytest.raises(TypeError, match="source_image must be a floating Tensor"):
        copy_paste(image, target, (image * 255).byte(), target)
    with pytest.raises(ValueError, match="scale_range"):
        copy_paste(image, target, image, target, scale_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="blend_sigma"):
        copy_paste(image, target, image, target, blend_sigma=float("nan"))
    with pytest.raises(ValueError, match="min_area"):
        copy_paste(image, target, image, target, min_area=0)
    with pytest.raises(TypeError, match="source must be a dataset or a callable"):
        CopyPaste(5)
    with pytest.raises(ValueError, match="source dataset is empty"):
        CopyPaste(SyntheticShapes(0, 32))
    with pytest.raises(ValueError, match="p must be"):
        CopyPaste(SyntheticShapes(1, 32), p=2.0)
    with pytest.raises(ValueError, match="scale_range"):
        CopyPaste(SyntheticShapes(1, 32), scale_range=(2.0, 1.0))


# ---------------------------------------------------------------- mixup


@settings(max_examples=25)
@given(
    n=st.integers(1, 9),
    c=st.integers(1, 7),
    alpha=st.floats(0.05, 5.0),
    seed=st.integers(0, 2**31),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_mixup_equals_the_float64_formula(n, c, alpha, seed, dtype):
    g = gen(seed)
    images = torch.rand(n, 3, 5, 4, generator=g).to(dtype)
    tags = (torch.rand(n, c, generator=g) < 0.4).float()
    mixed = mixup(images, tags, alpha=alpha, generator=gen(seed + 1))
    assert 0.0 <= mixed.lam <= 1.0
    assert sorted(mixed.index.tolist()) == list(range(n))
    lam, idx = mixed.lam, mixed.index
    expected_tags = lam * tags.double() + (1 - lam) * tags.double()[idx]
    assert mixed.tags.dtype == tags.dtype and torch.equal(mixed.tags, expected_tags.float())
    expected_images = lam * images.double() + (1 - lam) * images.double()[idx]
    assert mixed.images.dtype == dtype and mixed.images.shape == images.shape
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(mixed.images.double(), expected_images, rtol=0, atol=tol)
    again = mixup(images, tags, alpha=alpha, generator=gen(seed + 1))
    assert again.lam == lam and torch.equal(again.index, idx) and torch.equal(again.images, mixed.images)


def test_mixup_weights_follow_beta():
    """lam's draws against Beta(alpha, alpha) by a Kolmogorov-Smirnov test (fixed seed)."""
    g = gen(0)
    one = torch.zeros(1, 1, 1, 1), torch.zeros(1, 1)
    for alpha in (0.2, 1.0, 4.0):
        draws = [mixup(*one, alpha=alpha, generator=g).lam for _ in range(2000)]
        assert scipy.stats.kstest(draws, scipy.stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_mixup_class_empty_batch_and_errors():
    images, tags = torch.rand(4, 3, 6, 6), torch.eye(4)
    a, b = MixUp(0.4, seed=3)(images, tags), MixUp(0.4, seed=3)(images, tags)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.allclose(a[1].sum(1), torch.ones(4))
    empty = mixup(images[:0], tags[:0])
    assert empty.images.shape == (0, 3, 6, 6) and empty.tags.shape == (0, 4) and empty.lam == 1.0
    for alpha in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha must be"):
            mixup(images, tags, alpha=alpha)
        with pytest.raises(ValueError, match="alpha must be"):
            MixUp(alpha)
    with pytest.raises(TypeError, match="tags must be a floating Tensor"):
        mixup(images, tags.long())
    with pytest.raises(TypeError, match="images must be a floating Tensor"):
        mixup(images.byte(), tags)
    with pytest.raises(ValueError, match=r"tags must be \[N, K\] with N = 4"):
        mixup(images, tags[:3])


@settings(max_examples=20)
@given(
    seed=st.integers(0, 2**31),
    size=st.tuples(st.integers(16, 48), st.integers(16, 48)),
    other_size=st.tuples(st.integers(16, 48), st.integers(16, 48)),
    lam=st.floats(0.0, 1.0),
)
def test_mixup_detection_keeps_both_object_sets(seed, size, other_size, lam):
    image, target = shapes(seed % 991, size)
    other_image, other_target = shapes(seed % 997 + 3000, other_size)
    out_image, out = mixup_detection(image, target, other_image, other_target, lam)
    h, w = max(size[0], other_size[0]), max(size[1], other_size[1])
    expected = torch.zeros(3, h, w, dtype=torch.float64)
    expected[:, : size[0], : size[1]] += lam * image.double()
    expected[:, : other_size[0], : other_size[1]] += (1 - lam) * other_image.double()
    assert out_image.shape == (3, h, w) and out_image.dtype == torch.float32
    torch.testing.assert_close(out_image.double(), expected, rtol=0, atol=1e-6)
    k, k_other = target["labels"].numel(), other_target["labels"].numel()
    assert torch.equal(out["labels"], torch.cat([target["labels"], other_target["labels"]]))
    assert torch.equal(out["boxes"], torch.cat([target["boxes"], other_target["boxes"]]))
    assert out["masks"].shape == (k + k_other, h, w) and out["masks"].dtype == torch.uint8
    assert torch.equal(out["boxes"], tight_boxes(out["masks"]))
    assert torch.equal(out["weights"], torch.tensor([lam] * k + [1 - lam] * k_other, dtype=torch.float32))
    soft = lam * target["tags"].double() + (1 - lam) * other_target["tags"].double()
    assert torch.equal(out["tags"], soft.float())
    assert "semantic" not in out and out["image_id"] == target["image_id"]


def test_detection_mixup_transform_and_errors():
    source = SyntheticShapes(6, 32, num_classes=NUM_CLASSES, seed=4)
    image, target = shapes(8, 32)
    t = DetectionMixUp(source, alpha=1.5)
    assert_same(t(image, target, gen(1)), t(image, target, gen(1)))
    assert_same(DetectionMixUp(source, p=0.0)(image, target, gen(1)), (image, target))
    # the weights multiply: mixing twice
    _, once = mixup_detection(image, target, *source[0], 0.5)
    _, twice = mixup_detection(image, once, *source[1], 0.25)
    assert twice["weights"].tolist()[: target["labels"].numel()] == [0.125] * target["labels"].numel()
    with pytest.raises(ValueError, match="lam must be in"):
        mixup_detection(image, target, image, target, 1.5)
    with pytest.raises(ValueError, match="channels and dtype must match"):
        mixup_detection(image, target, image.double(), target, 0.5)
    with pytest.raises(ValueError, match="other_target has none"):
        mixup_detection(image, target, image, {"labels": target["labels"], "boxes": target["boxes"]}, 0.5)
    with pytest.raises(ValueError, match="alpha must be"):
        DetectionMixUp(source, alpha=0.0)
    with pytest.raises(TypeError, match="DetectionMixUp: source must be"):
        DetectionMixUp(None)
