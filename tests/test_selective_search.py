"""selective_search: the graph segmentation and grouping on constructed images with a known
segmentation (flat rectangles: their boxes are proposals; one colour: the whole image), the
output's invariants (distinct integer boxes inside the image, ranking prefix, seed), thread-count
invariance, errors, empty images, opcheck, and recall against OpenCV contrib's selective search
(cv2.ximgproc.segmentation, the oracle) on SyntheticShapes images."""

import numpy as np
import pytest
import torch
from common import DEVICES
from hypothesis import given
from hypothesis import strategies as st
from reference import graph_segmentation

import fastops
from fastops import selective_search
from fastops.data import SyntheticShapes


def rectangles_image(height=64, width=80, sigma_safe=True):
    """A grey background with three flat rectangles of distinct colours; returns (image uint8
    [3, H, W], their boxes xyxy)."""
    image = torch.full((3, height, width), 120, dtype=torch.uint8)
    boxes = [(4, 6, 30, 28), (40, 10, 74, 30), (12, 38, 60, 60)]
    colours = [(230, 20, 20), (20, 200, 40), (30, 40, 220)]
    for (x1, y1, x2, y2), colour in zip(boxes, colours):
        image[:, y1:y2, x1:x2] = torch.tensor(colour, dtype=torch.uint8)[:, None, None]
    return image, torch.tensor(boxes, dtype=torch.float32)


def _rows(boxes: torch.Tensor) -> set:
    return {tuple(r) for r in boxes.tolist()}


@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_flat_rectangles_are_proposals(mode):
    image, boxes = rectangles_image()
    for sigma in (0.0, 0.8):
        got = _rows(selective_search(image, mode, sigma=sigma))
        for box in boxes.tolist():
            assert tuple(box) in got, (sigma, box)
        assert (0.0, 0.0, 80.0, 64.0) in got  # the last merge is the whole image


@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_one_colour_image_is_one_region(mode):
    for image in (torch.full((3, 20, 30), 77, dtype=torch.uint8), torch.full((3, 1, 1), 0.5)):
        h, w = image.shape[1:]
        got = selective_search(image, mode)
        torch.testing.assert_close(got, torch.tensor([[0.0, 0.0, w, h]]), rtol=0, atol=0)


def test_segmentation_threshold_k():
    """Two flat halves whose colours differ by less than k / |C| join into one region (a single
    box), more than that stay apart (each half a proposal)."""
    image = torch.zeros(3, 10, 20, dtype=torch.uint8)
    image[:, :, 10:] = 30  # a step of 30 * sqrt(3) = 52 between the halves
    joined = selective_search(image, ks=[1e5], sigma=0.0, min_size=1)
    assert _rows(joined) == {(0.0, 0.0, 20.0, 10.0)}
    # a k far past the pixel count: one region (min_size = k is capped at the pixel count)
    assert _rows(selective_search(image, ks=[1e300])) == {(0.0, 0.0, 20.0, 10.0)}
    apart = _rows(selective_search(image, ks=[1.0], sigma=0.0, min_size=1))
    assert apart == {(0.0, 0.0, 10.0, 10.0), (10.0, 0.0, 20.0, 10.0), (0.0, 0.0, 20.0, 10.0)}


