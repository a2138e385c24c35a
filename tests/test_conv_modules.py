"""The convolution modules: torch's drop-ins (state_dicts both ways, padding modes) and the rule
that picks our kernels or torch's."""

import pytest
import torch
from common import cpu_isa
from conv_cases import (
    F64,
)

import fastops
import fastops.nn
from fastops.nn.conv import useful_fraction

# ---- modules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["auto", "fastops", "torch"])
def test_conv2d_module_state_dict_round_trip(path):
    torch_conv = torch.nn.Conv2d(4, 6, 3, padding=12, dilation=12, groups=2).double()
    ours = fastops.nn.Conv2d(4, 6, 3, padding=12, dilation=12, groups=2, path=path).double()
    ours.load_state_dict(torch_conv.state_dict())
    assert set(ours.state_dict()) == {"weight", "bias"}
    x = torch.randn(2, 4, 15, 17, dtype=torch.float64)
    torch.testing.assert_close(ours(x), torch_conv(x), **F64)
    back = torch.nn.Conv2d(4, 6, 3, padding=12, dilation=12, groups=2).double()
    back.load_state_dict(ours.state_dict())
    torch.testing.assert_close(back(x), torch_conv(x), **F64)


@pytest.mark.parametrize("padding_mode", ["reflect", "circular", "replicate"])
def test_conv2d_module_padding_modes(padding_mode):
    torch_conv = torch.nn.Conv2d(3, 4, 3, padding=2, dilation=2, padding_mode=padding_mode).double()
    ours = fastops.nn.Conv2d(3, 4, 3, padding=2, dilation=2, padding_mode=padding_mode, path="fastops").double()
    ours.load_state_dict(torch_conv.state_dict())
    x = torch.randn(1, 3, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(ours(x), torch_conv(x), **F64)


@pytest.mark.parametrize("path", ["auto", "fastops", "torch"])
@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (4, 2, 1)])
def test_conv_transpose2d_module_state_dict_round_trip(path, kernel, stride, padding):
    torch_conv = torch.nn.ConvTranspose2d(6, 4, kernel, stride=stride, padding=padding).double()
    ours = fastops.nn.ConvTranspose2d(6, 4, kernel, stride=stride, padding=padding, path=path).double()
    ours.load_state_dict(torch_conv.state_dict())
    x = torch.randn(2, 6, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(x), torch_conv(x), **F64)
    torch.testing.assert_close(ours(x, output_size=[15, 11]), torch_conv(x, output_size=[15, 11]), **F64)
    back = torch.nn.ConvTranspose2d(6, 4, kernel, stride=stride, padding=padding).double()
    back.load_state_dict(ours.state_dict())
    torch.testing.assert_close(back(x), torch_conv(x), **F64)


def test_auto_path_rule(fixed_rule):
    """The documented fixed rule: our kernels where at most 0.6 of the dense work sees the map."""
    assert useful_fraction((33, 33), (33, 33), (3, 3), (1, 1), (36, 36), (36, 36)) == pytest.approx(1 / 9)
    assert useful_fraction((33, 33), (33, 33), (3, 3), (1, 1), (12, 12), (12, 12)) == pytest.approx((75 / 99) ** 2)
    assert useful_fraction((64, 64), (64, 64), (3, 3), (1, 1), (1, 1), (1, 1)) == pytest.approx((190 / 192) ** 2)
    x33, x64 = torch.randn(1, 8, 33, 33), torch.randn(1, 8, 64, 64)
    assert fastops.nn.Conv2d(8, 8, 3, padding=24, dilation=24)._choose(x33) == "fastops"
    assert fastops.nn.Conv2d(8, 8, 3, padding=1)._choose(x64) == "torch"
    assert fastops.nn.Conv2d(8, 8, 3, padding=6, dilation=6)._choose(x64) == "torch"
    assert fastops.nn.Conv2d(8, 8, 3, padding=6, dilation=6, path="fastops")._choose(x64) == "fastops"
    assert fastops.nn.Conv2d(8, 8, 3, padding=36, dilation=36, path="torch")._choose(x33) == "torch"
    assert fastops.nn.Conv2d(8, 8, 3, padding=24, dilation=24, groups=2)._choose(x33) == "torch"
    assert fastops.nn.ConvTranspose2d(8, 4, 2, stride=2)._choose(x64) == "fastops"
    assert fastops.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)._choose(x64) == "torch"
    # k4s2p1 with channels the direct kernels tile: ours on a float32 CPU input with AVX-512 in use
    unet = fastops.nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
    x = torch.randn(1, 64, 8, 8)
    assert (unet._choose(x) == "fastops") == (fastops.build_info()["cpu_isa"] == "avx512")
    assert unet._choose(x.double()) == "torch"
    with cpu_isa("avx2"):
        assert unet._choose(x) == "torch"
    with pytest.raises(ValueError, match="path"):
        fastops.nn.Conv2d(8, 8, 3, path="cudnn")
