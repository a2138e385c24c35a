"""Loss modules over the fused losses of ``fastops.ops.focal_loss``. Class weights (and pos_weight)
are buffers, so they follow ``.to(device)`` and are saved in state_dicts; sample weights and the
normalizer are per call. Losses are computed the same in train and eval mode. The modules script
with TorchScript and trace with FX (one node per loss call)."""

from __future__ import annotations

from torch import Tensor, nn

from ..ops import focal_loss as F
from ..ops.reduction import reduction_code


def _buffer(module: nn.Module, name: str, value: Tensor | None) -> None:
    module.register_buffer(name, None if value is None else value.detach().clone())


class SigmoidFocalLoss(nn.Module):
    """``fastops.sigmoid_focal_loss`` as a module (default reduction "mean")."""

    def __init__(
        self,
        *,
        alpha: float = 0.25,
        gamma: float = 2.0,
        reduction: str = "mean",
        class_weight: Tensor | None = None,
        background_index: int | None = None,
        ignore_index: int = -100,
    ):
        super().__init__()
        reduction_code(reduction)  # fail at construction, not at the first call
        self.alpha, self.gamma, self.reduction = float(alpha), float(gamma), reduction
        self.background_index, self.ignore_index = background_index, ignore_index
        _buffer(self, "class_weight", class_weight)

    def forward(
        self,
        inputs: Tensor,
        targets: Tensor,
        sample_weight: Tensor | None = None,
        normalizer: float | Tensor | None = None,
    ) -> Tensor:
        return F.sigmoid_focal_loss(
            inputs,
            targets,
            self.alpha,
            self.gamma,
            self.reduction,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            normalizer=normalizer,
            background_index=self.background_index,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}"


class SoftmaxFocalLoss(nn.Module):
    """``fastops.softmax_focal_loss`` as a module."""

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | None = None,
        reduction: str = "mean",
        class_weight: Tensor | None = None,
        ignore_index: int = -100,
    ):
        super().__init__()
        reduction_code(reduction)
        self.gamma, self.reduction, self.ignore_index = float(gamma), reduction, ignore_index
        self.alpha = None if alpha is None else float(alpha)
        _buffer(self, "class_weight", class_weight)

    def forward(
        self,
        inputs: Tensor,
        targets: Tensor,
        sample_weight: Tensor | None = None,
        normalizer: float | Tensor | None = None,
    ) -> Tensor:
        return F.softmax_focal_loss(
            inputs,
            targets,
            self.gamma,
            alpha=self.alpha,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            reduction=self.reduction,
            normalizer=normalizer,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}"


class WeightedBCEWithLogitsLoss(nn.Module):
    """``fastops.weighted_bce_with_logits`` as a module: multi-label BCE with per-class weights
    and positive weights, per-sample weights per call."""

    def __init__(
        self,
        *,
        pos_weight: Tensor | None = None,
        class_weight: Tensor | None = None,
        reduction: str = "mean",
        background_index: int | None = None,
        ignore_index: int = -100,
    ):
        super().__init__()
        reduction_code(reduction)
        self.reduction, self.background_index, self.ignore_index = reduction, background_index, ignore_index
        _buffer(self, "pos_weight", pos_weight)
        _buffer(self, "class_weight", class_weight)

    def forward(
        self,
        inputs: Tensor,
        targets: Tensor,
        sample_weight: Tensor | None = None,
        normalizer: float | Tensor | None = None,
    ) -> Tensor:
        return F.weighted_bce_with_logits(
            inputs,
            targets,
            pos_weight=self.pos_weight,
            class_weight=self.class_weight,
            sample_weight=sample_weight,
            reduction=self.reduction,
            normalizer=normalizer,
            background_index=self.background_index,
            ignore_index=self.ignore_index,
        )
