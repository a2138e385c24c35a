"""The CPU kernels are compiled once per instruction set; every copy must give identical bits."""

import pytest
import torch
from common import assert_same_across_isas, rand_boxes_xyxy, special_boxes_xyxy

import fastops


def run_box_overlap(mode, aligned, dtype):
    torch.manual_seed(1)
    b1 = torch.cat([rand_boxes_xyxy(301), special_boxes_xyxy()]).to(dtype).requires_grad_()
    b2 = torch.cat([rand_boxes_xyxy(301 if aligned else 263), special_boxes_xyxy()]).to(dtype).requires_grad_()
    out = fastops.box_overlap(b1, b2, mode=mode, aligned=aligned, fmt="cxcywh")
    (out * torch.randn(out.shape, dtype=out.dtype)).sum().backward()
    return out, b1.grad, b2.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("mode", ["iou", "giou", "diou", "ciou", "iof"])
@pytest.mark.parametrize("aligned", [False, True])
def test_every_isa_gives_the_same_bits(mode, aligned, dtype, restore_isa):
    assert_same_across_isas(lambda: run_box_overlap(mode, aligned, dtype))


def test_set_cpu_isa_reports_what_is_used(restore_isa):
    assert fastops.set_cpu_isa("default") == "default"
    assert fastops.build_info()["cpu_isa"] == "default"
    detected = fastops.build_info()["cpu_isa_detected"]
    assert fastops.set_cpu_isa("avx512") == detected


def run_nms_family(dtype):
    g = torch.Generator().manual_seed(2)
    boxes = (rand_boxes_xyxy(3000, generator=g) * 3).to(dtype)
    scores = torch.rand(3000, generator=g).to(dtype)
    idxs = torch.randint(0, 7, (3000,), generator=g)
    multi = fastops.multiclass_nms(boxes.reshape(3, 1000, 4), torch.rand(3, 1000, 5, generator=g).to(dtype))
    return (
        fastops.nms(boxes, scores, 0.5),
        fastops.batched_nms(boxes, scores, idxs, 0.3),
        *fastops.soft_nms(boxes[:400], scores[:400], method="gaussian"),
        *fastops.matrix_nms(boxes[:500], scores[:500], idxs[:500]),
        *multi,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_every_isa_gives_the_same_nms_results(dtype, restore_isa):
    assert_same_across_isas(lambda: run_nms_family(dtype))


def run_focal_family(dtype):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(500, 37, generator=g) * 4).to(dtype).requires_grad_()
    t = (torch.rand(500, 37, generator=g) < 0.1).to(dtype)
    labels = torch.randint(-1, 38, (500,), generator=g)
    out = []
    for gamma in (0.0, 2.0, 0.7):
        for loss in (
            fastops.sigmoid_focal_loss(x, t, 0.25, gamma),
            fastops.sigmoid_focal_loss(x, labels, 0.25, gamma, "sum", ignore_index=-1),
            fastops.softmax_focal_loss(x, labels.clamp(0, 36), gamma, reduction="none"),
        ):
            x.grad = None
            loss.sum().backward()
            out += [loss.detach(), x.grad.clone()]
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_every_isa_gives_the_same_focal_results(dtype, restore_isa):
    assert_same_across_isas(lambda: run_focal_family(dtype))


def run_paste_masks(dtype):
    g = torch.Generator().manual_seed(2)
    masks = torch.rand(40, 1, 28, 28, generator=g).to(dtype)
    xy = torch.rand(40, 2, generator=g) * 300 - 50
    boxes = torch.cat([xy, xy + torch.rand(40, 2, generator=g) * 200 + 1], dim=1)
    return fastops.paste_masks(masks, boxes, (250, 270)), fastops.paste_masks(masks, boxes, (250, 270), threshold=0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_every_isa_gives_the_same_paste_masks(dtype, restore_isa):
    assert_same_across_isas(lambda: run_paste_masks(dtype))
