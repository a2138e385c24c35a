"""Run inside a fresh virtual environment holding only the fastops wheel and what it requires
(scripts/wheel_check.sh): the environment holds torch, numpy and their own dependencies and nothing
of the optional extras; fastops imports without them and its ops give the reference's results.

    python check_installed_wheel.py installed.txt   # installed.txt: `pip list --format=freeze`
"""

from __future__ import annotations

import sys

OPTIONAL = ("torchvision", "tqdm", "matplotlib", "pillow", "pycocotools", "scipy")


def check_environment(freeze_file: str) -> None:
    with open(freeze_file) as f:
        names = {line.split("==")[0].strip().lower() for line in f if "==" in line}
    present = sorted(n for n in OPTIONAL if n in names)
    if present:
        sys.exit(f"the fresh environment holds optional packages {present}: the wheel must not require them")
    for needed in ("torch", "numpy", "fastops"):
        if needed not in names:
            sys.exit(f"the fresh environment lacks {needed}")


def check_ops() -> None:
    import torch

    import fastops

    if "site-packages" not in fastops.__file__:
        sys.exit(f"imported fastops from {fastops.__file__}, not the installed wheel")
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 1 + torch.rand(200, 2, generator=g) * 30], dim=1)
    scores = torch.rand(200, generator=g)
    # box_iou against its definition, in float64
    b = boxes.double()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    expected_iou = inter / (area[:, None] + area[None, :] - inter)
    torch.testing.assert_close(fastops.box_iou(b, b), expected_iou)
    # greedy NMS against its definition
    order = scores.argsort(descending=True).tolist()
    keep, suppressed = [], set()
    for i in order:
        if i in suppressed:
            continue
        keep.append(i)
        suppressed.update(j for j in order if expected_iou[i, j] > 0.5)
    if fastops.nms(boxes, scores, 0.5).tolist() != keep:
        sys.exit("fastops.nms differs from greedy NMS in the installed wheel")
    info = fastops.build_info()
    print(f"installed wheel: fastops {fastops.__version__} from {fastops.__file__}; build {info}")


if __name__ == "__main__":
    check_environment(sys.argv[1])
    check_ops()
