"""The column form of a COCO object's annotations: what the evaluation reads (ids, boxes, areas,
crowd flags, scores, keypoints), read once per annotation list from the annotation dicts, from a
file's parsed columns (``cocojson``) or from arrays, and the evaluation state that depends on it.

Ids follow pycocotools, which looks them up as dict keys: an integral float id (2.0) is the int
(2); an annotation's image or category id that is no integer (2.5, NaN, "2", None) matches nothing
(``INVALID_ID``); an annotation id, or a GT image or category id, that is no integer raises
ValueError.
"""

from __future__ import annotations

import array
import itertools
import math
from operator import itemgetter

import numpy as np

from .. import _C
from . import cocojson

__all__ = [
    "INVALID_ID",
    "AnnotationColumns",
    "DictFields",
    "ParsedFields",
    "boxes_of",
    "ids_from_parsed",
    "ids_from_values",
    "sorted_unique",
]

INVALID_ID = np.iinfo(np.int64).min  # an image or category id that matches nothing
_INT64_RANGE = 2.0**63


def _integral_ids(values: np.ndarray, what: str, exact: bool) -> np.ndarray:
    """float64 ids -> int64: integral values as they are; others INVALID_ID, or ValueError if exact."""
    ok = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < _INT64_RANGE)
    if exact and not ok.all():
        bad = values[~ok][0]
        raise ValueError(f"{what} must be integers, got {bad!r}")
    out = np.full(values.shape, INVALID_ID, np.int64)
    out[ok] = values[ok].astype(np.int64)
    return out


def ids_from_values(values: list, what: str, exact: bool = False) -> np.ndarray:
    """Python id values (ints, floats, bools, numpy scalars) -> int64 (see the module doc)."""
    try:  # the usual case, all ints: one C loop
        return np.frombuffer(array.array("q", values), np.int64)
    except (TypeError, OverflowError):
        pass
    try:
        arr = np.array(values)
    except (ValueError, OverflowError, TypeError) as e:
        raise ValueError(f"{what} must be numbers: {e}") from None
    if arr.dtype.kind in "iub" and arr.ndim == 1 and len(values):
        if arr.dtype.kind == "u" and arr.size and arr.max() >= 2**63:
            raise ValueError(f"{what} must fit in int64, got {int(arr.max())}")
        return arr.astype(np.int64, copy=False)
    if len(values) == 0:
        return np.zeros(0, np.int64)
    if arr.dtype.kind == "f" and arr.ndim == 1:
        return _integral_ids(arr.astype(np.float64, copy=False), what, exact)
    if exact:
        bad = next((v for v in values if not isinstance(v, (int, float, np.integer, np.floating))), values[0])
        raise ValueError(f"{what} must be numbers, got {bad!r} ({type(bad).__name__})")
    # an id that is no number (a string, None, a list) is no key of pycocotools' index: it matches nothing
    return np.fromiter(map(_as_id, values), np.int64, len(values))


def sorted_unique(values) -> np.ndarray:
    """np.unique(values) by its sort path: plain np.unique asks np.ma.is_masked, whose first call in
    a process imports numpy.ma (~25 ms, more than a small evaluation takes)."""
    return np.unique(values, return_index=True)[0]


def _as_id(v) -> int:
    """One id value as pycocotools' index would find it: the integer, or INVALID_ID."""
    if isinstance(v, (int, np.integer)):
        return int(v) if -(2**63) <= v < 2**63 else INVALID_ID
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and v == math.floor(v) and abs(v) < _INT64_RANGE:
        return int(v)
    return INVALID_ID


def ids_from_parsed(cols: cocojson.ScalarColumns, name: str, what: str, exact: bool = False) -> np.ndarray:
    """An id column of a parsed file -> int64 (see the module doc); KeyError when a record lacks it."""
    value, integer, kind = cols.col(name)
    if (kind == cocojson.KIND_ABSENT).any():
        raise KeyError(f"{what}: record {int(np.flatnonzero(kind == cocojson.KIND_ABSENT)[0])} has no {name!r}")
    out = integer.copy()
    is_float = kind == cocojson.KIND_FLOAT
    if is_float.any():
        out[is_float] = _integral_ids(value[is_float], what, exact)
    return out


def _floats(values, n: int, what: str) -> np.ndarray:
    """An iterable of n Python numbers -> float64 (TypeError names `what` for anything else)."""
    try:
        out = np.frombuffer(array.array("d", values), np.float64)
    except TypeError as e:
        raise TypeError(f"{what} must be numbers: {e}") from None
    if out.size != n:
        raise ValueError(f"{what}: expected {n} values, got {out.size}")
    return out


def _get_iscrowd(ann) -> float:
    return ann.get("iscrowd", np.nan)


