"""Second-order gradients: the ops' backward ops have no derivative of their own.

A backward op (``fastops::roi_align_backward``, ...) runs inside its forward op's autograd formula.
Under ``create_graph=True`` its result becomes part of the graph, and without a formula of its own
autograd would treat it as a constant: a gradient of a gradient through it would come out zero or
None, silently. Each backward op therefore gets a formula that raises, naming the public function,
as soon as a second backward pass reaches it. First-order training never calls it: the backward
pass runs without recording a graph.
"""

from __future__ import annotations

import torch

# backward op -> the public function whose second derivative it would be
_BACKWARD_OPS = {
    "box_overlap_backward": "box_iou / generalized_box_iou / distance_box_iou / complete_box_iou and the box losses",
    "roi_align_backward": "roi_align",
    "multi_scale_roi_align_backward": "multi_scale_roi_align",
    "roi_pool_backward": "roi_pool",
    "sigmoid_focal_loss_backward": "sigmoid_focal_loss / weighted_bce_with_logits",
    "softmax_focal_loss_backward": "softmax_focal_loss",
    "conv2d_input_grad": "conv2d",
    "conv2d_weight_grad": "conv2d / conv_transpose2d",
    "aspp_conv_backward": "aspp_conv",
}


class DoubleBackwardError(RuntimeError):
    """A second backward pass reached an op that has first-order gradients only."""


def _refuse(op: str, public: str) -> None:
    def setup_context(ctx, inputs, output):
        pass

    def backward(ctx, *grads):
        raise DoubleBackwardError(
            f"fastops.{public}: double backward (a gradient of a gradient, through "
            f"torch.autograd.grad(..., create_graph=True)) is not supported; fastops::{op} has "
            "first-order gradients only"
        )

    torch.library.register_autograd(f"fastops::{op}", backward, setup_context=setup_context)


for _op, _public in _BACKWARD_OPS.items():
    _refuse(_op, _public)
