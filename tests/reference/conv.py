"""conv2d in float64, written from its definition, independent of the kernels and of torch's
convolution."""

import torch
import torch.nn.functional as F


def reference_conv2d(x, w, b, stride, padding4, dilation, groups):
    """conv2d in float64 from the definition: each output pixel's sum over its window, padded
    with zeros (loops over the taps, no convolution routine)."""
    x, w = x.double(), w.double()
    top, left, bottom, right = padding4
    xp = F.pad(x, (left, right, top, bottom))
    n, _, hp, wp = xp.shape
    c_out, c_in_g, kh, kw = w.shape
    ho = (hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = torch.zeros(n, c_out, ho, wo, dtype=torch.float64)
    c_out_g = c_out // groups
    for g in range(groups):
        xs = xp[:, g * c_in_g : (g + 1) * c_in_g]
        ws = w[g * c_out_g : (g + 1) * c_out_g]
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dilation[0], j * dilation[1]
                win = xs[
                    :, :, r0 : r0 + (ho - 1) * stride[0] + 1 : stride[0], c0 : c0 + (wo - 1) * stride[1] + 1 : stride[1]
                ]
                out[:, g * c_out_g : (g + 1) * c_out_g] += torch.einsum("oc,nchw->nohw", ws[:, :, i, j], win)
    if b is not None:
        out += b.double().view(1, -1, 1, 1)
    return out
