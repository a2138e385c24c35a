"""Float64 references written from the definitions, independent of the kernels and of torchvision.

Each applies fastops' documented edge rules: a ratio with a zero denominator is 0, CIoU's aspect
term is 0 for a zero-size box, and a NaN or infinite coordinate gives NaN.
"""

import math

import torch


def _div(n: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    return torch.where(d != 0, n / torch.where(d != 0, d, torch.ones_like(d)), torch.zeros_like(n))


def _geometry(b: torch.Tensor, fmt: str) -> dict:
    a0, a1, a2, a3 = b.unbind(-1)
    if fmt == "xyxy":
        x1, y1, x2, y2, w, h = a0, a1, a2, a3, a2 - a0, a3 - a1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    elif fmt == "xywh":
        x1, y1, x2, y2, w, h = a0, a1, a0 + a2, a1 + a3, a2, a3
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    elif fmt == "cxcywh":
        x1, y1, x2, y2, w, h = a0 - a2 / 2, a1 - a3 / 2, a0 + a2 / 2, a1 + a3 / 2, a2, a3
        cx, cy = a0, a1
    else:
        raise ValueError(fmt)
    bad = ~torch.isfinite(b).all(-1)
    return dict(x1=x1, y1=y1, x2=x2, y2=y2, w=w, h=h, cx=cx, cy=cy, bad=bad)


def overlap(boxes1, boxes2, mode="iou", fmt="xyxy", aligned=False, eps=1e-7, loss_form=False) -> torch.Tensor:
    """Reference for fastops.box_overlap (loss_form=True: torchvision's loss formulas)."""
    b1, b2 = boxes1.double(), boxes2.double()
    if not aligned:
        b1, b2 = b1[..., :, None, :], b2[..., None, :, :]
    a, b = _geometry(b1, fmt), _geometry(b2, fmt)
    e = eps if loss_form else 0.0
    iw = torch.minimum(a["x2"], b["x2"]) - torch.maximum(a["x1"], b["x1"])
    ih = torch.minimum(a["y2"], b["y2"]) - torch.maximum(a["y1"], b["y1"])
    if loss_form:
        inter = torch.where((iw > 0) & (ih > 0), iw * ih, torch.zeros_like(iw))
    else:
        inter = iw.clamp(min=0) * ih.clamp(min=0)
    area_a, area_b = a["w"] * a["h"], b["w"] * b["h"]
    if mode == "iof":
        out = _div(inter, area_a + e)
    else:
        union = area_a + area_b - inter
        iou = _div(inter, union + e)
        out = iou
        if mode != "iou":
            cw = torch.maximum(a["x2"], b["x2"]) - torch.minimum(a["x1"], b["x1"])
            ch = torch.maximum(a["y2"], b["y2"]) - torch.minimum(a["y1"], b["y1"])
            if not loss_form:
                cw, ch = cw.clamp(min=0), ch.clamp(min=0)
            if mode == "giou":
                area_c = cw * ch
                out = iou - _div(area_c - union, area_c + e)
            else:
                dist = (a["cx"] - b["cx"]) ** 2 + (a["cy"] - b["cy"]) ** 2
                out = iou - _div(dist, cw**2 + ch**2 + eps)
                if mode == "ciou":

                    def angle(g):  # atan(w / h), which is +-pi/2 at h = 0
                        w, h = g["w"], g["h"]
                        ang = torch.where(h != 0, torch.atan(_div(w, h)), torch.sign(w) * (math.pi / 2))
                        return ang, (w == 0) & (h == 0)

                    ang_a, pa = angle(a)
                    ang_b, pb = angle(b)
                    v = (4 / math.pi**2) * (ang_a - ang_b) ** 2
                    v = torch.where(pa | pb, torch.zeros_like(v), v)
                    alpha = _div(v, 1 - iou + v + eps).detach()  # a constant, as in torchvision
                    out = out - alpha * v
    bad = a["bad"] | b["bad"]
    return torch.where(bad, torch.full_like(out, math.nan), out)


def tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """The smallest pixel-edge box (x1, y1, x2 + 1, y2 + 1) around each non-empty mask [K, H, W], by
    a loop over its nonzero pixels; float32 [K, 4]."""
    out = []
    for m in masks.bool():
        ys, xs = torch.nonzero(m, as_tuple=True)
        out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 4)
