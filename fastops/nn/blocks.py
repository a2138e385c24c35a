"""``Conv2dNormActivation``, torchvision's convolution-norm-activation block (same constructor,
same state_dict keys: ``0`` the convolution, then the norm and the activation when given), with
the convolution a ``fastops.nn.Conv2d``. Detection heads, FPNs and backbones are built from it."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .conv import Conv2d

__all__ = ["Conv2dNormActivation"]


class Conv2dNormActivation(nn.Sequential):
    """Conv2d, then ``norm_layer(out_channels)`` and ``activation_layer()`` when given, as
    ``torchvision.ops.Conv2dNormActivation``. ``padding=None`` keeps the size at stride 1
    (``(kernel_size - 1) // 2 * dilation``); ``bias=None`` means a bias only without a norm."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        norm_layer: Callable[..., nn.Module] | None = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] | None = nn.ReLU,
        dilation: int = 1,
        inplace: bool | None = True,
        bias: bool | None = None,
    ):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [
            Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            params = {} if inplace is None else {"inplace": inplace}
            layers.append(activation_layer(**params))
        super().__init__(*layers)
        self.out_channels = out_channels
