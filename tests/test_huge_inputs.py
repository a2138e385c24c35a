"""Index math past 2^31 elements, one op family per kind of indexing: a pairwise output (box_iou),
RoI features (roi_align's output), a convolution's input. Each needs several GB, so the tests run
only with FASTOPS_HUGE=1 (scripts/huge_check.sh) and enough free memory; the entries checked lie
beyond element 2^31, where 32-bit offsets would wrap, against float64 references on slices."""

import os

import pytest
import torch
from reference import boxes as box_reference
from reference import roi as roi_reference

import fastops

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FASTOPS_HUGE") != "1", reason="needs several GB: FASTOPS_HUGE=1"),
]

INT32_LIMIT = 2**31


def _require_free_memory(gigabytes: float) -> None:
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    if available < gigabytes * 2**20:
        pytest.skip(f"needs {gigabytes} GB free, {available / 2**20:.1f} GB available")


def test_box_iou_output_past_2_31_elements():
    n = 46341  # n * n = 2^31 + 4633
    _require_free_memory(10)
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=g) * 1000
    boxes = torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * 100], dim=1)
    iou = fastops.box_iou(boxes, boxes)
    assert iou.shape == (n, n) and iou.numel() > INT32_LIMIT
    # the rows holding elements 2^31 - 1, 2^31 and the last one
    rows = sorted({(INT32_LIMIT - 1) // n, INT32_LIMIT // n, n - 1})
    expected = box_reference.overlap(boxes[rows].double(), boxes.double())
    torch.testing.assert_close(iou[rows].double(), expected, atol=1e-6, rtol=1e-5)
    del iou


def test_roi_align_output_past_2_31_elements():
    channels, pooled = 256, 7
    k = INT32_LIMIT // (channels * pooled * pooled) + 2
    _require_free_memory(6)
    g = torch.Generator().manual_seed(1)
    features = torch.rand(2, channels, 16, 16, generator=g, dtype=torch.bfloat16)
    xy = torch.rand(k, 2, generator=g) * 12
    rois = torch.cat(
        [torch.randint(0, 2, (k, 1), generator=g).float(), xy, xy + 0.5 + torch.rand(k, 2, generator=g) * 3], 1
    )
    rois = rois.to(torch.bfloat16)
    out = fastops.roi_align(features, rois, pooled, 1.0, 2, True)
    assert out.numel() > INT32_LIMIT
    last = slice(k - 3, k)  # elements past 2^31
    expected = roi_reference.roi_align_reference(features.double(), rois[last].double(), (pooled, pooled), 1.0, 2, True)
    torch.testing.assert_close(out[last].double(), expected, atol=2e-2, rtol=2e-2)
    # the same RoIs alone give the same bits: nothing but the offsets differs
    assert torch.equal(out[last], fastops.roi_align(features, rois[last], pooled, 1.0, 2, True))


def test_conv2d_input_past_2_31_elements():
    height, width = 46341, 46341  # one channel, 2^31 + 4633 elements
    _require_free_memory(8)
    g = torch.Generator().manual_seed(2)
    x = torch.empty(1, 1, height, width, dtype=torch.bfloat16)
    x[0, 0, :-8].fill_(0.5)
    x[0, 0, -8:] = torch.rand(8, width, generator=g).to(torch.bfloat16)  # the rows past 2^31
    weight = torch.rand(2, 1, 3, 3, generator=g).to(torch.bfloat16)
    out = fastops.ops.conv2d(x, weight, stride=2, padding=1)
    # the last five output rows read input rows height - 10 ... height - 1 and one row of padding below
    tail = torch.nn.functional.pad(x[:, :, height - 10 :].double(), (0, 0, 0, 1))
    expected = torch.nn.functional.conv2d(tail, weight.double(), stride=2, padding=(0, 1))
    assert expected.shape[2] == 5
    torch.testing.assert_close(out[:, :, -5:].double(), expected, atol=5e-2, rtol=2e-2)
