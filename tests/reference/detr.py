"""DETR's matcher, set criterion and sine positional encoding (Carion et al. 2020,
facebookresearch/detr models/matcher.py, models/detr.py's SetCriterion, models/position_encoding.py)
transcribed in float64 from their definitions: the costs and losses written out per pair, scipy's
linear_sum_assignment per image, the encoding position by position."""

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise generalized IoU of xyxy boxes [N, 4] x [M, 4]."""
    a, b = a[:, None], b[None]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    union = area_a + area_b - inter
    ew = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    eh = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    enclose = ew * eh
    return inter / union - (enclose - union) / enclose


def match(logits, boxes, targets, cost_class, cost_bbox, cost_giou):
    """Per image (query indices, target indices) of the minimum-cost assignment."""
    out = []
    for b, t in enumerate(targets):
        prob = logits[b].double().softmax(-1)
        pb, tb = boxes[b].double(), t["boxes"].double()
        l1 = (pb[:, None, :] - tb[None, :, :]).abs().sum(-1)
        c = (
            cost_bbox * l1
            - cost_class * prob[:, t["labels"]]
            - cost_giou * giou(cxcywh_to_xyxy(pb), cxcywh_to_xyxy(tb))
        )
        i, j = linear_sum_assignment(c.numpy())
        out.append((torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64)))
    return out


def set_losses(logits, boxes, targets, indices, num_classes, eos_coef):
    """loss_ce, loss_bbox, loss_giou for the given matches, in float64."""
    num_boxes = max(sum(len(t["labels"]) for t in targets), 1)
    weight = torch.ones(num_classes + 1, dtype=torch.float64)
    weight[-1] = eos_coef
    ce_num = ce_den = 0.0
    l1 = g = 0.0
    for b, (t, (src, tgt)) in enumerate(zip(targets, indices, strict=True)):
        target_class = np.full(logits.shape[1], num_classes)
        target_class[src.numpy()] = t["labels"][tgt].numpy()
        logp = logits[b].double().log_softmax(-1)
        for q, c in enumerate(target_class):
            ce_num += -weight[c].item() * logp[q, c].item()
            ce_den += weight[c].item()
        for s, k in zip(src.tolist(), tgt.tolist(), strict=True):
            pb, tb = boxes[b, s].double(), t["boxes"][k].double()
            l1 += (pb - tb).abs().sum().item()
            g += 1 - giou(cxcywh_to_xyxy(pb[None]), cxcywh_to_xyxy(tb[None]))[0, 0].item()
    return {"loss_ce": ce_num / ce_den, "loss_bbox": l1 / num_boxes, "loss_giou": g / num_boxes}


def position_embedding_sine(mask, num_pos_feats=64, temperature=10000.0, normalize=False, scale=None):
    """DETR's PositionEmbeddingSine (models/position_encoding.py) in float64, position by position:
    mask bool [N, H, W] (True: padding) -> [N, 2 * num_pos_feats, H, W]. Position (i, j) counts the
    unpadded positions up to it in its column (y) and row (x); with ``normalize`` each count is
    divided by its column's or row's total + 1e-6 and multiplied by ``scale`` (2 pi by default);
    channel k of an axis is sin(p / T^(2 floor(k/2) / F)) for even k, cos for odd k; y first."""
    scale = 2 * math.pi if scale is None else scale
    n, h, w = mask.shape
    valid = (~mask).numpy()
    out = np.zeros((n, 2 * num_pos_feats, h, w))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                y, x = float(valid[b, : i + 1, j].sum()), float(valid[b, i, : j + 1].sum())
                if normalize:
                    y = y / (valid[b, :, j].sum() + 1e-6) * scale
                    x = x / (valid[b, i, :].sum() + 1e-6) * scale
                for axis, p in enumerate((y, x)):
                    for k in range(num_pos_feats):
                        angle = p / temperature ** (2 * (k // 2) / num_pos_feats)
                        out[b, axis * num_pos_feats + k, i, j] = math.sin(angle) if k % 2 == 0 else math.cos(angle)
    return torch.from_numpy(out)