def _lacks_iscrowd(ann) -> bool:
    return "iscrowd" not in ann


class DictFields:
    """Columns of a list of annotation dicts (C-level loops over the dicts: map and itemgetter,
    or one C++ pass for the keys named to ``prefetch``)."""

    def __init__(self, anns: list):
        self.anns = anns
        self._read: dict[str, object] = {}

    def prefetch(self, ints=(), floats=(), rows=()) -> None:
        """Reads these keys in one pass over the dicts (``_C.dict_columns``): ids (``ints``), numbers
        (``floats``) and lists of numbers (``rows``). A key whose values are not all plain Python
        numbers (or lists of them), or that some dict lacks, stays on ``fetch``'s general path,
        which converts it the same way or names the problem."""
        if type(self.anns) is list:
            read = _C.dict_columns(self.anns, list(ints), list(floats), list(rows))
            self._read.update((k, v) for k, v in read.items() if v is not None)

    def values(self, key: str) -> list:
        try:
            return list(map(itemgetter(key), self.anns))
        except KeyError:
            i = next(i for i, a in enumerate(self.anns) if key not in a)
            raise KeyError(f"annotation {i} (id {self.anns[i].get('id')!r}) has no {key!r}") from None
        except TypeError:
            i = next(i for i, a in enumerate(self.anns) if not isinstance(a, dict))
            raise TypeError(f"annotation {i} must be a dict, got {type(self.anns[i]).__name__}") from None

    def fetch(self, name: str):
        n = len(self.anns)
        read = self._read.get(name)
        if read is not None and name != "bbox":
            return read
        if read is not None and (np.diff(read[1]) == 4).all():
            return read[0].reshape(n, 4)
        if name == "id":
            return ids_from_values(self.values("id"), "annotation 'id's", exact=True)
        if name in ("image_id", "category_id"):
            return ids_from_values(self.values(name), f"annotation {name!r}s")
        if name in ("area", "score"):
            return _floats(self.values(name), n, f"annotation {name!r}s")
        if name == "num_keypoints":
            return _floats(self.values(name), n, "annotation 'num_keypoints'")
        if name == "bbox":
            boxes = self.values("bbox")
            return boxes_of(boxes, n)
        if name == "crowd":
            flags = _floats(map(_get_iscrowd, self.anns), n, "annotation 'iscrowd' flags")
            missing = np.fromiter(map(_lacks_iscrowd, self.anns), bool, n)
            return _crowd(flags, missing)
        if name == "keypoints":
            kps = self.values("keypoints")
            try:
                lengths = np.fromiter(map(len, kps), np.int64, n)
            except TypeError:
                raise TypeError("every annotation's keypoints must be a list of numbers") from None
            offsets = np.zeros(n + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
            flat = _C.float_rows(kps, int(offsets[-1]))  # lists of floats / ints / bools, else None
            if flat is not None:
                return flat, offsets
            if n and (lengths == lengths[0]).all():  # one length: numpy's 2-D conversion
                arr = np.array(kps)
                if arr.dtype.kind in "fiub" and arr.shape == (n, lengths[0]):
                    return arr.astype(np.float64, copy=False).reshape(-1), offsets
            return _floats(itertools.chain.from_iterable(kps), int(offsets[-1]), "keypoints"), offsets
        raise KeyError(name)


def boxes_of(boxes: list, n: int) -> np.ndarray:
    """n [x, y, w, h] lists -> float64 [n, 4] (ValueError naming the first that is not 4 numbers)."""
    try:
        lengths = np.fromiter(map(len, boxes), np.int64, n)
    except TypeError:
        raise ValueError("every annotation's bbox must be a list [x, y, w, h]") from None
    if n and not (lengths == 4).all():
        i = int(np.flatnonzero(lengths != 4)[0])
        raise ValueError(f"every annotation's bbox must be [x, y, w, h]: annotation {i} has {boxes[i]!r}")
    flat = _C.float_rows(boxes, 4 * n) if type(boxes) is list else None  # floats / ints / bools, else None
    if flat is None:
        flat = _floats(itertools.chain.from_iterable(boxes), 4 * n, "bbox values")
    return flat.reshape(n, 4)


def _crowd(iscrowd: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int(iscrowd) != 0: the crowd IoU rule and matching; bool(iscrowd): the ignore flag; missing:
    no 'iscrowd', which the evaluation of that annotation cannot do without)."""
    if np.isinf(iscrowd).any() or np.isnan(iscrowd[~missing]).any():
        raise ValueError("annotation 'iscrowd' flags must be finite numbers (pycocotools takes int() of them)")
    value = np.where(missing, 0.0, iscrowd)
    return np.trunc(value) != 0, value != 0, missing


class ParsedFields:
    """Columns of a parsed file's annotations."""

    def __init__(self, p: cocojson.ParsedFile):
        self.p = p

    def floats(self, name: str) -> np.ndarray:
        value, _, kind = self.p.anns.col(name)
        if (kind == cocojson.KIND_ABSENT).any():
            i = int(np.flatnonzero(kind == cocojson.KIND_ABSENT)[0])
            raise KeyError(f"annotation {i} has no {name!r}")
        return value

    def fetch(self, name: str):
        p = self.p
        if name == "id":
            return ids_from_parsed(p.anns, "id", "annotation 'id's", exact=True)
        if name in ("image_id", "category_id"):
            return ids_from_parsed(p.anns, name, f"annotation {name!r}s")
        if name in ("area", "score", "num_keypoints"):
            return self.floats(name)
        if name == "crowd":
            value, _, kind = p.anns.col("iscrowd")
            return _crowd(value, kind == cocojson.KIND_ABSENT)
        if name == "bbox":
            lengths = np.where(p.has_shape("bbox"), p.bbox_len, -1)
            if len(lengths) and not (lengths == 4).all():
                i = int(np.flatnonzero(lengths != 4)[0])
                if lengths[i] < 0:
                    raise KeyError(f"annotation {i} has no 'bbox'")
                raise ValueError(f"every annotation's bbox must be [x, y, w, h]: annotation {i} has {lengths[i]}")
            return p.bbox
        if name == "keypoints":
            if not p.has_shape("keypoints").all():
                raise KeyError(f"annotation {int(np.flatnonzero(~p.has_shape('keypoints'))[0])} has no 'keypoints'")
            return p.keypoints, p.keypoint_offsets
        raise KeyError(name)


class AnnotationColumns:
    """One COCO object's annotations as columns, in annotation order, each read on first use.

    ``id``, ``image_id``, ``category_id``: int64 [n] (see the module doc); ``bbox()``: float64
    [n, 4] xywh; ``area()``, ``score()``, ``num_keypoints()``: float64 [n]; ``crowd()``: (int(iscrowd)
    != 0, bool(iscrowd), 'iscrowd' missing); ``keypoints()``: (float64 flat, int64 offsets [n + 1]). ``eval_cache``
    holds evaluation state that depends only on these annotations (reused while they are).
    """

    def __init__(self, n: int, fetch):
        self.n = n
        self._fetch = fetch
        self._cache = {}
        self._loaded = False  # not computed yet
        self.eval_cache = {}
        self.id = self._get("id")
        self.image_id = self._get("image_id")
        self.category_id = self._get("category_id")

    def _get(self, name):
        if name not in self._cache:
            self._cache[name] = self._fetch(name)
        return self._cache[name]

    @staticmethod
    def from_dicts(anns: list) -> AnnotationColumns:
        return AnnotationColumns(len(anns), DictFields(anns).fetch)

    @staticmethod
    def from_parsed(p: cocojson.ParsedFile) -> AnnotationColumns:
        return AnnotationColumns(len(p.anns), ParsedFields(p).fetch)

    @staticmethod
    def from_arrays(**columns) -> AnnotationColumns:
        """Columns given directly: id, image_id, category_id (int64), bbox, area, score, crowd
        ((crowd, ignore, missing) bool arrays), keypoints... (the others raise KeyError when read)."""

        def fetch(name):
            if name not in columns:
                raise KeyError(f"the annotations have no {name!r}")
            return columns[name]

        return AnnotationColumns(len(columns["id"]), fetch)

    def bbox(self) -> np.ndarray:
        return self._get("bbox")

    def area(self) -> np.ndarray:
        return self._get("area")

    def crowd(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._get("crowd")

    def score(self) -> np.ndarray:
        return self._get("score")

    def num_keypoints(self) -> np.ndarray:
        return self._get("num_keypoints")

    def keypoints(self) -> tuple[np.ndarray, np.ndarray]:
        return self._get("keypoints")

    def loaded_rows(self) -> np.ndarray | None:
        """Row loadAnns returns for each row's id (the last annotation with that id), or None when the
        ids are unique."""
        if self._loaded is False:
            self._loaded = None
            ids = self.id
            # loadRes numbers results 1..N: unique without a sort
            sequential = self.n == 0 or (ids[0] == 1 and np.array_equal(ids, np.arange(1, self.n + 1)))
            if not sequential and sorted_unique(ids).size != self.n:
                last = {}
                for row, i in enumerate(ids.tolist()):
                    last[i] = row
                self._loaded = np.array([last[i] for i in ids.tolist()], dtype=np.int64)
        return self._loaded
