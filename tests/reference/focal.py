"""Sigmoid and softmax focal losses in float64, written from their definitions (Lin et al.,
2017), independent of the kernels; autograd through them gives the reference gradients."""

import torch
import torch.nn.functional as F


def sigmoid_reference(x, t, alpha=0.25, gamma=2.0, pos_weight=None, class_weight=None, sample_weight=None):
    """Elementwise loss in float64 (autograd gives the reference gradient)."""
    x, t = x.double(), t.double()
    p = torch.sigmoid(x)
    pw = 1.0 if pos_weight is None else pos_weight.double()
    ce = -(pw * t * F.logsigmoid(x) + (1 - t) * F.logsigmoid(-x))
    m = t * (1 - p) + (1 - t) * p
    loss = ce * m**gamma
    if alpha >= 0:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    if class_weight is not None:
        loss = loss * class_weight.double()
    if sample_weight is not None:
        loss = loss * sample_weight.double()[..., None]
    return loss


def one_hot(labels, classes, background, ignore):
    valid = (labels >= 0) & (labels < classes) & (labels != background)
    t = torch.zeros(*labels.shape, classes, dtype=torch.float64)
    t[valid] = F.one_hot(labels[valid], classes).double()
    return t, labels != ignore


def softmax_reference(x, y, gamma=2.0, alpha=1.0, class_weight=None, sample_weight=None, ignore_index=-100):
    """Per-row loss in float64; ignored rows are 0."""
    x = x.double()
    keep = y != ignore_index
    ys = torch.where(keep, y, torch.zeros_like(y))
    lp = torch.log_softmax(x, -1).gather(-1, ys[..., None])[..., 0]
    loss = -alpha * (1 - lp.exp()) ** gamma * lp
    if class_weight is not None:
        loss = loss * class_weight.double()[ys]
    if sample_weight is not None:
        loss = loss * sample_weight.double()
    return torch.where(keep, loss, torch.zeros_like(loss))
