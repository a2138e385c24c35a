"""Stochastic depth (Huang et al., 2016) with timm's semantics: in training, each sample's branch is
dropped (zeroed) with probability ``drop_prob`` and otherwise scaled by 1 / (1 - drop_prob), so its
expectation is unchanged; in eval mode, or with ``drop_prob`` 0, the input is returned as it is.
The draw is one Bernoulli per sample from torch's generator (a seed fixes it)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["DropPath", "drop_path"]


def _check_prob(drop_prob: float) -> float:
    drop_prob = float(drop_prob)
    if not 0.0 <= drop_prob <= 1.0:
        raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
    return drop_prob


def drop_path(x: Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True) -> Tensor:
    """x [N, ...] with each sample zeroed with probability ``drop_prob`` (in training), the kept
    ones divided by 1 - drop_prob when ``scale_by_keep``; x itself otherwise."""
    drop_prob = _check_prob(drop_prob)
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        mask.div_(keep_prob)
    return x * mask


class DropPath(nn.Module):
    """``drop_path`` as a module (timm's constructor): active in training mode only."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        self.drop_prob = _check_prob(drop_prob)
        self.scale_by_keep = scale_by_keep

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"
