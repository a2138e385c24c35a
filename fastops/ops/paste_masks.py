"""Pasting mask-head outputs into images: ``paste_masks``, torchvision's ``paste_masks_in_image``
(``torchvision.models.detection.roi_heads``) as one op.

Kernels: ``csrc/paste_masks/`` (CPU: threads over output rows, only each box's rectangle computed;
CUDA: one thread per output pixel). This file holds the op's fake kernel and the public function.

Results are torchvision's, bit for bit: the box expansion, its rounding to integers and the
bilinear resize reproduce torch's operations in their order, with the fused multiply-adds torch's
own kernels contain (the CPU form is the one torch's AVX2 and AVX-512 builds run; see
``csrc/paste_masks/paste_masks_math.h``). torchvision loops over the masks in Python, resizes each
into its own tensor, writes it into a fresh zero image and stacks the images; this op writes each
output pixel once.

Beyond torchvision: a box wholly outside the image pastes nothing (torchvision raises, or misreads
the negative slice bounds); a box with a NaN or infinite coordinate pastes nothing; masks may be
``[N, M, M]``; ``threshold`` returns ``pasted > threshold`` as bool without the float image.

Not differentiable: masks that require grad give an output whose backward raises a clear error
(torchvision's function is used at inference, on mask probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["paste_masks"]

# ---- op registration: fake kernel, and an autograd formula that refuses --------------------------


@torch.library.register_fake("fastops::paste_masks")
def _paste_masks_fake(masks, boxes, image_height, image_width, padding=1, threshold=None):
    torch._check(
        masks.dim() == 3 or (masks.dim() == 4 and masks.shape[1] == 1),
        lambda: f"paste_masks: masks must have shape [N, 1, M, M] or [N, M, M], got {tuple(masks.shape)}",
    )
    torch._check(
        boxes.dim() == 2 and boxes.shape[1] == 4 and boxes.shape[0] == masks.shape[0],
        lambda: f"paste_masks: boxes must have shape [N, 4], got {tuple(boxes.shape)}",
    )
    dtype = torch.bool if threshold is not None else masks.dtype
    return masks.new_empty((masks.shape[0], 1, image_height, image_width), dtype=dtype)


def _setup_context(ctx, inputs, output):
    pass


def _backward(ctx, grad):
    raise RuntimeError(
        "fastops.paste_masks is not differentiable; paste detached mask probabilities "
        "(torchvision's paste_masks_in_image is used at inference only)"
    )


torch.library.register_autograd("fastops::paste_masks", _backward, setup_context=_setup_context)


# ---- public API ----------------------------------------------------------------------------------


def _image_size(image_shape) -> tuple[int, int]:
    if isinstance(image_shape, Tensor) or not isinstance(image_shape, Sequence) or len(image_shape) != 2:
        raise TypeError(f"image_shape must be a pair (height, width), got {image_shape!r}")
    height, width = image_shape
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, (int, torch.SymInt)):
            raise TypeError(f"image_shape {name} must be an int, got {type(v).__name__}")
    return height, width


def paste_masks(
    masks: Tensor,
    boxes: Tensor,
    image_shape: tuple[int, int],
    padding: int = 1,
    *,
    threshold: float | None = None,
) -> Tensor:
    """Pastes N masks into images at their boxes: torchvision's ``paste_masks_in_image``.

    Each mask is zero-padded by ``padding`` pixels on every side, its box enlarged by the same
    ratio ((M + 2 padding) / M) around its centre and truncated to integer pixels, the padded mask
    resized to the box (bilinear, ``align_corners=False``) and written into a zero image, clipped
    to the image.

    Args:
        masks: ``[N, 1, M, M]`` (or ``[N, M, M]``) float16, bfloat16, float32 or float64, e.g. the
            mask head's probabilities of each detection's class. Non-square masks work as in
            torchvision (the scale follows the width).
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)`` in image pixels, one per mask; any float dtype
            (integer boxes are converted to float32, as torchvision's arithmetic promotes them).
        image_shape: ``(height, width)`` of the output images.
        padding: pixels of zero padding around each mask (torchvision's default 1).
        threshold: if given, the result is ``pasted > threshold`` (threshold rounded to the masks'
            dtype, as torch compares), as a bool tensor, without writing the float images.

    Returns:
        ``[N, 1, height, width]`` of the masks' dtype (bool with ``threshold``), on their device.
        Bitwise equal to ``paste_masks_in_image(masks, boxes, image_shape, padding)`` wherever
        torchvision returns a result.
    """
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"boxes must hold real numbers, got dtype {boxes.dtype}")
    if not boxes.is_floating_point():
        boxes = boxes.to(torch.float32)
    height, width = _image_size(image_shape)
    if isinstance(padding, bool) or not isinstance(padding, int):
        raise TypeError(f"padding must be an int, got {type(padding).__name__}")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a float or None, got {type(threshold).__name__}")
        if math.isnan(threshold):
            raise ValueError("threshold must not be NaN")
        threshold = float(threshold)
    return torch.ops.fastops.paste_masks(masks, boxes, height, width, padding, threshold)
