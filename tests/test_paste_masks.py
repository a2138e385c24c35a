"""paste_masks: against torchvision's paste_masks_in_image (bitwise), a float64 resize written from the
definition, and its documented behaviour where torchvision raises."""

import math

import pytest
import torch
import torch.nn.functional as F
from common import DEVICES, FLOAT_DTYPES
from hypothesis import given
from hypothesis import strategies as st
from torchvision.models.detection.roi_heads import paste_masks_in_image

import fastops

# torch's CPU resize kernels are compiled with fused multiply-adds in their AVX2 and AVX-512 copies,
# which fastops reproduces; other copies (x86-64 baseline, other architectures) round differently.
TORCH_CPU_FUSES = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def rand_problem(n, m, image_h, image_w, *, dtype=torch.float32, box_dtype=torch.float32, seed=0, outside=0.3):
    """n masks m x m and boxes of sides 1 to ~image size, some partly outside the image."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, 1, m, m, generator=g, dtype=torch.float64).to(dtype)
    size = torch.tensor([image_w, image_h], dtype=torch.float64)
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) ** 2 * size * 0.9 + 0.2
    xy = (torch.rand(n, 2, generator=g, dtype=torch.float64) * (1 + 2 * outside) - outside) * size - wh / 2
    boxes = torch.cat([xy, xy + wh], dim=1).to(box_dtype)
    return masks, boxes


def torchvision_or_none(masks, boxes, shape, padding=1):
    """torchvision's result per mask (None where it raises: boxes wholly outside the image)."""
    out = []
    for i in range(masks.shape[0]):
        try:
            out.append(paste_masks_in_image(masks[i : i + 1], boxes[i : i + 1], shape, padding)[0])
        except RuntimeError:
            out.append(None)
    return out


def reference(masks, boxes, shape, padding=1):
    """torchvision's algorithm with the image rectangle clipped explicitly (so boxes wholly outside
    the image paste nothing) and non-finite boxes pasting nothing; torch's own resize."""
    h_img, w_img = shape
    m = masks.shape[-1]
    scale = float(m + 2 * padding) / m
    padded = F.pad(masks.reshape(masks.shape[0], 1, *masks.shape[-2:]), (padding,) * 4)
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c, y_c = (boxes[:, 2] + boxes[:, 0]) * 0.5, (boxes[:, 3] + boxes[:, 1]) * 0.5
    expanded = torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], dim=1)
    out = masks.new_zeros((masks.shape[0], 1, h_img, w_img))
    for i in range(masks.shape[0]):
        if not torch.isfinite(expanded[i]).all():
            continue
        x1, y1, x2, y2 = expanded[i].to(torch.int64).tolist()
        h, w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        ya, yb, xa, xb = max(y1, 0), min(y2 + 1, h_img), max(x1, 0), min(x2 + 1, w_img)
        if ya >= yb or xa >= xb:
            continue
        resized = F.interpolate(padded[i : i + 1], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        out[i, 0, ya:yb, xa:xb] = resized[ya - y1 : yb - y1, xa - x1 : xb - x1]
    return out


def assert_torch_bits(actual, expected):
    if TORCH_CPU_FUSES or actual.device.type == "cuda":
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)
    else:
        torch.testing.assert_close(actual, expected, equal_nan=True)


# ---- against torchvision --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("padding", [1, 0, 3])
def test_matches_torchvision(dtype, padding):
    shape = (97, 131)
    masks, boxes = rand_problem(60, 28, *shape, dtype=dtype, seed=padding)
    out = fastops.paste_masks(masks, boxes, shape, padding)
    assert out.shape == (60, 1, *shape) and out.dtype == dtype
    expected = torchvision_or_none(masks, boxes, shape, padding)
    assert sum(e is not None for e in expected) > 30
    for i, e in enumerate(expected):
        if e is not None:
            assert_torch_bits(out[i], e)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matches_torchvision_large_boxes(dtype):
    """Boxes whose resized size passes h + w = 128, where torch's CPU kernel changes form."""
    shape = (300, 257)
    masks, boxes = rand_problem(16, 14, *shape, dtype=dtype, seed=7, outside=0.1)
    boxes[:8] = torch.tensor([[10.0, 20.0, 10.0 + s, 20.0 + 126 - s] for s in range(60, 68)])
    out = fastops.paste_masks(masks, boxes, shape)
    for i, e in enumerate(torchvision_or_none(masks, boxes, shape)):
        if e is not None:
            assert_torch_bits(out[i], e)


