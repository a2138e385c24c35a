"""``CocoDetection``: a COCO-format dataset (an images folder and an instances JSON).

The JSON is read and checked once, at construction (every error names the file and, where there
is one, the annotation id); images and masks are decoded per item. Masks (polygons, compressed or
uncompressed RLE) are rasterized by fastops' own RLE code (``fastops.metrics.rle``, pycocotools'
algorithms), so they are pycocotools' masks bit for bit.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..metrics import rle
from .batching import label_counts
from .errors import DatasetError
from .images import read_image

__all__ = ["CocoDetection"]

# A box may pass the image's edge by this much (rounding in exported files) before it is an error;
# within it, the box is clipped.
BOX_TOLERANCE = 1.0


def _load_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: annotation file not found")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a COCO file holds a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: missing or malformed '{key}' list")
    return data


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clipped_size_positive(bbox: list, h: int, w: int) -> bool:
    x, y, bw, bh = bbox
    return min(x + bw, w) > max(x, 0) and min(y + bh, h) > max(y, 0)


class CocoDetection(torch.utils.data.Dataset):
    """A COCO instances dataset: ``dataset[i]`` is (image, target) by the data interface
    (``fastops.data``), images in the JSON's order.

    Args:
        images_dir: folder the images' ``file_name`` are relative to.
        annotations_json: the instances file (``images``, ``annotations``, ``categories``).
        transforms: optional callable (image, target) -> (image, target).
        include_crowd: keep crowd annotations (``iscrowd`` = 1) as objects, flagged by
            ``target["iscrowd"]`` (bool [K]); by default they are left out of boxes, labels and
            masks (as torchvision's detection references train) and their pixels are 255 (ignore)
            in the semantic map.
        skip_empty: leave out images without (kept) objects.
        check_files: check at construction that every image file exists.

    Category ids map to contiguous labels 1..C in increasing id order; ``class_names`` are their
    ``name``s, ``category_ids[c - 1]`` the original id of label c. Boxes are xywh in the file and
    xyxy in targets; boxes of zero width or height are dropped, boxes past the image by more than
    ``BOX_TOLERANCE`` pixels are an error. Targets also hold ``area`` (float32 [K], the file's).
    Annotations without ``segmentation`` get their box as mask when others have one.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike,
        annotations_json: str | os.PathLike,
        *,
        transforms: Callable | None = None,
        include_crowd: bool = False,
        skip_empty: bool = False,
        check_files: bool = True,
    ):
        self.images_dir = os.fspath(images_dir)
        self.annotations_json = path = os.fspath(annotations_json)
        self.transforms = transforms
        self.include_crowd = bool(include_crowd)
        data = _load_json(path)
        if not os.path.isdir(self.images_dir):
            raise DatasetError(f"{self.images_dir}: images folder not found")

        cats = data["categories"]
        for cat in cats:
            if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
                raise DatasetError(f"{path}: a category without an integer 'id': {cat!r}")
        cats = sorted(cats, key=lambda c: c["id"])
        self.category_ids = [c["id"] for c in cats]
        if len(set(self.category_ids)) != len(cats):
            raise DatasetError(f"{path}: repeated category ids")
        self.class_names = [str(c.get("name", c["id"])) for c in cats]
        self.num_classes = len(cats)
        label_of = {cid: k + 1 for k, cid in enumerate(self.category_ids)}

        images = {}
        for img in data["images"]:
            if not (isinstance(img, dict) and isinstance(img.get("id"), int) and isinstance(img.get("file_name"), str)):
                raise DatasetError(f"{path}: an image entry needs an integer 'id' and a 'file_name': {img!r}")
            h, w = img.get("height"), img.get("width")
            if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
                raise DatasetError(f"{path}: image {img['id']} needs positive integer 'height' and 'width'")
            if img["id"] in images:
                raise DatasetError(f"{path}: image id {img['id']} appears twice")
            images[img["id"]] = img

        per_image: dict[int, list[dict]] = {i: [] for i in images}
        any_segm = False
        for ann in data["annotations"]:
            self._check_annotation(ann, images, label_of)
            any_segm = any_segm or "segmentation" in ann
            per_image[ann["image_id"]].append(ann)

        self.has_masks = self.has_semantic = any_segm
        self._images: list[dict] = []
        self._objects: list[list[dict]] = []  # kept objects (crowd ones too with include_crowd)
        self._crowd: list[list[dict]] = []  # crowd annotations left out of the objects
        for img_id, img in images.items():
            kept, crowd = [], []
            for ann in per_image[img_id]:
                if ann.get("iscrowd", 0) and not self.include_crowd:
                    crowd.append(ann)
                elif _clipped_size_positive(ann["bbox"], img["height"], img["width"]):
                    kept.append(ann)
            if skip_empty and not kept:
                continue
            if check_files:
                file = os.path.join(self.images_dir, img["file_name"])
                if not os.path.isfile(file):
                    raise DatasetError(f"{file}: image file not found (image {img_id} of {path})")
            self._images.append(img)
            self._objects.append(kept)
            self._crowd.append(crowd)
        self._labels = [[label_of[a["category_id"]] for a in anns] for anns in self._objects]

    def _check_annotation(self, ann, images: dict, label_of: dict) -> None:
        path = self.annotations_json
        if not isinstance(ann, dict):
            raise DatasetError(f"{path}: an annotation is not an object: {ann!r}")
        aid = ann.get("id")
        where = f"{path}: annotation {aid}"
        img = images.get(ann.get("image_id"))
        if img is None:
            raise DatasetError(f"{where} points to image {ann.get('image_id')!r}, which is not in 'images'")
        if ann.get("category_id") not in label_of:
            raise DatasetError(f"{where} has category_id {ann.get('category_id')!r}, which is not in 'categories'")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise DatasetError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}")
        x, y, bw, bh = bbox
        if bw < 0 or bh < 0:
            raise DatasetError(f"{where}: negative box width or height {bbox}")
        h, w = img["height"], img["width"]
        tol = BOX_TOLERANCE
        if x < -tol or y < -tol or x + bw > w + tol or y + bh > h + tol:
            raise DatasetError(f"{where}: box {bbox} (xywh) lies outside its image ({w} x {h}, {img['file_name']})")
        segm = ann.get("segmentation")
        if segm is None:
            return
        if isinstance(segm, list):
            ok = len(segm) > 0 and all(
                isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(_number(v) for v in p) for p in segm
            )
            if not ok:
                raise DatasetError(f"{where}: polygons must be lists of at least 3 points (x, y numbers)")
        elif isinstance(segm, dict):
            if list(segm.get("size", [])) != [h, w]:
                raise DatasetError(f"{where}: RLE size {segm.get('size')!r} differs from its image's [{h}, {w}]")
            counts = segm.get("counts")
            if not isinstance(counts, (str, bytes, list)):
                raise DatasetError(f"{where}: RLE 'counts' must be a string or a list of numbers")
        else:
            raise DatasetError(f"{where}: 'segmentation' must be polygons or an RLE, got {type(segm).__name__}")

    def __len__(self) -> int:
        return len(self._images)

    def image_labels(self, i: int) -> list[int]:
        """Labels of image i's objects (no decoding)."""
        return list(self._labels[i])

    def label_counts(self) -> Tensor:
        """Objects per class, int64 Tensor[C]."""
        return label_counts(self._labels, self.num_classes)

    def image_info(self, i: int) -> dict:
        """Image i's entry in the JSON (id, file_name, height, width, ...)."""
        return dict(self._images[i])

    def _masks(self, anns: list[dict], h: int, w: int) -> Tensor:
        if not anns:
            return torch.zeros((0, h, w), dtype=torch.uint8)
        try:
            batch = rle.segmentations(anns, np.tile([h, w], (len(anns), 1)), bbox_results=True)
            cols = torch.ops.fastops.rle_decode(batch.counts, batch.offsets, batch.hw)  # [n, w, h]
        except Exception as e:
            ids = [a.get("id") for a in anns]
            raise DatasetError(
                f"{self.annotations_json}: cannot decode the masks of annotations {ids} ({type(e).__name__}: {e})"
            ) from None
        return cols.transpose(1, 2).contiguous()

    def __getitem__(self, i: int):
        info, anns, crowd = self._images[i], self._objects[i], self._crowd[i]
        h, w = info["height"], info["width"]
        file = os.path.join(self.images_dir, info["file_name"])
        image = read_image(file)
        if tuple(image.shape[1:]) != (h, w):
            raise DatasetError(
                f"{file}: image is {image.shape[2]} x {image.shape[1]}, its annotations say {w} x {h} "
                f"(image {info['id']} of {self.annotations_json})"
            )
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        labels = torch.tensor(self._labels[i], dtype=torch.int64)
        tags = torch.zeros(self.num_classes, dtype=torch.float32)
        tags[labels - 1] = 1.0
        target = {
            "boxes": boxes.float(),
            "labels": labels,
            "tags": tags,
            "area": torch.tensor([float(a.get("area", 0.0)) for a in anns], dtype=torch.float32),
            "image_id": info["id"],
        }
        if self.include_crowd:
            target["iscrowd"] = torch.tensor([bool(a.get("iscrowd", 0)) for a in anns], dtype=torch.bool)
        if self.has_masks:
            masks = self._masks(anns + crowd, h, w)
            target["masks"] = masks[: len(anns)]
            target["semantic"] = self._semantic(masks, labels, anns, len(anns), h, w)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _semantic(self, masks: Tensor, labels: Tensor, anns: list[dict], k: int, h: int, w: int) -> Tensor:
        """Class per pixel: larger objects painted first, so smaller ones stay on top; crowd regions
        left out of the objects are 255 (ignore), as are crowd objects kept with include_crowd."""
        semantic = torch.zeros((h, w), dtype=torch.int64)
        order = sorted(range(k), key=lambda j: -int(masks[j].sum()))
        for j in order:
            crowd = bool(anns[j].get("iscrowd", 0))
            semantic[masks[j].bool()] = 255 if crowd else int(labels[j])
        for j in range(k, masks.shape[0]):
            semantic[masks[j].bool()] = 255
        return semantic

    def __repr__(self) -> str:
        return f"CocoDetection({self.annotations_json!r}, images={len(self)}, classes={self.num_classes})"
