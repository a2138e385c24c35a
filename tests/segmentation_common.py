"""Synthetic segmentation batches and a short training loop, shared by the segmentation tests."""

import torch

import fastops.metrics


def synthetic_batch(n=2, num_classes=3, size=(32, 32), seed=0, align=1, dtype=torch.float32):
    """Images [n, 3, H, W] with filled rectangles (a quarter of the size, corners on multiples of
    ``align``: for models that predict at a coarser stride) whose colour is their class (a fixed
    colour per class plus a little noise), and the masks [n, H, W] (class 0: background)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    palette = torch.rand(num_classes, 3, generator=g) * 2 - 1
    masks = torch.zeros(n, h, w, dtype=torch.int64)
    for i in range(n):
        for c in range(1, num_classes):
            for _ in range(2):
                y0 = int(torch.randint(0, (h - h // 4) // align + 1, (1,), generator=g)) * align
                x0 = int(torch.randint(0, (w - w // 4) // align + 1, (1,), generator=g)) * align
                masks[i, y0 : y0 + h // 4, x0 : x0 + w // 4] = c
    images = palette[masks].permute(0, 3, 1, 2) + 0.1 * torch.randn(n, 3, h, w, generator=g)
    return images.to(dtype), masks


def train(model, images, masks, steps, lr=1e-2):
    """``steps`` Adam steps on model.loss(images, masks)["loss"]; returns the last loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model.loss(images, masks)["loss"]
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def miou(model, images, masks, num_classes):
    metric = fastops.metrics.SegmentationMetrics(num_classes=num_classes, ignore_index=255)
    model.eval()
    metric.update(model.predict(images), masks)
    return float(metric.compute()["miou"])
