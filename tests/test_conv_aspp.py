"""The fused ASPP op (aspp_conv) against separate convolutions, and the ASPP module against
torchvision's."""

import pytest
import torch
import torch.nn.functional as F
from conv_cases import (
    F64,
)

import fastops
import fastops.nn

# ---- the fused ASPP op --------------------------------------------------------------------------


@pytest.mark.parametrize("hw,rates", [((33, 33), (12, 24, 36)), ((9, 7), (1, 2, 3)), ((4, 5), (6,)), ((3, 3), ())])
def test_aspp_conv_matches_separate_convolutions(hw, rates):
    x = torch.randn(2, 5, *hw, dtype=torch.float64)
    weights = [torch.randn(3, 5, 1, 1, dtype=torch.float64)]
    weights += [torch.randn(3, 5, 3, 3, dtype=torch.float64) for _ in rates]

    def separate(x, *ws):
        outs = [F.conv2d(x, ws[0])] + [F.conv2d(x, w, padding=r, dilation=r) for w, r in zip(ws[1:], rates)]
        return torch.cat(outs, 1)

    def run(fn):
        xs = x.clone().requires_grad_()
        ws = [w.clone().requires_grad_() for w in weights]
        out = fn(xs, *ws)
        out.backward(torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(5)))
        return [out.detach(), xs.grad] + [w.grad for w in ws]

    ours = run(lambda x, *ws: fastops.aspp_conv(x, ws, rates))
    for a, t in zip(ours, run(separate)):
        torch.testing.assert_close(a, t, **F64)


@pytest.mark.parametrize("grad_layout", [torch.channels_last, torch.contiguous_format])
def test_aspp_conv_channels_last(grad_layout):
    # a channels_last map runs as it is (the centre taps: one GEMM over the batch's pixels); its
    # results and input gradient in channels_last, against the NCHW separate convolutions
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 70, 13, 12, generator=g, dtype=torch.float64)
    weights = [torch.randn(4, 70, 1, 1, generator=g, dtype=torch.float64)]
    weights += [torch.randn(4, 70, 3, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    gout = torch.randn(2, 12, 13, 12, generator=g, dtype=torch.float64)
    rates = (2, 9)

    def separate(x, ws):
        outs = [F.conv2d(x, ws[0])] + [F.conv2d(x, w, padding=r, dilation=r) for w, r in zip(ws[1:], rates)]
        return torch.cat(outs, 1)

    def run(fn, layout, grad_layout):
        xs = x.contiguous(memory_format=layout).requires_grad_()
        ws = [w.clone().requires_grad_() for w in weights]
        out = fn(xs, ws)
        return [out, *torch.autograd.grad(out, [xs, *ws], gout.contiguous(memory_format=grad_layout))]

    cl = torch.channels_last
    ours = run(lambda x, ws: fastops.aspp_conv(x, ws, rates), cl, grad_layout)
    for a, t in zip(ours, run(separate, torch.contiguous_format, torch.contiguous_format)):
        torch.testing.assert_close(a, t, **F64)
    assert ours[0].is_contiguous(memory_format=cl) and ours[1].is_contiguous(memory_format=cl)


# ---- the ASPP module --------------------------------------------------------------------------------


def _torchvision_aspp(in_channels, out_channels, rates):
    from torchvision.models.segmentation.deeplabv3 import ASPP

    return ASPP(in_channels, rates, out_channels)


@pytest.mark.parametrize("path", ["auto", "fastops", "torch"])
def test_aspp_module_matches_torchvision(path):
    tv = _torchvision_aspp(16, 8, [12, 24, 36]).double()
    ours = fastops.nn.ASPP(16, 8, [12, 24, 36], path=path).double()
    assert set(ours.state_dict()) == set(tv.state_dict())
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for p in tv.parameters():
            p.normal_()
        for name, buf in tv.named_buffers():
            if "running_var" in name:
                buf.uniform_(0.5, 2)
            elif "running_mean" in name:
                buf.normal_()
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(2, 16, 33, 33, dtype=torch.float64)
    tv.eval(), ours.eval()
    torch.testing.assert_close(ours(x), tv(x), **F64)
    # training mode, gradients included (no dropout, so both are deterministic)
    tv.project[3].p = 0.0
    ours.project[3].p = 0.0
    tv.train(), ours.train()
    xs, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ours, out_tv = ours(xs), tv(xt)
    torch.testing.assert_close(out_ours, out_tv, **F64)
    g = torch.randn(out_tv.shape, dtype=torch.float64)
    out_ours.backward(g)
    out_tv.backward(g)
    torch.testing.assert_close(xs.grad, xt.grad, rtol=1e-9, atol=1e-10)
    for (name, p_ours), (_, p_tv) in zip(ours.named_parameters(), tv.named_parameters()):
        torch.testing.assert_close(p_ours.grad, p_tv.grad, rtol=1e-9, atol=1e-10, msg=name)
    for (name, b_ours), (_, b_tv) in zip(ours.named_buffers(), tv.named_buffers()):
        torch.testing.assert_close(b_ours, b_tv, **F64, msg=name)
    back = _torchvision_aspp(16, 8, [12, 24, 36]).double().eval()
    back.load_state_dict(ours.state_dict())
    ours.eval()
    torch.testing.assert_close(back(x), ours(x), **F64)


def test_aspp_uses_the_fused_op_when_auto(fixed_rule):
    ours = fastops.nn.ASPP(8, 4, [12, 24, 36])
    assert ours._uses_fused(torch.randn(1, 8, 33, 33))
    assert not ours._uses_fused(torch.randn(1, 8, 256, 256))
    assert fastops.nn.ASPP(8, 4, [1], path="fastops")._uses_fused(torch.randn(1, 8, 256, 256))