@pytest.mark.parametrize("box_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_box_dtypes_round_as_torchvision(box_dtype, dtype):
    """Boxes are expanded and truncated in their own dtype: coordinates near integers decide pixels."""
    shape = (80, 90)
    masks, boxes = rand_problem(50, 7, *shape, dtype=dtype, box_dtype=torch.float64, seed=3, outside=0.0)
    boxes = (boxes * 4).round() / 4 + torch.tensor([1e-3, -1e-3, 0.5, 0.25], dtype=torch.float64)
    boxes = boxes.to(box_dtype)
    out = fastops.paste_masks(masks, boxes, shape)
    expected = torchvision_or_none(masks, boxes, shape)
    for i, e in enumerate(expected):
        if e is not None:
            assert_torch_bits(out[i], e)


def test_mask_r_cnn_like_workload():
    shape = (200, 304)
    masks, boxes = rand_problem(100, 28, *shape, seed=11, outside=0.0)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, shape[1])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, shape[0])
    assert_torch_bits(fastops.paste_masks(masks, boxes, shape), paste_masks_in_image(masks, boxes, shape))


@pytest.mark.parametrize(
    "m, shape, box",
    [
        (1, (9, 11), [2.0, 3.0, 6.0, 8.0]),  # a 1 x 1 mask
        (28, (40, 50), [5.0, 5.0, 5.0, 5.0]),  # a point box: a 1 x 1 resize
        (28, (40, 50), [20.0, 10.0, 12.0, 30.0]),  # x2 < x1
        (5, (40, 50), [-3.2, -7.9, 4.4, 2.1]),  # over the top-left corner
        (5, (40, 50), [44.0, 33.0, 58.0, 47.0]),  # over the bottom-right corner
        (27, (13, 17), [-10.0, -10.0, 30.0, 40.0]),  # covers the image
        (3, (30, 30), [10.0, 10.0, 13.0, 13.0]),  # resized to exactly the padded size (5 x 5)
        (28, (1, 1), [0.0, 0.0, 0.5, 0.5]),  # a 1 x 1 image
    ],
)
def test_edge_boxes_match_torchvision(m, shape, box):
    masks = torch.rand(1, 1, m, m)
    boxes = torch.tensor([box])
    assert torch.equal(fastops.paste_masks(masks, boxes, shape), paste_masks_in_image(masks, boxes, shape))


def test_non_square_masks_match_torchvision():
    masks = torch.rand(5, 1, 9, 14)
    _, boxes = rand_problem(5, 1, 60, 70, seed=2, outside=0.0)
    out = fastops.paste_masks(masks, boxes, (60, 70))
    assert_torch_bits(out, paste_masks_in_image(masks, boxes, (60, 70)))


def test_negative_padding_crops_as_torchvision():
    masks, boxes = rand_problem(20, 9, 50, 60, seed=4, outside=0.0)
    assert_torch_bits(fastops.paste_masks(masks, boxes, (50, 60), -2), paste_masks_in_image(masks, boxes, (50, 60), -2))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_non_finite_mask_values_propagate_as_torchvision(dtype):
    masks, boxes = rand_problem(12, 6, 40, 45, dtype=dtype, seed=5, outside=0.0)
    masks[0, 0, 2, 3] = float("nan")
    masks[1, 0, 0, 0] = float("inf")
    masks[2, 0, 5, 5] = -float("inf")
    masks[3] = float("inf")
    out = fastops.paste_masks(masks, boxes, (40, 45))
    assert_torch_bits(out, paste_masks_in_image(masks, boxes, (40, 45)))


