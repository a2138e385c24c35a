"""YOLO v1: the loss against a float64 reference written from the paper's definition for several
S, B, C; decoding and post-processing; DarkNet's shapes."""

import math

import pytest
import torch
from torch import nn

from fastops.models.backbones.darknet import DARKNET_STAGES, darknet
from fastops.models.detection.yolo_v1 import YOLOv1, YOLOv1Head, yolo_v1

IMAGE = 96


class _FixedOutput(nn.Module):
    """A head whose output is a parameter: the loss can be checked on chosen predictions."""

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out = nn.Parameter(out)

    def forward(self, x):
        return self.out.expand(x.shape[0], *self.out.shape[1:])


class _NoBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.out_channels, self.strides = {"x": 3}, {"x": 1}

    def forward(self, x):
        return {"x": x}


def _model(s, b, c, out, **kw):
    return YOLOv1(_NoBackbone(), c, s, b, head=_FixedOutput(out), image_size=IMAGE, **kw)


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference_loss(out, boxes, labels, s, b, c, l_coord=5.0, l_noobj=0.5):
    """The paper's sum-squared error, cell by cell, in float64 (one image)."""
    out = out.double()
    loss = {"box": 0.0, "obj": 0.0, "noobj": 0.0, "cls": 0.0}
    cell_object = {}
    for k, box in enumerate(boxes.double().tolist()):
        cx, cy = (box[0] + box[2]) / 2 / IMAGE, (box[1] + box[3]) / 2 / IMAGE
        cell = (min(int(cy * s), s - 1), min(int(cx * s), s - 1))
        cell_object.setdefault(cell, (k, box, cx, cy))  # the first object of the cell
    for row in range(s):
        for col in range(s):
            pred = out[row, col]
            responsible = -1
            if (row, col) in cell_object:
                k, box, cx, cy = cell_object[(row, col)]
                ious = []
                for j in range(b):
                    x, y, sw, sh = pred[j * 5 : j * 5 + 4].tolist()
                    pcx, pcy, w, h = (col + x) / s, (row + y) / s, sw * sw, sh * sh
                    corners = [pcx - w / 2, pcy - h / 2, pcx + w / 2, pcy + h / 2]
                    ious.append(_iou([v * IMAGE for v in corners], box))
                responsible = max(range(b), key=lambda j: (ious[j], -j))
                sqrt_w, sqrt_h = math.sqrt((box[2] - box[0]) / IMAGE), math.sqrt((box[3] - box[1]) / IMAGE)
                target = [cx * s - col, cy * s - row, sqrt_w, sqrt_h]
                p = pred[responsible * 5 : responsible * 5 + 4].tolist()
                loss["box"] += l_coord * sum((pi - ti) ** 2 for pi, ti in zip(p, target))
                loss["obj"] += (float(pred[responsible * 5 + 4]) - ious[responsible]) ** 2
                for cls in range(c):
                    loss["cls"] += (float(pred[b * 5 + cls]) - (1.0 if cls == int(labels[k]) else 0.0)) ** 2
            for j in range(b):
                if j != responsible:
                    loss["noobj"] += l_noobj * float(pred[j * 5 + 4]) ** 2
    return loss


@pytest.mark.parametrize(("s", "b", "c"), [(3, 2, 3), (5, 1, 2), (2, 3, 7), (7, 2, 20)])
def test_loss_matches_the_paper_s_definition(s, b, c):
    g = torch.Generator().manual_seed(s * 100 + b * 10 + c)
    out = torch.rand(1, s, s, b * 5 + c, generator=g)
    model = _model(s, b, c, out.clone())
    boxes = torch.tensor(
        [[5.0, 8.0, 40.0, 50.0], [50.0, 30.0, 90.0, 94.0], [6.0, 9.0, 30.0, 40.0], [60.0, 2.0, 70.0, 12.0]]
    )
    labels = torch.randint(0, c, (4,), generator=g)
    images = [torch.rand(3, IMAGE, IMAGE), torch.rand(3, IMAGE, IMAGE)]
    targets = [{"boxes": boxes, "labels": labels}, {"boxes": boxes[:0], "labels": labels[:0]}]
    losses = model.loss(images, targets)
    ref = _reference_loss(out[0], boxes, labels, s, b, c)
    empty = _reference_loss(out[0], boxes[:0], labels[:0], s, b, c)  # the second image has no object
    expected = {k: (ref[k] + empty[k]) / 2 for k in ref}
    names = {"box": "loss_box", "obj": "loss_object", "noobj": "loss_no_object", "cls": "loss_class"}
    for k, name in names.items():
        got = float(losses[name].detach())
        assert math.isclose(got, expected[k], rel_tol=1e-5, abs_tol=1e-6), (name, got, expected[k])
    sum(losses.values()).backward()
    assert model.head.out.grad is not None


def test_predict_decodes_the_confident_box_in_original_pixels():
    s, b, c = 4, 2, 3
    out = torch.zeros(1, s, s, b * 5 + c)
    # cell (row 1, col 2): box 1 at offset (0.5, 0.25), size 0.25 x 0.5 of the image, confidence 0.9, class 2
    out[0, 1, 2, 5:10] = torch.tensor([0.5, 0.25, 0.5, math.sqrt(0.5), 0.9])
    out[0, 1, 2, b * 5 + 2] = 1.0
    model = _model(s, b, c, out).eval()
    with torch.no_grad():
        det = model.predict([torch.rand(3, 48, 192)])[0]  # resized to 96 x 96 and mapped back
    assert det["labels"].tolist() == [2]
    assert math.isclose(float(det["scores"][0]), 0.9, rel_tol=1e-6)
    cx, cy = (2 + 0.5) / 4 * 192, (1 + 0.25) / 4 * 48
    expected = torch.tensor([[cx - 0.125 * 192, cy - 0.25 * 48, cx + 0.125 * 192, cy + 0.25 * 48]])
    torch.testing.assert_close(det["boxes"], expected)


def test_darknet_is_the_paper_s_feature_extractor():
    model = darknet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20
    expected_params, channels = 0, 3
    for stage in DARKNET_STAGES:
        for item in stage:
            if item != "M":
                k, out = item
                expected_params += k * k * channels * out + out
                channels = out
    assert sum(p.numel() for p in model.parameters()) == expected_params
    with torch.no_grad():
        out = model(torch.rand(1, 3, 448, 448))
    assert out["stage5"].shape == (1, 1024, 14, 14)
    assert model.strides == {"stage5": 32} and model.out_channels == {"stage5": 1024}
    several = darknet(width=0.125, return_layers=["stage3", "stage5"], norm_layer=nn.BatchNorm2d)
    assert several.strides == {"stage3": 16, "stage5": 32}
    assert several.out_channels == {"stage3": 64, "stage5": 128}


def test_yolo_v1_on_other_backbones_and_grids():
    from fastops.models.backbones import resnet18

    head = YOLOv1Head(512, 5, 3, 3, conv_channels=(32,), conv_strides=(1,), hidden=64)  # narrow: a fast test
    backbone = resnet18(return_layers=["layer4"])
    model = yolo_v1(3, grid_size=5, boxes_per_cell=3, backbone=backbone, head=head, image_size=160).train()
    target = {"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([2])}
    losses = model([torch.rand(3, 100, 120)], [target])
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="grid_size"):
        YOLOv1(_NoBackbone(), 3, 0, 2, head=nn.Identity())
