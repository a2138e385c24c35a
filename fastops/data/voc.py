"""``VOCDetection``: a Pascal VOC folder (Annotations/*.xml, JPEGImages/, ImageSets/,
SegmentationClass/ and SegmentationObject/ PNGs when present). The XML files are read and checked
at construction (errors name the file and the object's index in it); images per item."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .batching import label_counts
from .errors import DatasetError
from .images import read_image, read_label_png

__all__ = ["VOC_CLASSES", "VOCDetection"]

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# A box may pass the image's edge by this much before it is an error; within it, it is clipped.
BOX_TOLERANCE = 1.0


def _text(node: ET.Element, tag: str, path: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(f"{path}: {where} has no <{tag}>")
    return child.text.strip()


def _float(node: ET.Element, tag: str, path: str, where: str) -> float:
    text = _text(node, tag, path, where)
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"{path}: {where}: <{tag}> is not a number: {text!r}") from None


class VOCDetection(torch.utils.data.Dataset):
    """A Pascal VOC dataset: ``dataset[i]`` is (image, target) by the data interface
    (``fastops.data``), plus ``difficult`` (bool [K]).

    Args:
        root: the folder holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/`` (e.g.
            ``VOCdevkit/VOC2012``).
        image_set: the list ``ImageSets/Main/<image_set>.txt`` (or, when absent,
            ``ImageSets/Segmentation/<image_set>.txt``) names the images.
        keep_difficult: keep objects marked difficult (flagged in ``difficult``; VOC's evaluation
            ignores them); False leaves them out of the targets and of ``image_labels``.
        class_names: the classes, labels 1..C in this order (default: VOC's 20).
        transforms: optional callable (image, target) -> (image, target).

    Boxes: VOC's 1-based inclusive pixel corners become xyxy pixel edges (xmin - 1, ymin - 1, xmax,
    ymax). ``semantic`` comes from ``SegmentationClass/<id>.png`` (palette indices: 0 background,
    c for class c, 255 border/ignore) and ``masks`` from ``SegmentationObject/<id>.png`` (instance
    k is the k-th object of the XML), each only when every listed image has its PNG
    (``has_semantic``, ``has_masks``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_set: str = "train",
        *,
        keep_difficult: bool = True,
        class_names: Sequence[str] = VOC_CLASSES,
        transforms: Callable | None = None,
    ):
        self.root = root = os.fspath(root)
        if not os.path.isdir(root):
            raise DatasetError(f"{root}: VOC folder not found")
        self.image_set = image_set
        self.keep_difficult = bool(keep_difficult)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.transforms = transforms
        label_of = {name: k + 1 for k, name in enumerate(self.class_names)}
        list_file = os.path.join(root, "ImageSets", "Main", f"{image_set}.txt")
        if not os.path.isfile(list_file):
            seg_list = os.path.join(root, "ImageSets", "Segmentation", f"{image_set}.txt")
            if not os.path.isfile(seg_list):
                raise DatasetError(f"{list_file}: image list not found (nor {seg_list})")
            list_file = seg_list
        with open(list_file) as f:
            self.ids = [line.split()[0] for line in f if line.strip()]
        self._records = [self._read_xml(i, label_of) for i in self.ids]
        seg = lambda kind, i: os.path.join(root, kind, f"{i}.png")
        self.has_semantic = bool(self.ids) and all(os.path.isfile(seg("SegmentationClass", i)) for i in self.ids)
        self.has_masks = bool(self.ids) and all(os.path.isfile(seg("SegmentationObject", i)) for i in self.ids)

    def _read_xml(self, image_id: str, label_of: dict) -> dict:
        path = os.path.join(self.root, "Annotations", f"{image_id}.xml")
        if not os.path.isfile(path):
            raise DatasetError(f"{path}: annotation file not found (listed in the image set '{self.image_set}')")
        try:
            tree = ET.parse(path).getroot()
        except ET.ParseError as e:
            raise DatasetError(f"{path}: malformed XML ({e})") from None
        size = tree.find("size")
        if size is None:
            raise DatasetError(f"{path}: no <size>")
        w, h = int(_float(size, "width", path, "<size>")), int(_float(size, "height", path, "<size>"))
        if w <= 0 or h <= 0:
            raise DatasetError(f"{path}: image size {w} x {h} is not positive")
        filename = tree.findtext("filename")
        image_file = os.path.join(self.root, "JPEGImages", filename.strip() if filename else f"{image_id}.jpg")
        if not os.path.isfile(image_file):
            raise DatasetError(f"{image_file}: image file not found (named by {path})")
        boxes, labels, difficult, index = [], [], [], []
        for k, obj in enumerate(tree.findall("object")):
            where = f"object {k}"
            name = _text(obj, "name", path, where)
            if name not in label_of:
                raise DatasetError(f"{path}: {where} has class {name!r}, not one of the {self.num_classes} classes")
            box = obj.find("bndbox")
            if box is None:
                raise DatasetError(f"{path}: {where} has no <bndbox>")
            x1, y1 = _float(box, "xmin", path, where) - 1, _float(box, "ymin", path, where) - 1
            x2, y2 = _float(box, "xmax", path, where), _float(box, "ymax", path, where)
            tol = BOX_TOLERANCE
            if not (x1 >= -tol and y1 >= -tol and x2 <= w + tol and y2 <= h + tol and x2 > x1 and y2 > y1):
                raise DatasetError(
                    f"{path}: {where} box (xmin, ymin, xmax, ymax) = ({x1 + 1:g}, {y1 + 1:g}, {x2:g}, {y2:g}) "
                    f"is empty or outside the {w} x {h} image"
                )
            hard = (obj.findtext("difficult") or "0").strip() not in ("0", "")
            if hard and not self.keep_difficult:
                continue
            boxes.append([max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))])
            labels.append(label_of[name])
            difficult.append(hard)
            index.append(k + 1)  # the object's value in SegmentationObject
        return {
            "file": image_file,
            "xml": path,
            "size": (h, w),
            "boxes": boxes,
            "labels": labels,
            "difficult": difficult,
            "instance": index,
        }

    def __len__(self) -> int:
        return len(self.ids)

    def image_labels(self, i: int) -> list[int]:
        """Labels of image i's objects (no decoding)."""
        return list(self._records[i]["labels"])

    def label_counts(self) -> Tensor:
        """Objects per class, int64 Tensor[C]."""
        return label_counts([r["labels"] for r in self._records], self.num_classes)

    def _label_png(self, kind: str, i: int, h: int, w: int) -> Tensor:
        path = os.path.join(self.root, kind, f"{self.ids[i]}.png")
        png = read_label_png(path)
        if tuple(png.shape) != (h, w):
            raise DatasetError(f"{path}: label image is {png.shape[1]} x {png.shape[0]}, the image {w} x {h}")
        return png

    def __getitem__(self, i: int):
        rec = self._records[i]
        h, w = rec["size"]
        image = read_image(rec["file"])
        if tuple(image.shape[1:]) != (h, w):
            size = f"{image.shape[2]} x {image.shape[1]}"
            raise DatasetError(f"{rec['file']}: image is {size}, {rec['xml']} says {w} x {h}")
        labels = torch.tensor(rec["labels"], dtype=torch.int64)
        tags = torch.zeros(self.num_classes, dtype=torch.float32)
        tags[labels - 1] = 1.0
        target = {
            "boxes": torch.tensor(rec["boxes"], dtype=torch.float32).reshape(-1, 4),
            "labels": labels,
            "difficult": torch.tensor(rec["difficult"], dtype=torch.bool),
            "tags": tags,
            "image_id": i,
        }
        if self.has_semantic:
            semantic = self._label_png("SegmentationClass", i, h, w)
            bad = (semantic > self.num_classes) & (semantic != 255)
            if bool(bad.any()):
                raise DatasetError(
                    f"{os.path.join(self.root, 'SegmentationClass', self.ids[i] + '.png')}: "
                    f"class index {int(semantic[bad][0])} beyond the {self.num_classes} classes"
                )
            target["semantic"] = semantic
        if self.has_masks:
            instances = self._label_png("SegmentationObject", i, h, w)
            index = torch.tensor(rec["instance"], dtype=torch.int64)
            target["masks"] = (instances[None] == index[:, None, None]).to(torch.uint8)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"VOCDetection({self.root!r}, image_set={self.image_set!r}, images={len(self)})"