# ---- where torchvision raises: documented behaviour --------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matches_reference_everywhere(dtype):
    """Including boxes wholly outside the image, where torchvision raises."""
    shape = (37, 53)
    masks, boxes = rand_problem(200, 5, *shape, dtype=dtype, seed=8, outside=1.0)
    expected = reference(masks, boxes, shape)
    assert_torch_bits(fastops.paste_masks(masks, boxes, shape), expected)
    assert any(e is None for e in torchvision_or_none(masks, boxes, shape))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_boxes_paste_nothing(bad):
    masks, boxes = rand_problem(4, 6, 30, 30, seed=9, outside=0.0)
    boxes[1, 2] = bad
    boxes[2, 1] = bad
    out = fastops.paste_masks(masks, boxes, (30, 30))
    assert not out[1:3].any()
    assert torch.equal(out[[0, 3]], paste_masks_in_image(masks[[0, 3]], boxes[[0, 3]], (30, 30)))


def test_huge_boxes_are_clamped_and_bounded():
    masks = torch.rand(3, 1, 4, 4)
    boxes = torch.tensor([[-1e30, -1e30, 1e30, 1e30], [-1e15, 3.0, 10.0, 1e12], [5.0, 5.0, 3e38, 6.0]])
    out = fastops.paste_masks(masks, boxes, (20, 30))
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1 + 1e-6  # convex combinations of mask values and padding zeros


# ---- from the definition ----------------------------------------------------------------------------


def resize_definition(image, out_h, out_w):
    """Bilinear resize with align_corners=False from its definition, float64: output pixel o samples
    source coordinate (o + 0.5) * in / out - 0.5, clamped at 0, between its two neighbours."""

    def axis(n_in, n_out):
        src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * n_in / n_out - 0.5).clamp(min=0)
        i0 = src.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        lam = (src - i0).clamp(0, 1)
        return i0, i1, lam

    h0, h1, lh = axis(image.shape[0], out_h)
    w0, w1, lw = axis(image.shape[1], out_w)
    top = image[h0][:, w0] * (1 - lw) + image[h0][:, w1] * lw
    bottom = image[h1][:, w0] * (1 - lw) + image[h1][:, w1] * lw
    return top * (1 - lh)[:, None] + bottom * lh[:, None]


def test_matches_the_definition_in_float64():
    shape = (70, 90)
    masks, boxes = rand_problem(30, 11, *shape, dtype=torch.float64, box_dtype=torch.float64, seed=10)
    out = fastops.paste_masks(masks, boxes, shape)
    scale = 13 / 11
    for i in range(30):
        x1, y1, x2, y2 = boxes[i].tolist()
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
        bx1, by1, bx2, by2 = int(cx - hw), int(cy - hh), int(cx + hw), int(cy + hh)
        h, w = max(by2 - by1 + 1, 1), max(bx2 - bx1 + 1, 1)
        resized = resize_definition(F.pad(masks[i, 0], (1, 1, 1, 1)), h, w)
        expected = torch.zeros(shape, dtype=torch.float64)
        ya, yb, xa, xb = max(by1, 0), min(by2 + 1, shape[0]), max(bx1, 0), min(bx2 + 1, shape[1])
        if ya < yb and xa < xb:
            expected[ya:yb, xa:xb] = resized[ya - by1 : yb - by1, xa - bx1 : xb - bx1]
        # torch rounds the source coordinate to float32 before taking its floor: up to ~1e-7 of a step
        torch.testing.assert_close(out[i, 0], expected, rtol=0, atol=1e-6)


