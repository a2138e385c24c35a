"""Transforms keep image, boxes, masks and semantic map consistent; determinism by seed."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference.boxes import tight_boxes

from fastops.data import SyntheticShapes
from fastops.data.transforms import (
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    Resize,
    crop,
    hflip,
    resize,
)

DS = SyntheticShapes(20, (48, 64), num_classes=9, max_objects=6, seed=7)


def check_consistent(image, t, box_tol=0.0):
    h, w = image.shape[-2:]
    k = t["labels"].shape[0]
    assert t["boxes"].shape == (k, 4) and t["masks"].shape == (k, h, w) and t["semantic"].shape == (h, w)
    assert torch.allclose(t["boxes"], tight_boxes(t["masks"]), atol=box_tol, rtol=0)
    assert torch.equal(t["semantic"], (t["masks"].long() * t["labels"][:, None, None]).sum(0))
    tags = torch.zeros_like(t["tags"])
    tags[t["labels"] - 1] = 1
    assert torch.equal(t["tags"], tags)


def test_hflip_twice_is_identity_and_keeps_tight_boxes():
    for i in range(5):
        image, t = DS[i]
        fi, ft = hflip(image, t)
        check_consistent(fi, ft)
        assert not torch.equal(fi, image)
        ii, it = hflip(fi, ft)
        assert torch.equal(ii, image)
        for key in ("boxes", "masks", "semantic", "labels"):
            assert torch.equal(it[key], t[key])


def check_boxes_follow_masks(rt, grew):
    """Nearest sampling puts each mask edge within half an output pixel of the scaled box edge;
    shrinking can also lose thin parts, so the mask then lies within the box grown by that half pixel."""
    visible = rt["masks"].flatten(1).any(1).bool()
    tight = tight_boxes(rt["masks"][visible])
    boxes = rt["boxes"][visible]
    if grew:
        assert bool(visible.all())
        assert bool(((boxes - tight).abs() <= 0.5 + 1e-4).all())
    else:
        slack = 0.5 + 1e-4
        assert bool((tight[:, :2] >= boxes[:, :2] - slack).all() and (tight[:, 2:] <= boxes[:, 2:] + slack).all())
    assert torch.equal(rt["semantic"], (rt["masks"].long() * rt["labels"][:, None, None]).sum(0))


@pytest.mark.parametrize("size", [(96, 128), (144, 64), (48, 64)])
def test_resize_by_whole_factors_keeps_boxes_tight(size):
    for i in range(5):
        image, t = DS[i]
        ri, rt = resize(image, t, size)
        assert ri.shape == (3, *size) and float(ri.min()) >= 0 and float(ri.max()) <= 1
        check_consistent(ri, rt)


@settings(max_examples=20)
@given(h=st.integers(20, 120), w=st.integers(20, 120), index=st.integers(0, 19))
def test_resize_any_size_boxes_follow_masks(h, w, index):
    image, t = DS[index]
    _, rt = resize(image, t, (h, w))
    check_boxes_follow_masks(rt, grew=h >= 48 and w >= 64)


@settings(max_examples=30)
@given(
    index=st.integers(0, 19),
    top=st.integers(0, 47),
    left=st.integers(0, 63),
    ch=st.integers(1, 48),
    cw=st.integers(1, 64),
)
def test_crop_drops_vanished_clips_the_rest(index, top, left, ch, cw):
    image, t = DS[index]
    ch, cw = min(ch, 48 - top), min(cw, 64 - left)
    ci, ct = crop(image, t, top, left, ch, cw)
    assert torch.equal(ci, image[:, top : top + ch, left : left + cw])
    assert torch.equal(ct["semantic"], t["semantic"][top : top + ch, left : left + cw])
    # the objects kept are exactly those with mask pixels in the window
    visible = t["masks"][:, top : top + ch, left : left + cw].flatten(1).any(1).bool()
    assert torch.equal(ct["labels"], t["labels"][visible])
    # boxes: the originals intersected with the window, in window coordinates
    b = t["boxes"][visible]
    x1, x2 = (b[:, 0] - left).clamp(0, cw), (b[:, 2] - left).clamp(0, cw)
    y1, y2 = (b[:, 1] - top).clamp(0, ch), (b[:, 3] - top).clamp(0, ch)
    want = torch.stack([x1, y1, x2, y2], 1)
    assert torch.equal(ct["boxes"], want)
    # each kept mask lies inside its box (tight for the shapes whose box the crop cuts straight)
    if ct["labels"].numel():
        tight = tight_boxes(ct["masks"])
        assert bool((tight[:, :2] >= ct["boxes"][:, :2]).all() and (tight[:, 2:] <= ct["boxes"][:, 2:]).all())
    tags = torch.zeros_like(ct["tags"])
    tags[ct["labels"] - 1] = 1
    assert torch.equal(ct["tags"], tags)


def test_crop_updates_other_per_object_fields():
    image = torch.rand(3, 10, 10)
    t = {
        "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [6.0, 6.0, 10.0, 10.0]]),
        "labels": torch.tensor([1, 2]),
        "difficult": torch.tensor([True, False]),
        "area": torch.tensor([16.0, 16.0]),
        "tags": torch.tensor([1.0, 1.0]),
    }
    _, out = crop(image, t, 0, 0, 5, 5)
    assert out["labels"].tolist() == [1] and out["difficult"].tolist() == [True]
    assert out["area"].tolist() == [16.0] and out["tags"].tolist() == [1.0, 0.0]
    _, out = crop(image, t, 2, 2, 6, 6)
    assert out["boxes"].tolist() == [[0.0, 0.0, 2.0, 2.0], [4.0, 4.0, 6.0, 6.0]] and out["area"].tolist() == [4.0, 4.0]


def test_compose_deterministic_by_seed():
    def pipeline(seed):
        steps = [RandomScale((0.7, 1.4)), RandomCrop((40, 40)), RandomHorizontalFlip(), ColorJitter()]
        return Compose(steps, seed=seed)

    a, b, c = pipeline(3), pipeline(3), pipeline(4)
    outs = []
    for p in (a, b, c):
        outs.append([p(*DS[i]) for i in range(4)])
    for (ia, ta), (ib, tb) in zip(outs[0], outs[1]):
        assert torch.equal(ia, ib) and torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["masks"], tb["masks"])
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(outs[0], outs[2]))
    # an explicit generator gives the same draws as the seed
    g = torch.Generator().manual_seed(3)
    plain = Compose(a.transforms)
    for i, (ia, _) in enumerate(outs[0]):
        assert torch.equal(plain(*DS[i], generator=g)[0], ia)
    for i in range(4):
        image, t = outs[0][i]
        assert image.shape[-2:] == t["semantic"].shape and t["masks"].shape[-2:] == image.shape[-2:]


def test_flip_probability_and_color_jitter():
    image, t = DS[0]
    assert torch.equal(RandomHorizontalFlip(p=0.0)(image, t)[0], image)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(image, t)[0], image.flip(-1))
    same, t2 = ColorJitter(0.0, 0.0, 0.0)(image, t)
    assert torch.allclose(same, image, atol=1e-6) and t2 is t
    jittered, _ = ColorJitter(0.5, 0.5, 0.5)(image, t, torch.Generator().manual_seed(0))
    assert float(jittered.min()) >= 0 and float(jittered.max()) <= 1 and not torch.equal(jittered, image)


def test_resize_shorter_side_and_dataset_hook():
    image, t = DS[0]
    ri, _ = Resize(min_size=96)(image, t)
    assert ri.shape[-2:] == (96, 128)
    ri, _ = Resize(min_size=96, max_size=100)(image, t)
    assert ri.shape[-2:] == (75, 100)
    ds = SyntheticShapes(3, (48, 64), seed=7, transforms=Compose([Resize((96, 128))]))
    image, t = ds[1]
    check_consistent(image, t)
    with pytest.raises(ValueError, match="either size"):
        Resize()
    with pytest.raises(ValueError, match="scale_range"):
        RandomScale((0.0, 1.0))


def test_empty_targets_pass_through_every_transform():
    image = torch.rand(3, 20, 30)
    t = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 20, 30, dtype=torch.uint8),
        "semantic": torch.zeros(20, 30, dtype=torch.int64),
        "tags": torch.zeros(3),
    }
    steps = [RandomScale((0.5, 2.0)), RandomCrop(12), RandomHorizontalFlip(1.0), ColorJitter(), Resize((16, 8))]
    out_image, out = Compose(steps, seed=0)(image, t)
    assert out_image.shape == (3, 16, 8) and out["masks"].shape == (0, 16, 8) and out["boxes"].shape == (0, 4)
    assert out["semantic"].shape == (16, 8) and out["tags"].sum() == 0


@pytest.mark.parametrize("size", [(74, 106), (20, 17), (100, 31), (3, 200)])
def test_mask_resize_is_nearest_exact(size):
    masks = (torch.rand(4, 37, 53, generator=torch.Generator().manual_seed(1)) > 0.5).to(torch.uint8)
    semantic = torch.randint(0, 256, (37, 53), generator=torch.Generator().manual_seed(2))
    _, out = resize(torch.rand(3, 37, 53), {"masks": masks, "semantic": semantic}, size)
    ref = torch.nn.functional.interpolate(masks[None].float(), size=size, mode="nearest-exact")[0]
    assert torch.equal(out["masks"], ref.to(torch.uint8))
    ref = torch.nn.functional.interpolate(semantic[None, None].float(), size=size, mode="nearest-exact")[0, 0]
    assert torch.equal(out["semantic"], ref.long())