@pytest.mark.parametrize("seed", range(6))
def test_segmentation_regions_against_reference(seed):
    """Every region of the graph segmentation (the hierarchy's first level) is a proposal: the
    reference's regions (numpy, from the paper) on random grey images of a few levels (many tied
    edge weights), without smoothing. Grey pixels are (0, 0, v) in HSV, so the HSV strategies
    segment the reference's one-channel image of v with the same float32 weights."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 256, size=4)
    h, w = int(rng.integers(8, 20)), int(rng.integers(8, 20))
    blocks = rng.integers(0, 4, size=(h // 4 + 1, w // 4 + 1)).repeat(4, 0).repeat(4, 1)[:h, :w]
    noise = rng.integers(0, 3, size=(h, w)) * (rng.random((h, w)) < 0.3)
    grey = np.clip(levels[blocks] + noise, 0, 255).astype(np.uint8)
    k, min_size = [(20.0, 1), (80.0, 3), (300.0, 8)][seed % 3]
    labels = graph_segmentation.segment(grey[None], k, min_size)
    image = torch.from_numpy(grey)[None].expand(3, h, w)
    got = _rows(selective_search(image, ks=[k], sigma=0.0, min_size=min_size))
    want = graph_segmentation.region_boxes(labels)
    assert want <= got, sorted(want - got)
    assert (0.0, 0.0, float(w), float(h)) in got


def test_min_size_merges_small_regions():
    """A 3 x 3 spot distinct from its background is a region unless min_size exceeds its 9 pixels."""
    image = torch.zeros(3, 16, 16, dtype=torch.uint8)
    image[:, 5:8, 9:12] = 255
    assert (9.0, 5.0, 12.0, 8.0) in _rows(selective_search(image, ks=[1.0], sigma=0.0, min_size=9))
    assert _rows(selective_search(image, ks=[1.0], sigma=0.0, min_size=10)) == {(0.0, 0.0, 16.0, 16.0)}


def test_output_invariants_and_ranking():
    image = SyntheticShapes(1, 96, seed=3)[0][0]
    out = selective_search(image, "fast", seed=5)
    assert out.dtype == torch.float32 and out.dim() == 2 and out.shape[1] == 4 and out.shape[0] > 10
    assert torch.equal(out, out.round())
    assert (out[:, 0] >= 0).all() and (out[:, 1] >= 0).all() and (out[:, 2] <= 96).all() and (out[:, 3] <= 96).all()
    assert (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()
    assert len(_rows(out)) == out.shape[0]  # distinct
    # max_proposals keeps the best ranked; the same seed gives the same order, another seed the same set
    torch.testing.assert_close(selective_search(image, "fast", 7, seed=5), out[:7], rtol=0, atol=0)
    torch.testing.assert_close(selective_search(image, "fast", seed=5), out, rtol=0, atol=0)
    other = selective_search(image, "fast", seed=6)
    assert _rows(other) == _rows(out) and not torch.equal(other, out)
    assert selective_search(image, "fast", 0).shape == (0, 4)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (3, 40), (40, 3)])
def test_thin_images(shape):
    """Lines and tiny images (smoothing taps past the image, one-pixel graphs): valid distinct boxes,
    the whole image among them."""
    h, w = shape
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    for mode in ("fast", "quality"):
        out = selective_search(image, mode)
        assert (0.0, 0.0, float(w), float(h)) in _rows(out)
        assert len(_rows(out)) == out.shape[0]
        assert (out[:, :2] >= 0).all() and (out[:, 2] <= w).all() and (out[:, 3] <= h).all()
        assert (out[:, 2:] > out[:, :2]).all()


@given(
    h=st.integers(1, 14),
    w=st.integers(1, 14),
    levels=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    k=st.sampled_from([None, [1.0], [30.0, 500.0]]),
    sigma=st.sampled_from([0.0, 0.8, 3.0]),
)
def test_properties_on_random_images(h, w, levels, seed, k, sigma):
    """Any image: distinct integer boxes inside it, the whole image among them, at most the
    hierarchy's 2n - 1 regions per strategy, and a ranking whose prefix is max_proposals' output."""
    g = torch.Generator().manual_seed(seed)
    image = (torch.randint(0, levels, (3, h, w), generator=g) * (255 // levels)).to(torch.uint8)
    out = selective_search(image, ks=k, sigma=sigma, seed=seed)
    rows = _rows(out)
    assert len(rows) == out.shape[0] and (0.0, 0.0, float(w), float(h)) in rows
    assert torch.equal(out, out.round()) and (out[:, :2] >= 0).all() and (out[:, 2:] > out[:, :2]).all()
    assert (out[:, 2] <= w).all() and (out[:, 3] <= h).all()
    strategies = 2 * len(k or [50, 100]) * 2
    assert out.shape[0] <= strategies * (2 * h * w - 1)
    torch.testing.assert_close(selective_search(image, max_proposals=3, ks=k, sigma=sigma, seed=seed), out[:3])


def test_input_forms_agree():
    image8 = (SyntheticShapes(1, 64, seed=1)[0][0] * 255).round().to(torch.uint8)
    want = selective_search(image8)
    # any strides: a channels-last view and a crop of a larger image
    hwc = image8.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    torch.testing.assert_close(selective_search(hwc), want, rtol=0, atol=0)
    big = torch.zeros(3, 70, 90, dtype=torch.uint8)
    big[:, 3:67, 5:69] = image8
    torch.testing.assert_close(selective_search(big[:, 3:67, 5:69]), want, rtol=0, atol=0)
    # float images: values in [0, 1]
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        out = selective_search(image8.to(dtype) / 255)
        assert out.shape[1] == 4 and out.shape[0] > 0


def test_same_result_for_any_thread_count():
    image = SyntheticShapes(1, 80, seed=2)[0][0]
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(selective_search(image, "quality", seed=1))
    finally:
        torch.set_num_threads(threads)
    for got in results[1:]:
        torch.testing.assert_close(got, results[0], rtol=0, atol=0)


def test_empty_image():
    for shape in ((3, 0, 5), (3, 4, 0), (3, 0, 0)):
        out = selective_search(torch.zeros(shape, dtype=torch.uint8))
        assert out.shape == (0, 4) and out.dtype == torch.float32


@pytest.mark.parametrize(
    "image, kwargs, error, match",
    [
        (torch.zeros(10, 10, dtype=torch.uint8), {}, ValueError, r"image must have shape \[3, H, W\]"),
        (torch.zeros(4, 10, 10, dtype=torch.uint8), {}, ValueError, r"image must have shape \[3, H, W\]"),
        (torch.zeros(1, 3, 10, 10), {}, ValueError, r"image must have shape \[3, H, W\]"),
        (torch.zeros(3, 10, 10, dtype=torch.int32), {}, TypeError, "image must be uint8 or float"),
        (torch.full((3, 10, 10), 1.5), {}, ValueError, r"values in \[0, 1\]"),
        (torch.full((3, 10, 10), float("nan")), {}, ValueError, r"values in \[0, 1\]"),
        (torch.zeros(3, 10, 10), {"mode": "slow"}, ValueError, "mode must be"),
        (torch.zeros(3, 10, 10), {"max_proposals": -2}, ValueError, "max_proposals must be"),
        (torch.zeros(3, 10, 10), {"ks": [0.0]}, ValueError, r"ks\[0\] must be a positive"),
        (torch.zeros(3, 10, 10), {"ks": [50.0, float("inf")]}, ValueError, r"ks\[1\] must be a positive"),
        (torch.zeros(3, 10, 10), {"sigma": -1.0}, ValueError, "sigma must be in"),
        (torch.zeros(3, 10, 10), {"min_size": -3}, ValueError, "min_size must be"),
        ([[[0.0]]], {}, TypeError, "image must be a torch.Tensor"),
        (torch.zeros(3, 10, 10), {"mode": 1}, TypeError, "mode must be a str"),
    ],
)
def test_bad_input_raises(image, kwargs, error, match):
    with pytest.raises(error, match=match):
        selective_search(image, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_device_output(device):
    image = rectangles_image()[0].to(device)
    out = selective_search(image, max_proposals=20)
    assert out.device.type == torch.device(device).type
    torch.testing.assert_close(out.cpu(), selective_search(image.cpu(), max_proposals=20), rtol=0, atol=0)


def test_opcheck():
    image = rectangles_image(24, 28)[0]
    torch.library.opcheck(torch.ops.fastops.selective_search.default, (image, "fast", [], 0.8, -1, -1, 0))
    torch.library.opcheck(
        torch.ops.fastops.selective_search.default, (image.float() / 255, "fast", [30.0], 0.5, 5, 4, 1)
    )


def test_compile_fullgraph():
    def widths(image):
        boxes = selective_search(image, "fast", 30, seed=3)
        return boxes[:, 2] - boxes[:, 0]

    image = rectangles_image(32, 40)[0]
    assert torch.equal(torch.compile(widths, fullgraph=True)(image), widths(image))


def test_not_differentiable():
    image = (rectangles_image(16, 16)[0].float() / 255).requires_grad_()
    out = selective_search(image)
    assert not out.requires_grad


def _recall(proposals: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5) -> tuple[int, int]:
    if gt.shape[0] == 0:
        return 0, 0
    if proposals.shape[0] == 0:
        return 0, gt.shape[0]
    best = fastops.box_iou(gt, proposals).max(dim=1).values
    return int((best >= threshold).sum()), gt.shape[0]


def opencv_proposals(cv2, image_uint8: torch.Tensor, mode: str) -> torch.Tensor:
    """OpenCV's boxes (x, y, w, h, its ranking) as xyxy pixel edges, from an RGB uint8 [3, H, W]."""
    bgr = np.ascontiguousarray(image_uint8.permute(1, 2, 0).numpy()[:, :, ::-1])
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    ss.switchToSelectiveSearchFast() if mode == "fast" else ss.switchToSelectiveSearchQuality()
    rects = torch.as_tensor(np.asarray(ss.process()), dtype=torch.float32).reshape(-1, 4)
    return torch.cat([rects[:, :2], rects[:, :2] + rects[:, 2:]], dim=1)