@given(
    n=st.integers(0, 6),
    m=st.integers(1, 9),
    height=st.integers(0, 40),
    width=st.integers(0, 40),
    padding=st.integers(0, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_properties(n, m, height, width, padding, seed):
    """Equal to the reference; zero outside each box's rectangle; values within the mask's range."""
    masks, boxes = rand_problem(n, m, max(height, 1), max(width, 1), seed=seed, outside=0.6)
    out = fastops.paste_masks(masks, boxes, (height, width), padding)
    assert out.shape == (n, 1, height, width)
    assert_torch_bits(out, reference(masks, boxes, (height, width), padding))
    if out.numel():
        assert out.min() >= 0 and out.max() <= masks.max() * (1 + 1e-6)


# ---- shapes, dtypes, options ------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_empty_inputs(device):
    masks, boxes = torch.rand(0, 1, 28, 28, device=device), torch.zeros(0, 4, device=device)
    out = fastops.paste_masks(masks, boxes, (30, 40))
    assert out.shape == (0, 1, 30, 40) and out.device.type == device
    masks, boxes = rand_problem(3, 5, 10, 10)
    assert fastops.paste_masks(masks.to(device), boxes.to(device), (0, 10)).shape == (3, 1, 0, 10)
    assert fastops.paste_masks(masks.to(device), boxes.to(device), (10, 0)).shape == (3, 1, 10, 0)


def test_three_dimensional_masks_and_other_inputs():
    masks, boxes = rand_problem(10, 8, 50, 60, seed=12)
    expected = fastops.paste_masks(masks, boxes, (50, 60))
    assert torch.equal(fastops.paste_masks(masks[:, 0], boxes, (50, 60)), expected)
    assert torch.equal(fastops.paste_masks(masks, boxes, [50, 60]), expected)
    assert torch.equal(fastops.paste_masks(masks, boxes, torch.Size([50, 60])), expected)
    wide = torch.rand(10, 1, 8, 16)
    wide[..., ::2] = masks
    strided_boxes = boxes.t().contiguous().t()
    assert not wide[..., ::2].is_contiguous() and not strided_boxes.is_contiguous()
    assert torch.equal(fastops.paste_masks(wide[..., ::2], strided_boxes, (50, 60)), expected)


def test_integer_boxes_are_float32():
    masks, boxes = rand_problem(10, 8, 50, 60, seed=13, outside=0.0)
    int_boxes = boxes.round().to(torch.int64)
    out = fastops.paste_masks(masks, int_boxes, (50, 60))
    assert torch.equal(out, fastops.paste_masks(masks, int_boxes.float(), (50, 60)))
    assert_torch_bits(out, paste_masks_in_image(masks, int_boxes, (50, 60)))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("threshold", [0.5, 0.3, -0.25, 1.0])
def test_threshold_is_pasted_greater_than_threshold(dtype, threshold):
    shape = (60, 70)
    masks, boxes = rand_problem(20, 9, *shape, dtype=dtype, seed=14)
    out = fastops.paste_masks(masks, boxes, shape, threshold=threshold)
    assert out.dtype == torch.bool and out.shape == (20, 1, *shape)
    assert torch.equal(out, fastops.paste_masks(masks, boxes, shape) > threshold)


def test_results_do_not_depend_on_the_thread_count():
    masks, boxes = rand_problem(9, 28, 123, 77, seed=15)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fastops.paste_masks(masks, boxes, (123, 77))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, fastops.paste_masks(masks, boxes, (123, 77)))


@pytest.mark.parametrize("threshold", [None, 0.5])
def test_large_outputs_streamed_equal_small_ones(threshold):
    """Outputs of 64 MB and more write their background with streaming stores."""
    n, shape = (20, (840, 1000)) if threshold is None else (68, (1000, 1000))
    masks, boxes = rand_problem(n, 28, *shape, seed=19)
    out = fastops.paste_masks(masks, boxes, shape, threshold=threshold)
    assert out.numel() * out.element_size() >= 64 * 2**20
    for part in torch.arange(n).chunk(4):
        assert torch.equal(out[part], fastops.paste_masks(masks[part], boxes[part], shape, threshold=threshold))


def test_not_differentiable():
    masks, boxes = rand_problem(3, 5, 20, 20, seed=16)
    masks.requires_grad_()
    out = fastops.paste_masks(masks, boxes, (20, 20))
    assert torch.equal(out.detach(), fastops.paste_masks(masks.detach(), boxes, (20, 20)))
    with pytest.raises(RuntimeError, match="paste_masks is not differentiable"):
        out.sum().backward()


def test_errors_name_the_argument():
    masks, boxes = rand_problem(3, 5, 20, 20)
    with pytest.raises(TypeError, match="masks must be float16, bfloat16, float32 or float64"):
        fastops.paste_masks(masks.to(torch.int32), boxes, (20, 20))
    with pytest.raises(TypeError, match=r"masks must be a torch\.Tensor"):
        fastops.paste_masks(masks.tolist(), boxes, (20, 20))
    with pytest.raises(TypeError, match="boxes must hold real numbers"):
        fastops.paste_masks(masks, boxes.bool(), (20, 20))
    with pytest.raises(ValueError, match=r"masks must have shape \[N, 1, M, M\] or \[N, M, M\]"):
        fastops.paste_masks(masks.expand(3, 2, 5, 5), boxes, (20, 20))
    with pytest.raises(ValueError, match="masks must have shape"):
        fastops.paste_masks(masks[0, 0], boxes, (20, 20))
    with pytest.raises(ValueError, match="at least one row and one column"):
        fastops.paste_masks(masks[..., :0], boxes, (20, 20))
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\] with N = 3"):
        fastops.paste_masks(masks, boxes[:2], (20, 20))
    with pytest.raises(ValueError, match="boxes must have shape"):
        fastops.paste_masks(masks, boxes[:, :3], (20, 20))
    with pytest.raises(ValueError, match="image_shape must be non-negative"):
        fastops.paste_masks(masks, boxes, (-1, 20))
    with pytest.raises(TypeError, match="image_shape must be a pair"):
        fastops.paste_masks(masks, boxes, 20)
    with pytest.raises(TypeError, match="image_shape width must be an int"):
        fastops.paste_masks(masks, boxes, (20, 20.0))
    with pytest.raises(TypeError, match="padding must be an int"):
        fastops.paste_masks(masks, boxes, (20, 20), 1.0)
    with pytest.raises(ValueError, match="padding -3 leaves no pixel"):
        fastops.paste_masks(masks, boxes, (20, 20), -3)
    with pytest.raises(ValueError, match="threshold must not be NaN"):
        fastops.paste_masks(masks, boxes, (20, 20), threshold=math.nan)
    with pytest.raises(TypeError, match="threshold must be a float"):
        fastops.paste_masks(masks, boxes, (20, 20), threshold="0.5")


