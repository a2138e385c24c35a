"""paste_masks: fastops against torchvision's paste_masks_in_image (a Python loop over the masks).

Workloads (Mask R-CNN inference): 100 masks of 28 x 28 into an 800 x 1216 image (COCO's resized
size, torchvision's detection limit of 100 per image), 20 masks into 480 x 640; boxes of sides 8 to
~60% of the image, clipped to it as detections are. Also the fused threshold (bool output), against
torchvision followed by `> 0.5`. Floor: writing the N x H x W output once, at the write bandwidth
measured here on a buffer of that size.
"""

from __future__ import annotations

import torch
from common import Row, bandwidth_gbs, bench_main, time_ms
from torchvision.models.detection.roi_heads import paste_masks_in_image

import fastops


def detections(n: int, image_h: int, image_w: int, device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n mask probabilities 28 x 28 and boxes clipped to the image."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, 1, 28, 28, generator=g)
    size = torch.tensor([image_w, image_h], dtype=torch.float32)
    wh = torch.rand(n, 2, generator=g) ** 2 * size * 0.6 + 8
    xy = torch.rand(n, 2, generator=g) * size - wh / 2
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image_w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image_h)
    return masks.to(device), boxes.to(device)


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    repeat = 5 if quick else 15
    ref_repeat = 3 if quick else 7
    workloads = [(20, 480, 640)] if quick else [(100, 800, 1216), (20, 480, 640)]
    for n, image_h, image_w in workloads:
        masks, boxes = detections(n, image_h, image_w, device, seed=n)
        shape = (image_h, image_w)
        name = f"{n} masks 28x28 -> {image_h}x{image_w}"
        out_bytes = n * image_h * image_w * 4
        floor = out_bytes / (bandwidth_gbs(device, out_bytes, "write") * 1e9) * 1e3
        ms = time_ms(lambda: fastops.paste_masks(masks, boxes, shape), device, repeat=repeat)
        ref_ms = time_ms(lambda: paste_masks_in_image(masks, boxes, shape), device, repeat=ref_repeat, warmup=1)
        rows.append(Row(name, ms, "torchvision paste_masks_in_image", ref_ms, floor, "write N*H*W*4 B"))

        bool_bytes = n * image_h * image_w
        bool_floor = bool_bytes / (bandwidth_gbs(device, bool_bytes, "write") * 1e9) * 1e3
        ms = time_ms(lambda: fastops.paste_masks(masks, boxes, shape, threshold=0.5), device, repeat=repeat)
        ref_ms = time_ms(lambda: paste_masks_in_image(masks, boxes, shape) > 0.5, device, repeat=ref_repeat, warmup=1)
        rows.append(Row(f"{name} > 0.5", ms, "torchvision, then > 0.5", ref_ms, bool_floor, "write N*H*W B"))
    return rows


NOTES = """torchvision resizes each mask into its own tensor, writes it into a fresh zero image and stacks
the images (the output is written twice, plus the zeroing); fastops writes each output pixel once,
computing only the boxes' rectangles. fastops' CPU outputs come from its cache of freed large
outputs (no page faults after the first call); torchvision's from the allocator."""

if __name__ == "__main__":
    bench_main("paste_masks", __doc__, run, NOTES)