# Recall of the ground-truth boxes at IoU 0.5 among the first PROPOSALS boxes, over the set (up to
# 9 objects per 128 x 128 image). OpenCV's ranking draws from C's rand(), so its recall depends on
# what else called rand() in the process: MARGIN (a share of the set's objects) covers that noise.
# At fewer proposals OpenCV's ranking, which puts small regions first, leads on these images
# (at 25 proposals about 0.98 against 0.9); the paper's ranking puts large regions first.
PROPOSALS = 50
MARGIN = 0.02


def test_recall_at_least_opencv():
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "ximgproc"):
        pytest.skip("OpenCV without the contrib modules (opencv-contrib-python-headless)")
    cv2.setRNGSeed(0)
    dataset = SyntheticShapes(12, 128, seed=11, max_objects=9)
    ours, theirs, total = 0, 0, 0
    for i in range(len(dataset)):
        image, target = dataset[i]
        image8 = (image * 255).round().to(torch.uint8)
        hit, count = _recall(selective_search(image8, "fast", PROPOSALS), target["boxes"])
        ours += hit
        total += count
        theirs += _recall(opencv_proposals(cv2, image8, "fast")[:PROPOSALS], target["boxes"])[0]
    assert total >= 30 and theirs / total >= 0.9  # the set is one OpenCV's search covers
    assert ours / total >= theirs / total - MARGIN, (ours, theirs, total)
