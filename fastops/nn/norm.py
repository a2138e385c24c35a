"""Frozen batch normalization, as ``torchvision.ops.FrozenBatchNorm2d``: the statistics and the
affine parameters are buffers (no gradient, no update), so a detector fine-tuned with small
batches keeps its backbone's ImageNet statistics.

Beyond torchvision: ``scale_and_shift()`` returns the per-channel affine map the layer applies,
and ``fold_into(weight, bias)`` folds it into the convolution before it, so ``conv`` followed by
this layer becomes one convolution with a bias (the backbones do this on every call: the
function is the same, with one pass over the activations instead of three). When no gradient is
needed (inference, or a frozen convolution), the folded weights are kept until the convolution's
or this layer's tensors change.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FrozenBatchNorm2d"]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters: y = x * scale + shift, with
    scale = weight / sqrt(running_var + eps) and shift = bias - running_mean * scale.

    Buffers (torchvision's names, so its state_dicts load both ways): ``weight``, ``bias``,
    ``running_mean``, ``running_var``, each Tensor[C]. A ``num_batches_tracked`` entry in a loaded
    state_dict (from a BatchNorm2d) is ignored.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self._folded: tuple | None = None  # (key, weight, bias) of the last fold without gradients

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        """(scale, shift), each Tensor[C], computed as torchvision computes them."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def fold_into(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
        """The weight [C, ...] and bias [C] of one convolution equal to the convolution
        (``weight``, ``bias``) followed by this layer. Differentiable in ``weight`` and ``bias``."""
        needs_grad = torch.is_grad_enabled() and (weight.requires_grad or (bias is not None and bias.requires_grad))
        if needs_grad or torch.compiler.is_compiling():
            return self._fold(weight, bias)
        key = (
            self.eps,
            *((t.data_ptr(), t._version, t.dtype, t.device) for t in (weight, *self._buffers.values())),
            None if bias is None else (bias.data_ptr(), bias._version),
        )
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, *self._fold(weight, bias))
        return self._folded[1], self._folded[2]

    def _fold(self, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
        scale, shift = self.scale_and_shift()
        folded_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1))).to(weight.dtype)
        folded_bias = shift if bias is None else bias * scale + shift
        return folded_weight, folded_bias.to(weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_and_shift()
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