@pytest.mark.cuda
def test_device_mismatch_is_an_error():
    masks, boxes = rand_problem(3, 5, 20, 20)
    with pytest.raises(RuntimeError, match="same device"):
        fastops.paste_masks(masks.cuda(), boxes, (20, 20))


# ---- registration: opcheck, compile ------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("threshold", [None, 0.5])
def test_opcheck(device, threshold):
    masks, boxes = rand_problem(4, 6, 20, 25, seed=17)
    torch.library.opcheck(
        torch.ops.fastops.paste_masks.default, (masks.to(device), boxes.to(device), 20, 25, 1, threshold)
    )


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph(dynamic):
    def postprocess(mask_logits, boxes, image_shape):
        return fastops.paste_masks(mask_logits.sigmoid(), boxes, image_shape)

    compiled = torch.compile(postprocess, fullgraph=True, dynamic=dynamic)
    for n, shape in ((5, (40, 50)), (7, (41, 52))):
        masks, boxes = rand_problem(n, 8, *shape, seed=n)
        torch.testing.assert_close(compiled(masks, boxes, shape), postprocess(masks, boxes, shape), rtol=0, atol=0)


# ---- CUDA ------------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cuda_matches_torchvision_on_cuda(dtype):
    shape = (211, 173)
    masks, boxes = rand_problem(80, 28, *shape, dtype=dtype, seed=18)
    masks, boxes = masks.cuda(), boxes.cuda()
    out = fastops.paste_masks(masks, boxes, shape)
    for i, e in enumerate(torchvision_or_none(masks, boxes, shape)):
        if e is not None:
            assert_torch_bits(out[i], e)
    torch.testing.assert_close(out.cpu(), fastops.paste_masks(masks.cpu(), boxes.cpu(), shape), rtol=0, atol=2e-2)
    assert torch.equal(
        fastops.paste_masks(masks, boxes, shape, threshold=0.5), fastops.paste_masks(masks, boxes, shape) > 0.5
    )


@pytest.mark.cuda
def test_cuda_more_rows_than_one_grid_dimension():
    """N * H = 67500 output rows: more than a grid's 65535 blocks along y."""
    shape = (750, 24)
    masks, boxes = rand_problem(90, 28, *shape, seed=20)
    out = fastops.paste_masks(masks.cuda(), boxes.cuda(), shape)
    for i, e in enumerate(torchvision_or_none(masks.cuda(), boxes.cuda(), shape)):
        if e is not None:
            assert_torch_bits(out[i], e)
