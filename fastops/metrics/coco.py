"""pycocotools' ``COCO``: the annotation index of a COCO-format dataset (a drop-in: same attributes
and methods), and what the evaluation reads of it (``columns()``, ``rle_batch()``, the image table).

    gt = COCO("instances_val.json")          # or COCO(dataset_dict)
    dt = gt.loadRes("results.json")          # or a list of result dicts, or an [N, 7] array

A file is read by C++ straight into the columns the evaluation needs (``cocojson``); ``dataset``
and the index (``anns``, ``imgs``, ``cats``, ``imgToAnns``, ``catToImgs``) are built from it on
first access. ``loadRes`` follows pycocotools' rules (``results.py``) and builds the result dicts
on first access as well: a list of result dicts given to it gets its ids, areas and iscrowd flags
then, not at loadRes.

The evaluation reads a COCO object's annotations once and keeps what depends only on them (columns,
RLEs, their grouping): ``createIndex()``, assigning ``dataset``, or replacing or resizing
``dataset["annotations"]`` makes it read them again. After editing annotation dicts in place, call
``createIndex()``, as after any change to ``dataset``.

Runtime needs numpy and torch only (orjson, when installed, builds the dicts faster).
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np

from . import cocojson, results, rle
from . import mask as maskUtils
from .columns import AnnotationColumns, ids_from_parsed, ids_from_values

__all__ = ["COCO", "ArrayCOCO", "ImageTable"]


def _isArrayLike(obj):
    return hasattr(obj, "__iter__") and hasattr(obj, "__len__")


class ImageTable:
    """A dataset's images as arrays: ids (int64, unique, in order of first appearance, as the keys
    of ``COCO.imgs``) and each id's height and width (the last image with that id, as ``imgs``;
    NaN where absent)."""

    def __init__(self, ids: np.ndarray, heights: np.ndarray, widths: np.ndarray):
        n = len(ids)
        last = np.empty(0, np.int64)
        if n:
            rev_unique, rev_index = np.unique(ids[::-1], return_index=True)
            last = n - 1 - rev_index  # per sorted unique id: its last row
            _, first = np.unique(ids, return_index=True)
            order = np.argsort(first, kind="stable")
            self.ids = rev_unique[order]  # first-appearance order
            self._sorted = rev_unique
        else:
            self.ids = self._sorted = np.zeros(0, np.int64)
        self._hw = np.stack([heights[last], widths[last]], 1) if n else np.zeros((0, 2))

    def sizes(self, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(float64 [n, 2] height and width, bool [n] known) of each image id."""
        pos = np.searchsorted(self._sorted, image_ids)
        pos = np.minimum(pos, max(len(self._sorted) - 1, 0))
        known = self._sorted[pos] == image_ids if len(self._sorted) else np.zeros(len(image_ids), bool)
        hw = self._hw[pos] if len(self._sorted) else np.zeros((len(image_ids), 2))
        return np.where(known[:, None], hw, np.nan), known

    @staticmethod
    def from_dicts(images: list) -> ImageTable:
        ids = ids_from_values([img["id"] for img in images], "image ids", exact=True)
        size = lambda key: np.array([_number(img.get(key)) for img in images], np.float64).reshape(-1)
        return ImageTable(ids, size("height"), size("width"))

    @staticmethod
    def from_parsed(p: cocojson.ParsedFile) -> ImageTable:
        ids = ids_from_parsed(p.images, "id", "image ids", exact=True)
        (h, _, hk), (w, _, wk) = p.images.col("height"), p.images.col("width")
        h = np.where(hk == cocojson.KIND_ABSENT, np.nan, h)
        w = np.where(wk == cocojson.KIND_ABSENT, np.nan, w)
        return ImageTable(ids, h, w)


def _number(v) -> float:
    return float(v) if isinstance(v, (int, float, np.integer, np.floating)) else np.nan


