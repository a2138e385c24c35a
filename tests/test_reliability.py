"""Every op family under the conditions of a training job: several thread counts, several Python
threads at once, thousands of repeated calls (memory stays flat)."""

import gc
import threading

import pytest
import torch

import fastops


def _boxes(n: int, seed: int, size: float = 100.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * size / 4], 1)


def _case(seed: int, scale: int = 1) -> dict:
    """Inputs of one call of each op family; at scale 1 big enough that the CPU kernels split
    their work across threads, at a larger scale that many times smaller."""
    g = torch.Generator().manual_seed(seed)
    n, k = 3000 // scale, 200 // scale
    rois = torch.cat([torch.randint(0, 2, (k, 1), generator=g).float(), _boxes(k, seed + 1, 60.0)], 1)
    return {
        "boxes": _boxes(n, seed),
        "scores": torch.rand(n, generator=g),
        "idxs": torch.randint(0, 5, (n,), generator=g),
        "features": torch.randn(2, 32 // scale, 48, 48, generator=g),
        "rois": rois,
        "logits": torch.randn(4096 // scale, 20, generator=g),
        "targets": (torch.rand(4096 // scale, 20, generator=g) > 0.9).float(),
        "image": torch.randn(1, 32 // scale, 33, 33, generator=g),
        "weight": torch.randn(16, 32 // scale, 3, 3, generator=g),
        "masks": torch.rand(50 // scale, 28, 28, generator=g),
        "costs": torch.rand(48 // scale, 100, 50, generator=g),
        "panoptic": (torch.randint(1, 4, (8, 16, 16), generator=g) * 100).repeat_interleave(8 // scale, 1),
        "rgb": torch.rand(3, 96 // scale, 80 // scale, generator=g),
    }


OPS = {
    "box_iou": lambda c: fastops.box_iou(c["boxes"], c["boxes"][:500]),
    "generalized_box_iou_loss": lambda c: fastops.generalized_box_iou_loss(c["boxes"], c["boxes"].flip(0)),
    "nms": lambda c: fastops.nms(c["boxes"], c["scores"], 0.5),
    "batched_nms": lambda c: fastops.batched_nms(c["boxes"], c["scores"], c["idxs"], 0.5),
    "roi_align": lambda c: fastops.roi_align(c["features"], c["rois"], 7, 0.5, 2, True),
    "roi_pool": lambda c: fastops.roi_pool(c["features"], c["rois"], 7, 0.5),
    "sigmoid_focal_loss": lambda c: fastops.sigmoid_focal_loss(c["logits"], c["targets"], reduction="none"),
    "conv2d_atrous": lambda c: fastops.conv2d(c["image"], c["weight"], padding=12, dilation=12),
    "paste_masks": lambda c: fastops.paste_masks(c["masks"], c["boxes"][: c["masks"].shape[0]], (120, 140)),
    "hungarian_match": lambda c: torch.stack([torch.stack(pair) for pair in fastops.hungarian_match(c["costs"])]),
    "selective_search": lambda c: fastops.selective_search(c["rgb"], "fast"),
    "panoptic_quality": lambda c: torch.tensor(
        list(
            fastops.metrics.panoptic_quality(
                c["panoptic"], c["panoptic"].roll(3, -1), {1: True, 2: False, 3: True}, label_divisor=100
            )["All"].values()
        )
    ),
}


def _run_all(case: dict) -> dict:
    return {name: op(case) for name, op in OPS.items()}


def _assert_bitwise(got: dict, expected: dict) -> None:
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_every_op_gives_the_same_bits_on_1_2_and_3_threads():
    case = _case(0)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = _run_all(case)
        for threads in (2, 3):
            torch.set_num_threads(threads)
            _assert_bitwise(_run_all(case), expected)
            _assert_bitwise(_run_all(case), expected)  # and again: run to run
    finally:
        torch.set_num_threads(previous)


def test_ops_called_from_several_python_threads_at_once():
    cases = [_case(seed) for seed in range(4)]
    expected = [_run_all(c) for c in cases]
    results: list = [None] * 6
    errors: list = []
    barrier = threading.Barrier(len(results))

    def worker(i: int) -> None:
        try:
            barrier.wait()
            out = []
            for _ in range(2):
                out.append(_run_all(cases[i % len(cases)]))
            results[i] = out
        except Exception as e:  # reported below, with the thread's index
            errors.append((i, e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, runs in enumerate(results):
        for got in runs:
            _assert_bitwise(got, expected[i % len(cases)])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_stays_flat_over_thousands_of_calls():
    small = _case(1, scale=8)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # what leaks does not depend on the threads; one keeps the loop fast
    try:
        for _ in range(50):  # warm up: the output cache, allocator arenas
            _run_all(small)
        gc.collect()
        before = _rss_bytes()
        for _ in range(1000):
            _run_all(small)
        gc.collect()
        grown = _rss_bytes() - before
    finally:
        torch.set_num_threads(previous)
    # A leak of one small output per call would be tens of MB over 1000 calls of nine ops.
    assert grown < 16 * 2**20, f"RSS grew by {grown / 2**20:.1f} MB over 1000 rounds of every op"


def _meta(t: torch.Tensor) -> torch.Tensor:
    return t.to("meta")


_B = torch.tensor([[0, 0, 10, 10.0], [1, 1, 5, 5]])
_X, _W = torch.randn(1, 2, 8, 8), torch.randn(2, 2, 3, 3)
_LOGITS, _TARGETS = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
MIXED_DEVICE_CALLS = {
    "box_iou": lambda: fastops.box_iou(_B, _meta(_B)),
    "generalized_box_iou_loss": lambda: fastops.generalized_box_iou_loss(_meta(_B), _B),
    "nms": lambda: fastops.nms(_B, _meta(torch.rand(2)), 0.5),
    "batched_nms idxs": lambda: fastops.batched_nms(_B, torch.rand(2), _meta(torch.tensor([0, 1])), 0.5),
    "multiclass_nms": lambda: fastops.multiclass_nms(_B[None], _meta(torch.rand(1, 2, 3)), max_detections=3),
    "sigmoid_focal_loss class_weight": lambda: fastops.sigmoid_focal_loss(
        _LOGITS, _TARGETS, class_weight=_meta(torch.rand(3))
    ),
    "weighted_bce_with_logits pos_weight": lambda: fastops.weighted_bce_with_logits(
        _LOGITS, _TARGETS, pos_weight=_meta(torch.rand(3))
    ),
    "softmax_focal_loss class_weight": lambda: fastops.softmax_focal_loss(
        _LOGITS, torch.tensor([0, 1, 2, 1]), class_weight=_meta(torch.rand(3))
    ),
    "conv2d bias": lambda: fastops.conv2d(_X, _W, _meta(torch.rand(2))),
    "conv_transpose2d weight": lambda: fastops.conv_transpose2d(_X, _meta(_W)),
    "aspp_conv weight": lambda: fastops.aspp_conv(_X, [_W[:, :, :1, :1], _meta(_W)], [6]),
    "roi_align boxes": lambda: fastops.roi_align(_X, [_meta(torch.tensor([[1, 1, 4, 4.0]]))], 2),
    "roi_pool boxes": lambda: fastops.roi_pool(_X, _meta(torch.tensor([[0, 1, 1, 4, 4.0]])), 2),
    "paste_masks boxes": lambda: fastops.paste_masks(torch.rand(2, 1, 5, 5), _meta(_B), (10, 10)),
    "hungarian_match costs[1]": lambda: fastops.hungarian_match([torch.rand(2, 3), _meta(torch.rand(3, 2))]),
}


@pytest.mark.parametrize("name", list(MIXED_DEVICE_CALLS))
def test_a_tensor_on_another_device_is_rejected(name):
    """A meta tensor beside CPU ones would send the call to the fake kernel, which would return an
    uninitialised CPU tensor: every op rejects the mix instead."""
    with pytest.raises(RuntimeError, match="must be on one device, got tensors on cpu, meta"):
        MIXED_DEVICE_CALLS[name]()
