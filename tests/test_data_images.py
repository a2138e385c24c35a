"""Image decoding: Pillow and torchvision.io give the same tensors; without either, one clear
ImportError; bad files raise DatasetError naming them."""

import sys

import numpy as np
import pytest
import torch
import torchvision.io  # noqa: F401  (imported before PIL is hidden: torchvision itself imports PIL)
from PIL import Image

from fastops.data import DatasetError
from fastops.data.images import read_image, read_label_png

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision")


@pytest.fixture
def files(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.png")
    idx = np.random.default_rng(1).integers(0, 21, (9, 13)).astype(np.uint8)
    idx[0] = 255
    im = Image.fromarray(idx, mode="P")
    im.putpalette([(5 * i + 3) % 256 for i in range(768)])
    im.save(tmp_path / "labels.png")
    return tmp_path, rgb, idx


def read_both(fn, path, monkeypatch):
    with_pil = fn(path)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "PIL", None)  # `from PIL import Image` now fails
        with_torchvision = fn(path)
    return with_pil, with_torchvision


def test_pillow_and_torchvision_agree(files, monkeypatch):
    root, rgb, idx = files
    a, b = read_both(read_image, root / "rgb.png", monkeypatch)
    want = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    assert a.dtype == torch.float32 and a.shape == (3, 9, 13)
    assert torch.equal(a, want) and torch.equal(b, want)
    a, b = read_both(read_image, root / "grey.png", monkeypatch)
    assert a.shape == (3, 9, 13) and torch.equal(a, b) and torch.equal(a[0], a[2])
    a, b = read_both(read_label_png, root / "labels.png", monkeypatch)
    assert a.dtype == torch.int64 and torch.equal(a, torch.from_numpy(idx).long()) and torch.equal(a, b)


def test_neither_library(files, monkeypatch):
    root, _, _ = files
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    with pytest.raises(ImportError, match=r"fastops\[data\]"):
        read_image(root / "rgb.png")


def test_bad_files(files, monkeypatch):
    root, _, _ = files
    (root / "junk.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    for reader in (read_image, read_label_png):
        with pytest.raises(DatasetError, match=r"missing\.png: image file not found"):
            reader(root / "missing.png")
        with monkeypatch.context() as m:
            for use_pil in (True, False):
                if not use_pil:
                    m.setitem(sys.modules, "PIL", None)
                with pytest.raises(DatasetError, match=r"junk\.jpg: cannot"):
                    reader(root / "junk.jpg")
    with pytest.raises(DatasetError, match=r"rgb\.png: cannot read label image .*palette or greyscale"):
        read_label_png(root / "rgb.png")
