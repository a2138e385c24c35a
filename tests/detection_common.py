"""Helpers for the detector tests: torchvision's detectors in their trained configuration (frozen
batch norm, 3 trainable stages) built without downloads, random weights under which detections
exist and scores are spread, synthetic batches, and an order-insensitive comparison of detections."""

import torch
import torchvision
from torchvision.models import detection as tvd
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7


def torchvision_detector(kind: str, num_classes: int = 5, **kwargs):
    """torchvision's ResNet-50 FPN detector as its builders make it from trained weights."""
    body = torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d)
    if kind == "retinanet":
        backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
        return tvd.RetinaNet(backbone, num_classes, **kwargs)
    backbone = _resnet_fpn_extractor(body, 3)
    return {"fasterrcnn": tvd.FasterRCNN, "maskrcnn": tvd.MaskRCNN}[kind](backbone, num_classes, **kwargs)


PALETTE = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.9, 0.9, 0.1], [0.1, 0.9, 0.9]])


def synthetic_batch(
    sizes,
    num_classes: int,
    seed: int = 0,
    masks: bool = False,
    min_label: int = 1,
    disjoint: bool = False,
    coloured: bool = False,
):
    """Images with a few rectangles on noise, and their targets. A rectangle of class c is bright
    in channel c % 3 over the noise of the others; with ``coloured``, it is a flat colour of its
    own per class (every class tells apart, for training; flat regions give exactly tied scores,
    so parity tests keep the noise). With ``disjoint``, rectangles that overlap an earlier one are
    drawn again (up to 20 times)."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for h, w in sizes:
        image = torch.rand(3, h, w, generator=g) * 0.2
        boxes, labels, mask_list = [], [], []
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            for _ in range(20):
                bw = int(torch.randint(w // 6, w // 2, (1,), generator=g))
                bh = int(torch.randint(h // 6, h // 2, (1,), generator=g))
                x0 = int(torch.randint(0, w - bw, (1,), generator=g))
                y0 = int(torch.randint(0, h - bh, (1,), generator=g))
                overlaps = any(x0 < b[2] and b[0] < x0 + bw and y0 < b[3] and b[1] < y0 + bh for b in boxes)
                if not (disjoint and overlaps):
                    break
            label = int(torch.randint(min_label, num_classes, (1,), generator=g))
            if coloured:
                image[:, y0 : y0 + bh, x0 : x0 + bw] = PALETTE[label % len(PALETTE)][:, None, None]
            else:
                image[label % 3, y0 : y0 + bh, x0 : x0 + bw] = 0.9
            boxes.append([x0, y0, x0 + bw, y0 + bh])
            labels.append(label)
            m = torch.zeros(h, w, dtype=torch.uint8)
            m[y0 : y0 + bh, x0 : x0 + bw] = 1
            mask_list.append(m)
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}
        if masks:
            target["masks"] = torch.stack(mask_list)
        images.append(image)
        targets.append(target)
    return images, targets


def assert_same_detections(got: dict, expected: dict, box_atol: float = 1e-3, score_atol: float = 1e-5, mask_atol=1e-4):
    """The same number of detections, matched one to one with equal labels, close boxes, scores
    (and masks); the order may differ where scores are within ``score_atol`` (near ties)."""
    assert got["boxes"].shape == expected["boxes"].shape, (got["boxes"].shape, expected["boxes"].shape)
    n = expected["boxes"].shape[0]
    if n == 0:
        return
    box_err = (got["boxes"][:, None] - expected["boxes"][None]).abs().amax(-1)
    score_err = (got["scores"][:, None] - expected["scores"][None]).abs()
    ok = (box_err <= box_atol) & (score_err <= score_atol) & (got["labels"][:, None] == expected["labels"][None])
    taken = torch.zeros(n, dtype=torch.bool)
    for i in range(n):
        candidates = torch.where(ok[i] & ~taken)[0]
        assert candidates.numel() > 0, f"detection {i}: {got['boxes'][i].tolist()}, {float(got['scores'][i])} unmatched"
        j = int(candidates[0])
        taken[j] = True
        if "masks" in expected:
            torch.testing.assert_close(got["masks"][i], expected["masks"][j], rtol=0, atol=mask_atol)
    assert torch.all(got["scores"][:-1] >= got["scores"][1:])
