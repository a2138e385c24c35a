"""The surface every segmenter shares, and its input checks.

- ``model(images)`` returns logits at the input's size: Tensor[N, num_classes, H, W], or a dict
  of such tensors for a model with several outputs (``"out"``, the prediction, and e.g.
  ``"aux"``, as torchvision's FCN and DeepLab), in either mode.
- ``model.loss(images, masks)`` returns a dict of scalar losses: ``"loss"`` (what to minimize:
  the ``"out"`` term plus each other output's term times its weight in ``loss_weights``) and
  ``"loss_<output>"`` per output.
- ``model.predict(images)`` returns int64 class maps [N, H, W]: the argmax over classes, or, for a
  model with one output channel (binary segmentation), sigmoid(logit) > 0.5.

``loss`` and ``predict`` work in either mode and leave the modules' mode alone (a validation loss
in eval mode updates no batch-norm statistics; ``predict`` in training mode normalizes with the
batch's statistics, as ``forward`` does).

``images``: float Tensor[N, in_channels, H, W] with H and W at least ``min_size``. ``masks``:
int64 class indices [N, H, W] in [0, num_classes) or ``ignore_index``, or dense float/bool masks
[N, num_classes, H, W] in [0, 1] (binary or multi-label segmentation). Bad input raises ValueError
or TypeError naming ``images`` or ``masks``.

The criterion (default ``PixelFocalLoss(gamma=0)``: cross-entropy for class indices, binary
cross-entropy for dense masks, both on the fused kernels) is any module ``(logits, masks) ->
scalar``, e.g. a ``WeightedSumLoss`` of cross-entropy and Dice.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ...nn import PixelFocalLoss

__all__ = ["DEFAULT_IGNORE_INDEX", "Segmenter", "check_images", "check_masks"]

DEFAULT_IGNORE_INDEX = 255


def check_images(images: Tensor, in_channels: int, min_size: int) -> Tensor:
    """Checks a batch of images (module docstring) and returns it."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images: expected a Tensor[N, {in_channels}, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images: expected a 4-D tensor [N, {in_channels}, H, W], got shape {tuple(images.shape)}")
    if images.shape[1] != in_channels:
        raise ValueError(f"images: expected {in_channels} channels, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images: expected a floating-point tensor, got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images: expected at least one image")
    if min(images.shape[-2:]) < min_size:
        raise ValueError(
            f"images: {images.shape[-2]}x{images.shape[-1]} is too small for this network's depth; height and width "
            f"must be at least {min_size}"
        )
    return images


def check_masks(masks: Tensor, images: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """Checks the masks against their images (module docstring) and returns them."""
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks: expected a tensor, got {type(masks).__name__}")
    n, _, h, w = images.shape
    if masks.is_floating_point() or masks.dtype == torch.bool:
        if tuple(masks.shape) != (n, num_classes, h, w):
            raise ValueError(
                f"masks: dense masks must have shape {[n, num_classes, h, w]} (one channel per class), got "
                f"{list(masks.shape)}"
            )
        return masks.to(images.device)
    if masks.is_complex() or masks.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"masks: expected integer class indices or float masks, got dtype {masks.dtype}")
    if tuple(masks.shape) != (n, h, w):
        raise ValueError(
            f"masks: class-index masks must have shape {[n, h, w]} (the images' size), got {list(masks.shape)}"
        )
    masks = masks.to(device=images.device, dtype=torch.int64)
    if not torch.compiler.is_compiling():
        bad = (masks != ignore_index) & ((masks < 0) | (masks >= num_classes))
        if bad.any():
            i, y, x = (int(v) for v in bad.nonzero()[0])
            raise ValueError(
                f"masks[{i}, {y}, {x}]: label {int(masks[i, y, x])} is not a class in [0, {num_classes}) nor the "
                f"ignore_index {ignore_index}"
            )
    return masks


class Segmenter(nn.Module):
    """Base of the segmenters: ``loss`` and ``predict`` over the subclass's ``forward`` (module
    docstring). A subclass sets ``in_channels``, ``num_classes``, ``min_size`` and calls
    ``init_loss(criterion, ignore_index, loss_weights)`` in its constructor."""

    in_channels: int
    num_classes: int
    min_size: int

    def init_loss(
        self,
        criterion: nn.Module | None = None,
        ignore_index: int = DEFAULT_IGNORE_INDEX,
        loss_weights: Mapping[str, float] | None = None,
    ) -> None:
        """The loss: ``criterion`` (default: module docstring), the masks' ``ignore_index`` (a
        given criterion should ignore the same label), and the weight of each output other than
        "out" in the total (e.g. {"aux": 0.5}, torchvision's reference training)."""
        self.ignore_index = int(ignore_index)
        self.criterion = criterion if criterion is not None else PixelFocalLoss(gamma=0.0, ignore_index=ignore_index)
        self.loss_weights = dict(loss_weights or {})

    def check_images(self, images: Tensor) -> Tensor:
        return check_images(images, self.in_channels, self.min_size)

    def outputs(self, images: Tensor) -> dict[str, Tensor]:
        """``forward`` as a dict (a single output under "out")."""
        out = self(images)
        return dict(out) if isinstance(out, Mapping) else {"out": out}

    def loss(self, images: Tensor, masks: Tensor) -> dict[str, Tensor]:
        """``"loss"`` (the weighted total) and ``"loss_<output>"`` per output; either mode."""
        images = self.check_images(images)
        masks = check_masks(masks, images, self.num_classes, self.ignore_index)
        losses = {f"loss_{name}": self.criterion(logits, masks) for name, logits in self.outputs(images).items()}
        total = losses["loss_out"]
        for name, value in losses.items():
            if name != "loss_out":
                total = total + self.loss_weights.get(name[len("loss_") :], 1.0) * value
        return {"loss": total, **losses}

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """int64 class maps [N, H, W] (module docstring); either mode."""
        logits = self.outputs(self.check_images(images))["out"]
        if logits.shape[1] == 1:
            return (logits[:, 0] > 0).long()
        return logits.argmax(1)