class COCO:
    """pycocotools' ``COCO``: loads a COCO-format dataset (a JSON path or a dict) and indexes it.

    Attributes and methods are pycocotools' (``dataset``, ``anns``, ``imgs``, ``cats``,
    ``imgToAnns``, ``catToImgs``, ``getAnnIds``, ``getCatIds``, ``getImgIds``, ``loadAnns``,
    ``loadCats``, ``loadImgs``, ``loadRes``, ``annToRLE``, ``annToMask``).
    """

    def __init__(self, annotation_file=None):
        self._dataset = {}
        self._build_dataset = None  # while the dicts are not built: makes them
        self._parsed = None  # a file's columns, while its dicts are not built (or not handed out)
        self._results = None  # results.Results of loadRes
        self._gt = None  # the ground truth a result set belongs to
        self._index = None
        self._cols = self._cols_anns = self._rles = self._images = None
        if annotation_file is None:
            return
        if isinstance(annotation_file, dict):
            self.dataset = annotation_file
            return
        data, parsed = cocojson.read(annotation_file)
        if parsed is None:  # an unusual file: Python's json reads it, as pycocotools
            dataset = cocojson.loads(data)
            assert type(dataset) is dict, f"annotation file format {type(dataset)} not supported"
            self.dataset = dataset
            return
        assert not parsed.top_is_list, f"annotation file format {list} not supported"
        self._dataset = None
        self._build_dataset = lambda: cocojson.loads(data)
        self._parsed = parsed

    @classmethod
    def from_other(cls, coco):
        """A COCO object of another library (e.g. pycocotools', with its dataset dict) as ours; ours
        (and ArrayCOCO) are returned as they are."""
        if coco is None or isinstance(coco, (COCO, ArrayCOCO)):
            return coco
        if not isinstance(getattr(coco, "dataset", None), dict):
            raise TypeError(f"COCOeval: expected a COCO object, got {type(coco).__name__}")
        ours = cls()
        ours.dataset = coco.dataset
        return ours

    # ---- the dicts, built on first access ---------------------------------------------------------
    @property
    def dataset(self) -> dict:
        if self._dataset is None:
            self._dataset = self._build_dataset()
            self._build_dataset = None
        return self._dataset

    @dataset.setter
    def dataset(self, value):
        self._dataset, self._build_dataset, self._parsed, self._results = value, None, None, None
        self.createIndex()

    def createIndex(self):
        """The index (anns, imgs, cats, imgToAnns, catToImgs) is built on first access; the
        evaluation reads the annotations again (the dicts may have been edited)."""
        self._index = None
        self._cols = self._cols_anns = self._rles = self._images = None
        if self._dataset is not None and self._build_dataset is None:
            # the dicts exist and may have been edited: read them, not the file or loadRes columns
            if self._parsed is not None or self._results is not None:
                self._parsed = self._results = None

    def _build_index(self):
        if self._index is None:
            anns, cats, imgs = {}, {}, {}
            imgToAnns, catToImgs = defaultdict(list), defaultdict(list)
            dataset = self.dataset
            if "annotations" in dataset:
                for ann in dataset["annotations"]:
                    imgToAnns[ann["image_id"]].append(ann)
                    anns[ann["id"]] = ann
            if "images" in dataset:
                for img in dataset["images"]:
                    imgs[img["id"]] = img
            if "categories" in dataset:
                for cat in dataset["categories"]:
                    cats[cat["id"]] = cat
            if "annotations" in dataset and "categories" in dataset:
                for ann in dataset["annotations"]:
                    catToImgs[ann["category_id"]].append(ann["image_id"])
            self._index = {"anns": anns, "imgs": imgs, "cats": cats, "imgToAnns": imgToAnns, "catToImgs": catToImgs}
        return self._index

    def _index_attr(name):
        def get(self):
            return self._build_index()[name]

        def set_(self, value):
            self._build_index()[name] = value

        return property(get, set_)

    anns = _index_attr("anns")
    imgs = _index_attr("imgs")
    cats = _index_attr("cats")
    imgToAnns = _index_attr("imgToAnns")
    catToImgs = _index_attr("catToImgs")
    del _index_attr

    # ---- what the evaluation reads ----------------------------------------------------------------
    def columns(self) -> AnnotationColumns:
        """The annotations as columns (built once; see the module doc for when they are read again)."""
        if self._results is not None:
            return self._results.columns
        if self._parsed is not None:
            if self._cols is None:
                self._cols = AnnotationColumns.from_parsed(self._parsed)
            return self._cols
        anns = self.dataset.get("annotations", [])
        if self._cols is None or self._cols_anns is not anns or self._cols.n != len(anns):
            self._cols, self._cols_anns, self._rles = AnnotationColumns.from_dicts(anns), anns, None
        return self._cols

    def image_table(self) -> ImageTable:
        if self._gt is not None:
            return self._gt.image_table()
        if self._images is None:
            if self._parsed is not None:
                self._images = ImageTable.from_parsed(self._parsed)
            else:
                self._images = ImageTable.from_dicts(self.dataset.get("images", []))
        return self._images

    def rle_batch(self) -> rle.RleBatch:
        """Every annotation's RLE (as annToRLE gives it), in annotation order, converted once per
        COCO object (as other evaluators convert at load time) and kept."""
        cols = self.columns()
        if self._rles is None or self._rles[0] is not cols:
            hw, known = self.image_table().sizes(cols.image_id)
            usable = known[:, None] & np.isfinite(hw)
            bad = usable & ((hw < 0) | (hw >= 2**31) | (hw != np.floor(hw)))
            if bad.any():
                i = int(np.flatnonzero(bad.any(1))[0])
                raise ValueError(
                    f"image {int(cols.image_id[i])}: height and width must be integers in [0, 2**31), "
                    f"got {hw[i].tolist()}"
                )
            hw = np.where(usable, hw, -1).astype(np.int64)
            if self._results is not None:
                batch = self._results.rle_batch(hw)
            elif self._parsed is not None:
                batch = rle.from_parsed(self._parsed, hw)
            else:
                batch = rle.segmentations(self.dataset.get("annotations", []), hw)
            self._rles = (cols, batch)
        return self._rles[1]

    # ---- pycocotools' queries ---------------------------------------------------------------------
    def info(self):
        for key, value in self.dataset["info"].items():
            print(f"{key}: {value}")

    def getAnnIds(self, imgIds=[], catIds=[], areaRng=[], iscrowd=None):
        imgIds = imgIds if _isArrayLike(imgIds) else [imgIds]
        catIds = catIds if _isArrayLike(catIds) else [catIds]
        if len(imgIds) == len(catIds) == len(areaRng) == 0:
            anns = self.dataset["annotations"]
        else:
            if not len(imgIds) == 0:
                lists = [self.imgToAnns[imgId] for imgId in imgIds if imgId in self.imgToAnns]
                anns = list(itertools.chain.from_iterable(lists))
            else:
                anns = self.dataset["annotations"]
            anns = anns if len(catIds) == 0 else [ann for ann in anns if ann["category_id"] in catIds]
            anns = (
                anns
                if len(areaRng) == 0
                else [ann for ann in anns if ann["area"] > areaRng[0] and ann["area"] < areaRng[1]]
            )
        if iscrowd is not None:
            ids = [ann["id"] for ann in anns if ann["iscrowd"] == iscrowd]
        else:
            ids = [ann["id"] for ann in anns]
        return ids

    def getCatIds(self, catNms=[], supNms=[], catIds=[]):
        catNms = catNms if _isArrayLike(catNms) else [catNms]
        supNms = supNms if _isArrayLike(supNms) else [supNms]
        catIds = catIds if _isArrayLike(catIds) else [catIds]
        if len(catNms) == len(supNms) == len(catIds) == 0:
            if self._gt is not None and self._dataset is None:
                return self._gt.getCatIds()
            if self._parsed is not None and self._dataset is None:
                return self._parsed.categories.python_values("id")
        cats = self.dataset.get("categories", [])
        if not len(catNms) == len(supNms) == len(catIds) == 0:
            cats = cats if len(catNms) == 0 else [cat for cat in cats if cat["name"] in catNms]
            cats = cats if len(supNms) == 0 else [cat for cat in cats if cat["supercategory"] in supNms]
            cats = cats if len(catIds) == 0 else [cat for cat in cats if cat["id"] in catIds]
        return [cat["id"] for cat in cats]

    def getImgIds(self, imgIds=[], catIds=[]):
        imgIds = imgIds if _isArrayLike(imgIds) else [imgIds]
        catIds = catIds if _isArrayLike(catIds) else [catIds]
        if len(imgIds) == len(catIds) == 0:
            if self._index is None and (self._parsed is not None or self._gt is not None):
                return self.image_table().ids.tolist()
            ids = self.imgs.keys()
        else:
            ids = set(imgIds)
            for i, catId in enumerate(catIds):
                if i == 0 and len(ids) == 0:
                    ids = set(self.catToImgs[catId])
                else:
                    ids &= set(self.catToImgs[catId])
        return list(ids)

    def loadAnns(self, ids=[]):
        if _isArrayLike(ids):
            return [self.anns[id] for id in ids]
        elif type(ids) is int:
            return [self.anns[ids]]

    def loadCats(self, ids=[]):
        if _isArrayLike(ids):
            return [self.cats[id] for id in ids]
        elif type(ids) is int:
            return [self.cats[ids]]

    def loadImgs(self, ids=[]):
        if _isArrayLike(ids):
            return [self.imgs[id] for id in ids]
        elif type(ids) is int:
            return [self.imgs[ids]]

    def loadRes(self, resFile):
        """Loads detection results (a JSON path, a list of dicts, or an [N, 7] array of image_id,
        x, y, w, h, score, category_id) as pycocotools does: ids 1..N, and, when the first result has
        a bbox, every result's area = w * h and iscrowd = 0; for segmentation results the mask's
        area (and its bounding box when absent); for keypoints the keypoints' extent. Results must
        refer to images of this set (AssertionError). An empty list gives an empty result set
        (pycocotools raises IndexError)."""
        res = COCO()
        res._results = results.load(self, resFile)
        res._gt = self if res._results.kind != "caption" else None  # caption results keep their own images
        res._dataset = None
        res._build_dataset = lambda: res._results.dataset(self)
        return res

    def loadNumpyAnnotations(self, data):
        """[N, 7] array of (image_id, x, y, w, h, score, category_id) -> list of result dicts."""
        return results.numpy_annotations(data)

    def annToRLE(self, ann):
        """An annotation's segmentation (polygons, uncompressed or compressed RLE) as compressed RLE."""
        t = self.imgs[ann["image_id"]]
        h, w = t["height"], t["width"]
        segm = ann["segmentation"]
        if type(segm) is list:
            rles = maskUtils.frPyObjects(segm, h, w)
            rle_ = maskUtils.merge(rles)
        elif type(segm["counts"]) is list:
            rle_ = maskUtils.frPyObjects(segm, h, w)
        else:
            rle_ = segm
        return rle_

    def annToMask(self, ann):
        return maskUtils.decode(self.annToRLE(ann))


class ArrayCOCO:
    """What COCOeval reads of a COCO object (``columns()``, ``getImgIds()``, ``getCatIds()``,
    ``rle_batch()``, ``image_table()``), built from arrays rather than annotation dicts
    (``MeanAveragePrecision``'s path)."""

    def __init__(self, cols: AnnotationColumns, img_ids, cat_ids, rles=None):
        self._cols, self._img_ids, self._cat_ids, self._rles = cols, list(img_ids), list(cat_ids), rles
        ids = np.asarray(self._img_ids, np.int64).reshape(-1)
        self._table = ImageTable(ids, np.full(len(ids), np.nan), np.full(len(ids), np.nan))

    def columns(self):
        return self._cols

    def getImgIds(self):
        return list(self._img_ids)

    def getCatIds(self):
        return list(self._cat_ids)

    def rle_batch(self):
        return self._rles

    def image_table(self):
        return self._table
