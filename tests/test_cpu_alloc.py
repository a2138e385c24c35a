"""The cache of large CPU outputs (csrc/common/cpu_alloc.cpp): reuse, bounds, release, opt-out."""

import os
import subprocess
import sys

import pytest
import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)

import fastops

# the cache's own behaviour; scripts/sanitize_check.sh turns the cache off so that ASan bounds every
# output, and the test of that setting runs in a child process
needs_cache = pytest.mark.skipif(os.environ.get("FASTOPS_OUTPUT_CACHE") == "0", reason="FASTOPS_OUTPUT_CACHE=0")


def _roi_output(k=2000, c=64):
    """A RoIAlign output of k * c * 49 floats (25 MB for the defaults) and its inputs."""
    x = torch.randn(1, c, 16, 16)
    rois = torch.tensor([[0.0, 1, 1, 9, 9]]).repeat(k, 1)
    return x, rois


@needs_cache
def test_freed_output_memory_is_reused_and_released():
    fastops.release_output_cache()
    x, rois = _roi_output()
    first = fastops.roi_align(x, rois, 7, 1.0, 2)
    ptr, values = first.data_ptr(), first.clone()
    del first
    assert fastops.output_cache_bytes() >= values.numel() * 4
    again = fastops.roi_align(x, rois, 7, 1.0, 2)
    assert again.data_ptr() == ptr  # the freed output's memory, not fresh pages
    assert torch.equal(again, values)  # every element rewritten
    assert fastops.output_cache_bytes() == 0
    del again
    assert fastops.release_output_cache() >= values.numel() * 4
    assert fastops.output_cache_bytes() == 0


@needs_cache
def test_small_outputs_and_gradients_are_correct_through_the_cache():
    x, rois = _roi_output(k=300, c=16)
    x.requires_grad_()
    for _ in range(3):  # reused buffers must never leak old values
        y = fastops.roi_align(x, rois, 7, 1.0, 2)
        (g,) = torch.autograd.grad(y.sum(), x)
        ref = torch.ops.torchvision.roi_align(x.detach(), rois, 1.0, 7, 7, 2, False)
        assert torch.equal(y, ref)
        assert g.shape == x.shape and torch.isfinite(g).all()


@needs_cache
def test_cache_is_bounded():
    fastops.release_output_cache()
    x, rois = _roi_output(k=4000, c=128)  # 100 MB outputs
    outs = [fastops.roi_align(x, rois, 7, 1.0, 2) for _ in range(7)]
    del outs
    assert fastops.output_cache_bytes() <= 512 * 2**20
    fastops.release_output_cache()


@needs_cache
def test_full_cache_makes_room_for_the_newest_free():
    """Past the cap, the blocks freed longest ago go: a new size is still cached, and no stale block
    stays forever."""
    fastops.release_output_cache()
    x, rois = _roi_output(k=4000, c=128)  # 100.4 MB outputs
    outs = [fastops.roi_align(x, rois, 7, 1.0, 2) for _ in range(5)]
    big = outs[0].nbytes
    del outs  # 5 x 100.4 MB cached
    assert fastops.output_cache_bytes() == 5 * big
    xs, rs = _roi_output(k=1700, c=128)  # 42.6 MB: no 100 MB block fits it (at most twice its size)
    small = fastops.roi_align(xs, rs, 7, 1.0, 2)
    assert fastops.output_cache_bytes() == 5 * big
    nbytes = small.nbytes
    del small  # 544 MB > 512 MiB: the oldest 100 MB block goes, the new one stays
    assert fastops.output_cache_bytes() == 4 * big + nbytes
    again = fastops.roi_align(xs, rs, 7, 1.0, 2)
    assert fastops.output_cache_bytes() == 4 * big  # taken from the cache
    del again
    fastops.release_output_cache()


def test_cache_can_be_turned_off():
    code = (
        "import torch, fastops; x = torch.randn(1, 64, 16, 16); r = torch.tensor([[0., 1, 1, 9, 9]]).repeat(2000, 1);"
        "y = fastops.roi_align(x, r, 7); del y; print(fastops.output_cache_bytes())"
    )
    env = dict(os.environ, FASTOPS_OUTPUT_CACHE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


OUT_OF_MEMORY_SCRIPT = """
import torch, fastops
boxes = torch.rand(1_000_000, 4) * 100
boxes[:, 2:] += boxes[:, :2] + 1
features = torch.rand(1, 8, 8, 8)
rois = torch.tensor([[0.0, 0, 0, 4, 4]]).expand(20_000, 5).contiguous()
cases = {
    "box_iou": lambda: fastops.box_iou(boxes, boxes),  # 4 TB output
    "generalized_box_iou": lambda: fastops.generalized_box_iou(boxes, boxes),
    "roi_align": lambda: fastops.roi_align(features, rois, (4096, 4096)),  # 10 TB
    "paste_masks": lambda: fastops.ops.paste_masks(torch.rand(1000, 28, 28), boxes[:1000], (100_000, 100_000)),
    "conv2d": lambda: fastops.ops.conv2d(torch.rand(1, 1, 8, 8), torch.rand(1 << 20, 1, 1, 1), padding=100_000),
}
for name, call in cases.items():
    try:
        call()
        print(name, "no error")
    except RuntimeError as e:
        print(name, "RuntimeError", str(e).splitlines()[0])
"""


def test_an_output_larger_than_memory_is_a_clear_error(tmp_path):
    # In a child process: were an allocation to succeed under overcommit and be filled, the kernel's
    # OOM killer would end the child and this test would fail instead of the suite dying.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastops.__file__)))
    out = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY_SCRIPT], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert set(lines) == {"box_iou", "generalized_box_iou", "roi_align", "paste_masks", "conv2d"}
    for name, message in lines.items():
        assert message.startswith("RuntimeError") and "memory" in message and "bytes" in message, (name, message)
