"""DeepLab v3's atrous spatial pyramid pooling (``ASPP``), laid out as torchvision's (same submodules
and state_dict keys), whose 1x1 and atrous branches run as one ``fastops.aspp_conv`` op."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import conv as ops
from .conv import (
    AUTO_USEFUL_FRACTION,
    Conv2d,
    check_path,
    like_input_layout,
    needed_grads,
    timing_run,
    useful_fraction,
)
from .conv_autotune import measured_choice, problem_key

__all__ = ["ASPP"]


class _ASPPConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, rate: int, path: str):
        super().__init__(
            Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False, path=path),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class _ASPPPooling(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, path: str):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            Conv2d(in_channels, out_channels, 1, bias=False, path=path),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLab v3 (Chen et al., 2017), laid out as
    ``torchvision.models.segmentation.deeplabv3.ASPP`` (same submodules and state_dict keys):
    a 1x1 branch, one 3x3 atrous branch per rate, image pooling, each with BatchNorm and ReLU, then
    a 1x1 projection with BatchNorm, ReLU and dropout.

    With ``path`` "fastops" the 1x1 and atrous convolutions run as one ``fastops.aspp_conv`` call:
    the 1x1 weight and every branch's centre tap in one GEMM, the off-centre taps over their valid
    rectangles only. "torch" runs each branch through torch's convolution (as torchvision does).
    "auto" measures the fused op against torch's branch convolutions on the first call with a new
    problem and keeps the faster (``fastops.nn.conv``'s module docstring); its fixed rule, the
    fallback, fuses where at least one rate leaves a useful fraction at most
    ``AUTO_USEFUL_FRACTION`` on the input's map. Unfused branches are ``fastops.nn.Conv2d``
    modules with this ``path``, so under "auto" each chooses its own kernels.

    Args (keyword-only after the first three):
        in_channels, out_channels: channels of the input and of each branch and the output.
        rates: the atrous rates (DeepLab v3: 12, 24, 36 at output stride 8; 6, 12, 18 at 16).
        dropout: the projection's dropout probability (torchvision: 0.5).
        path: "auto", "fastops" or "torch".

    Shapes: input [N, in_channels, H, W] -> [N, out_channels, H, W].
    """

    def __init__(
        self, in_channels: int, out_channels: int, rates: Sequence[int], *, dropout: float = 0.5, path: str = "auto"
    ):
        super().__init__()
        self.rates = tuple(int(r) for r in rates)
        if any(r <= 0 for r in self.rates):
            raise ValueError(f"rates must be positive, got {self.rates}")
        self.path = check_path(path)
        branches: list[nn.Module] = [
            nn.Sequential(
                Conv2d(in_channels, out_channels, 1, bias=False, path=path), nn.BatchNorm2d(out_channels), nn.ReLU()
            )
        ]
        branches += [_ASPPConv(in_channels, out_channels, rate, path) for rate in self.rates]
        branches.append(_ASPPPooling(in_channels, out_channels, path))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            Conv2d(len(self.convs) * out_channels, out_channels, 1, bias=False, path=path),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    def _fixed_rule(self, x: Tensor) -> bool:
        h, w = x.shape[-2:]
        return any(
            useful_fraction((h, w), (h, w), (3, 3), (1, 1), (r, r), (r, r)) <= AUTO_USEFUL_FRACTION for r in self.rates
        )

    def _branch_weights(self) -> list[Tensor]:
        return [branch[0].weight for branch in self.convs[: len(self.rates) + 1]]

    def _uses_fused(self, x: Tensor) -> bool:
        if self.path != "auto":
            return self.path == "fastops"
        rule = self._fixed_rule(x)
        weights = self._branch_weights()
        grads = needed_grads(x, *weights)
        key = problem_key("ASPP", x, grads, tuple(weights[0].shape), self.rates)
        rates = self.rates

        def torch_branches(x, *ws):
            outs = [F.conv2d(x, ws[0])]
            outs += [F.conv2d(x, w, padding=r, dilation=r) for w, r in zip(ws[1:], rates)]
            return torch.cat(outs, 1)

        def candidates():
            return {
                "fastops": timing_run(
                    lambda x, *ws: like_input_layout(ops.aspp_conv(x, ws, rates), x), (x, *weights), grads
                ),
                "torch": timing_run(torch_branches, (x, *weights), grads),
            }

        return measured_choice(key, candidates, x.device, "fastops" if rule else "torch") == "fastops"

    def selected_path(self, x: Tensor) -> str:
        """The implementation a call on ``x`` under the current grad mode runs: "fastops" (the fused
        op) or "torch" (branch by branch), measuring it now if "auto" has not met this problem yet."""
        return "fastops" if self._uses_fused(x) else "torch"

    def forward(self, x: Tensor) -> Tensor:
        branches = self.convs[: len(self.rates) + 1]
        if self._uses_fused(x):
            weights = self._branch_weights()
            fused = like_input_layout(ops.aspp_conv(x, weights, self.rates), x)
            c = weights[0].shape[0]
            res = [branch[2](branch[1](fused[:, i * c : (i + 1) * c])) for i, branch in enumerate(branches)]
        else:
            res = [branch(x) for branch in branches]
        res.append(self.convs[-1](x))
        return self.project(like_input_layout(torch.cat(res, dim=1), x))

    def extra_repr(self) -> str:
        return f"rates={self.rates}, path={self.path!r}"
