"""Reading COCO JSON files: the C++ reader (``torch.ops.fastops.coco_json_read``) gives the
columns the evaluation needs without building Python objects; Python's dicts are built only when
asked for (``loads``: orjson when it is installed, else the json module).

``read(path)`` returns ``(data, parsed)``: the file's bytes and a ``ParsedFile``, or None when the
file is unusual enough (a repeated key, a field of an unexpected type...) that it must be read as
pycocotools reads it, with json, to give pycocotools' results and errors.
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass

import numpy as np
import torch

try:  # an optional extra: several times faster than json on large files
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

__all__ = ["ParsedFile", "loads", "parse", "read"]

# json::Kind (csrc/coco_eval/json_reader.h)
KIND_ABSENT, KIND_INT, KIND_FLOAT, KIND_BOOL = 0, 1, 2, 3
KIND_ARRAY = 6
# structured kinds (csrc/coco_eval/coco_json.cpp)
SEGM_POLYGONS, SEGM_RLE_STRING, SEGM_RLE_LIST = 10, 11, 12
# scalar columns of an annotation, and of an image
ANN_FIELDS = ("id", "image_id", "category_id", "area", "iscrowd", "score", "num_keypoints")
IMG_FIELDS = ("id", "height", "width")
SHAPES = ("bbox", "segmentation", "keypoints", "caption")


def loads(data: bytes):
    """The Python value of JSON bytes (orjson when installed: the same dicts, lists, ints and
    floats as json). The garbage collector pauses meanwhile: a file makes millions of containers,
    and each collection it would trigger walks all of them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        if orjson is not None:
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass  # NaN / Infinity literals, which json accepts
        return json.loads(data)
    finally:
        if enabled:
            gc.enable()


@dataclass
class ScalarColumns:
    """Scalar fields of n records: value (float64 [n, F]), exact integer (int64 [n, F]) and JSON kind
    (uint8 [n, F]: absent, integer literal, other number, bool)."""

    names: tuple
    value: np.ndarray
    integer: np.ndarray
    kind: np.ndarray

    def __len__(self):
        return self.value.shape[0]

    def col(self, name):
        j = self.names.index(name)
        return self.value[:, j], self.integer[:, j], self.kind[:, j]

    def present(self, name) -> np.ndarray:
        return self.kind[:, self.names.index(name)] != KIND_ABSENT

    def python_values(self, name) -> list:
        """The field as Python would hold it: int for integer literals and bools, else float."""
        v, i, k = self.col(name)
        exact = (k == KIND_INT) | (k == KIND_BOOL)
        return [int(a) if e else float(b) for a, b, e in zip(i.tolist(), v.tolist(), exact.tolist())]


@dataclass
class ParsedFile:
    """The columns of a COCO file (see csrc/coco_eval/coco_json.cpp)."""

    top_is_list: bool
    has_images: bool
    has_annotations: bool
    has_categories: bool
    anns: ScalarColumns
    shape: np.ndarray  # uint8 [n, 4]: kinds of bbox, segmentation, keypoints, caption
    bbox: np.ndarray  # float64 [n, 4]
    bbox_len: np.ndarray  # int64 [n]
    poly_xy: np.ndarray
    poly_offsets: np.ndarray
    ann_polys: np.ndarray
    rle_size: np.ndarray  # float64 [n, 2]
    rle_chars: np.ndarray
    rle_char_offsets: np.ndarray
    rle_counts: np.ndarray
    rle_count_offsets: np.ndarray
    keypoints: np.ndarray
    keypoint_offsets: np.ndarray
    images: ScalarColumns
    categories: ScalarColumns

    def has_shape(self, name) -> np.ndarray:
        return self.shape[:, SHAPES.index(name)] != KIND_ABSENT


def parse(data: bytes) -> ParsedFile | None:
    """Columns of JSON bytes, or None when they must be read by Python (see the module doc). Raises
    ValueError for invalid JSON."""
    if not len(data):
        buf = torch.zeros(0, dtype=torch.uint8)
    else:  # a bytearray is used in place (the reader only reads it); bytes are copied into one
        buf = torch.frombuffer(data if isinstance(data, bytearray) else bytearray(data), dtype=torch.uint8)
    out = [t.numpy() for t in torch.ops.fastops.coco_json_read(buf)]
    top_kind, has_images, has_annotations, has_categories, fallback = out[0].tolist()
    if fallback or top_kind not in (6, 7):
        return None
    return ParsedFile(
        top_kind == 6,
        bool(has_images),
        bool(has_annotations),
        bool(has_categories),
        ScalarColumns(ANN_FIELDS, out[1], out[2], out[3]),
        *out[4:17],
        ScalarColumns(IMG_FIELDS, out[17], out[18], out[19]),
        ScalarColumns(("id",), out[20], out[21], out[22]),
    )


def read(path) -> tuple[bytearray, ParsedFile | None]:
    """The bytes of a JSON file and their columns (None: read them with ``loads``)."""
    with open(os.fspath(path), "rb") as f:
        data = bytearray(os.fstat(f.fileno()).st_size)
        n = f.readinto(data)
        rest = f.read()  # a file that grew since fstat
    if n < len(data):
        del data[n:]
    data += rest
    return data, parse(data)
