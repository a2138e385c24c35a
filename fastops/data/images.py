"""Image files to tensors, by Pillow (the ``data`` extra) or else torchvision.io: both optional
imports, so the data layer imports without either and says which to install when a file must be
read. Pillow comes first: torchvision's image decoding is deprecated from its 0.29 (TorchCodec
replaces it) and torchvision itself imports Pillow. Errors name the file (``DatasetError``)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from .errors import DatasetError

__all__ = ["read_image", "read_label_png"]

_MISSING = (
    "reading image files needs Pillow (pip install 'fastops[data]', or pip install pillow) or torchvision; "
    "neither is installed"
)


def _decode(path: str, failure: str, with_pillow, with_torchvision):
    """Runs ``with_pillow(PIL.Image)`` or, without Pillow, ``with_torchvision(torchvision.io)`` on an
    existing file; any decoding failure becomes a DatasetError "<path>: <failure> (<cause>)"."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: image file not found")
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is None:
        try:
            import torchvision.io as tvio
        except ImportError:
            raise ImportError(_MISSING) from None
    try:
        return with_pillow(Image) if Image is not None else with_torchvision(tvio)
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"{path}: {failure} ({type(e).__name__}: {e})") from None


def read_image(path: str | os.PathLike) -> Tensor:
    """An image file (JPEG, PNG, ...) as float32 [3, H, W] in [0, 1] (grey and palette images
    converted to RGB, alpha dropped)."""
    path = os.fspath(path)

    def with_pillow(pil):
        with pil.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)

    def with_torchvision(tvio):
        return tvio.decode_image(tvio.read_file(path), mode=tvio.ImageReadMode.RGB).float().div_(255.0)

    return _decode(path, "cannot decode image", with_pillow, with_torchvision)


def read_label_png(path: str | os.PathLike) -> Tensor:
    """A label PNG (palette or greyscale, one index per pixel, e.g. VOC's SegmentationClass) as
    int64 [H, W] holding the indices, not colours."""
    path = os.fspath(path)

    def with_pillow(pil):
        with pil.open(path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(f"a label image must be a palette or greyscale PNG, got mode {im.mode}")
            return torch.from_numpy(np.asarray(im).astype(np.int64))

    def with_torchvision(tvio):
        # libpng in torchvision keeps palette indices with UNCHANGED
        image = tvio.decode_png(tvio.read_file(path), mode=tvio.ImageReadMode.UNCHANGED)
        if image.shape[0] != 1:
            raise DatasetError(f"{path}: a label image must have one channel, got {image.shape[0]}")
        return image[0].long()

    return _decode(path, "cannot read label image", with_pillow, with_torchvision)
