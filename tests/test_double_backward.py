"""Second-order gradients through every differentiable op: a clear error, never zeros or None."""

import pytest
import torch

import fastops


def _boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 20
    return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 10], 1)


def _case(name):
    """(function of the differentiable inputs, those inputs) with a non-zero second derivative."""
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    rois = torch.tensor([[0, 1.0, 1, 5, 6]], dtype=torch.float64)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    logits, targets = torch.randn(4, 3, dtype=torch.float64), (torch.rand(4, 3) > 0.5).double()
    return {
        "box_iou": (lambda a, b: fastops.box_iou(a, b), [_boxes(3, 0), _boxes(4, 1)]),
        "generalized_box_iou_loss": (lambda a, b: fastops.generalized_box_iou_loss(a, b), [_boxes(3, 0), _boxes(3, 1)]),
        "complete_box_iou_loss": (lambda a, b: fastops.complete_box_iou_loss(a, b), [_boxes(3, 0), _boxes(3, 1)]),
        # linear in x: the second derivative is taken through a weight z on the output
        "roi_align": (lambda x, z: fastops.roi_align(x, rois, 2, 1.0, 2) * z, [x, torch.rand(1, 2, 2, 2).double()]),
        "roi_pool": (lambda x, z: fastops.roi_pool(x, rois, 2, 1.0) * z, [x, torch.rand(1, 2, 2, 2).double()]),
        "multi_scale_roi_align": (
            lambda x, z: fastops.multi_scale_roi_align([x, x[..., ::2, ::2]], rois, 2, [1.0, 0.5], 2) * z,
            [x, torch.rand(1, 2, 2, 2).double()],
        ),
        "sigmoid_focal_loss": (lambda t: fastops.sigmoid_focal_loss(t, targets), [logits]),
        "softmax_focal_loss": (lambda t: fastops.softmax_focal_loss(t, torch.tensor([0, 1, 2, 1])), [logits]),
        "weighted_bce_with_logits": (lambda t: fastops.weighted_bce_with_logits(t, targets), [logits]),
        "conv2d": (lambda x, w: fastops.conv2d(x, w, padding=2, dilation=2), [x, w]),
        "conv_transpose2d": (lambda x, w: fastops.conv_transpose2d(x, w, stride=2), [x, w]),
        "aspp_conv": (lambda x, w: fastops.aspp_conv(x, [w[:, :, :1, :1], w], [6]), [x, w]),
    }[name]


NAMES = [
    "box_iou",
    "generalized_box_iou_loss",
    "complete_box_iou_loss",
    "roi_align",
    "roi_pool",
    "multi_scale_roi_align",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "weighted_bce_with_logits",
    "conv2d",
    "conv_transpose2d",
    "aspp_conv",
]


@pytest.mark.parametrize("name", NAMES)
def test_double_backward_raises_naming_the_function(name):
    fn, inputs = _case(name)
    inputs = [t.requires_grad_(True) for t in inputs]
    out = fn(*inputs)
    grads = torch.autograd.grad(out.square().sum(), inputs, create_graph=True)  # first order: fine
    penalty = sum(g.square().sum() for g in grads)
    assert penalty.requires_grad  # the second derivative is not zero, so autograd must go through
    with pytest.raises(RuntimeError, match=r"double backward .* is not supported"):
        torch.autograd.grad(penalty, inputs)


@pytest.mark.parametrize("name", ["roi_align", "conv2d", "sigmoid_focal_loss"])
def test_first_order_gradients_with_create_graph_are_unchanged(name):
    fn, inputs = _case(name)
    inputs = [t.requires_grad_(True) for t in inputs]
    plain = torch.autograd.grad(fn(*inputs).square().sum(), inputs)
    graphed = torch.autograd.grad(fn(*inputs).square().sum(), inputs, create_graph=True)
    for a, b in zip(plain, graphed):
        torch.testing.assert_close(b.detach(), a, rtol=0, atol=0)
