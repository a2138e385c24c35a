"""RoIAlign and RoIPool in float64, written from their definitions (torchvision's rules for
sampling, clamping and rounding), independent of the kernels."""

import math

import torch


def _axis_weights(coords: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear weights [..., size] of sample coordinates [...] along one axis (RoIAlign's rules:
    outside [-1, size] nothing, below 0 clamped to 0, at or past the last pixel all on it)."""
    valid = (coords >= -1) & (coords <= size)
    c = coords.clamp(min=0)
    low = c.floor().clamp(max=size - 1)
    border = low >= size - 1
    frac = torch.where(border, torch.zeros_like(c), c - low)
    high = torch.where(border, low, low + 1)
    w = torch.zeros(*coords.shape, size, dtype=torch.float64)
    w.scatter_add_(-1, low.long().unsqueeze(-1), ((1 - frac) * valid).unsqueeze(-1))
    w.scatter_add_(-1, high.long().unsqueeze(-1), (frac * valid).unsqueeze(-1))
    return w


def roi_align_reference(x, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """RoIAlign in float64: each bin averages grid_h x grid_w bilinear samples at the centres of a
    regular grid over the bin; separable weights, one einsum per RoI."""
    x = x.double()
    ph, pw = output_size
    out = torch.zeros(rois.shape[0], x.shape[1], ph, pw, dtype=torch.float64)
    for k, (b, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        off = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = (v * spatial_scale - off for v in (x1, y1, x2, y2))
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / ph)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / pw)
        if gh <= 0 or gw <= 0:
            continue
        ys = y1 + (
            torch.arange(ph, dtype=torch.float64)[:, None] + (torch.arange(gh, dtype=torch.float64) + 0.5)[None, :] / gh
        ) * (rh / ph)
        xs = x1 + (
            torch.arange(pw, dtype=torch.float64)[:, None] + (torch.arange(gw, dtype=torch.float64) + 0.5)[None, :] / gw
        ) * (rw / pw)
        wy, wx = _axis_weights(ys, x.shape[2]), _axis_weights(xs, x.shape[3])
        out[k] = torch.einsum("piy,qjx,cyx->cpq", wy, wx, x[int(b)]) / (gh * gw)
    return out


def roi_pool_reference(x, rois, output_size, spatial_scale):
    """RoIPool in float64: the max over each bin of the rounded box (0 where a bin is empty)."""
    x = x.double()
    ph, pw = output_size
    H, W = x.shape[2:]
    out = torch.zeros(rois.shape[0], x.shape[1], ph, pw, dtype=torch.float64)
    for k, (b, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        sw, sh, ew, eh = (round(v * spatial_scale) for v in (x1, y1, x2, y2))
        rw, rh = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
        for i in range(ph):
            h0 = min(max(math.floor(i * rh / ph) + sh, 0), H)
            h1 = min(max(math.ceil((i + 1) * rh / ph) + sh, 0), H)
            for j in range(pw):
                w0 = min(max(math.floor(j * rw / pw) + sw, 0), W)
                w1 = min(max(math.ceil((j + 1) * rw / pw) + sw, 0), W)
                if h1 > h0 and w1 > w0:
                    out[k, :, i, j] = x[int(b), :, h0:h1, w0:w1].amax(dim=(-1, -2))
    return out
