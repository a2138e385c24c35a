"""pycocotools' ``COCO``: the annotation index of a COCO-format dataset (a drop-in, same attributes
and methods), plus the column form of its annotations that the evaluation (``cocoeval.py``) reads.

    gt = COCO("instances_val.json")          # or COCO(dataset_dict)
    dt = gt.loadRes("results.json")          # or a list of result dicts, or an [N, 7] array

``loadRes`` decides the result kind from the first result, numbers results 1..N and sets their
area (w * h for boxes, the mask's area for segmentations) and iscrowd 0, as pycocotools does.
Duplicate annotation ids resolve as ``COCO.loadAnns`` does (the last annotation with that id).
``loadRes([])`` gives an empty result set (pycocotools raises IndexError). Results must refer to
images of the ground-truth set (AssertionError, as pycocotools).

Runtime needs numpy and torch only.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import defaultdict
from operator import itemgetter

import numpy as np

from . import mask as maskUtils
from . import rle

__all__ = ["COCO", "AnnotationColumns", "ArrayCOCO"]


def _isArrayLike(obj):
    return hasattr(obj, "__iter__") and hasattr(obj, "__len__")


def _id_array(anns: list, key: str) -> np.ndarray:
    """ann[key] of every annotation as an int64 array (COCO ids are integers; anything else raises
    ValueError naming the key)."""
    try:
        return np.fromiter(map(itemgetter(key), anns), dtype=np.int64, count=len(anns))
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"COCO annotations' {key!r} must be integers: {e}") from None


class AnnotationColumns:
    """One COCO object's annotations as columns, in ``dataset['annotations']`` order."""

    def __init__(self, anns: list):
        n = len(anns)
        self.n = n
        self.id = _id_array(anns, "id")
        self.image_id = _id_array(anns, "image_id")
        self.category_id = _id_array(anns, "category_id")
        # area and iscrowd are read only when an evaluation needs them (pycocotools likewise)
        self._anns = anns
        self._bbox = None
        self._area = None
        self._crowd = None
        self._score = None
        self._loaded = False  # not computed yet

    @staticmethod
    def from_arrays(ids, image_id, category_id, bbox, area, iscrowd=None, score=None) -> AnnotationColumns:
        """Columns given directly (int64 ids, float64 boxes [n, 4] xywh and areas, int iscrowd)."""
        c = AnnotationColumns([])
        c.n = len(ids)
        c.id, c.image_id, c.category_id = ids, image_id, category_id
        c._bbox, c._area = bbox, area
        if iscrowd is not None:
            c._crowd = (iscrowd != 0, iscrowd != 0)
        c._score = score
        c._anns = None
        return c

    def bbox(self) -> np.ndarray:
        if self._bbox is None:
            if self.n == 0:
                self._bbox = np.zeros((0, 4), np.float64)
            else:
                try:
                    b = np.array(list(map(itemgetter("bbox"), self._anns)), dtype=np.float64)
                except (ValueError, TypeError) as e:
                    raise ValueError(f"every annotation's bbox must be [x, y, w, h]: {e}") from None
                if b.ndim != 2 or b.shape[1] != 4:
                    raise ValueError(f"every annotation's bbox must be [x, y, w, h], got shape {b.shape}")
                self._bbox = b
        return self._bbox

    def area(self) -> np.ndarray:
        if self._area is None:
            self._area = np.fromiter(map(itemgetter("area"), self._anns), dtype=np.float64, count=self.n)
        return self._area

    def crowd(self) -> tuple[np.ndarray, np.ndarray]:
        """(int(iscrowd) != 0 for the IoU and matching, bool(iscrowd) for the ignore flag)."""
        if self._crowd is None:
            values = [a.get("iscrowd", 0) for a in self._anns]
            missing = [i for i, a in enumerate(self._anns) if "iscrowd" not in a]
            if missing:
                raise KeyError(
                    f"annotation id {self._anns[missing[0]]['id']} has no 'iscrowd' (pycocotools needs it too)"
                )
            as_int = np.array([int(v) for v in values], dtype=np.int64).reshape(self.n)
            as_bool = np.array([bool(v) for v in values], dtype=bool).reshape(self.n)
            self._crowd = (as_int != 0, as_bool)
        return self._crowd

    def score(self) -> np.ndarray:
        if self._score is None:
            self._score = np.fromiter(map(itemgetter("score"), self._anns), dtype=np.float64, count=self.n)
        return self._score

    def loaded_rows(self) -> np.ndarray | None:
        """Row loadAnns returns for each row's id (the last annotation with that id), or None
        when the ids are unique."""
        if self._loaded is False:
            self._loaded = None
            ids = self.id
            # loadRes numbers results 1..N: unique without a sort
            if self.n and not (ids[0] == 1 and np.array_equal(ids, np.arange(1, self.n + 1))):
                if np.unique(ids).size != self.n:
                    last = {}
                    for row, i in enumerate(ids.tolist()):
                        last[i] = row
                    self._loaded = np.array([last[i] for i in ids.tolist()], dtype=np.int64)
        return self._loaded


class COCO:
    """pycocotools' ``COCO``: loads a COCO-format dataset (a JSON path or a dict) and indexes it.

    Attributes and methods are pycocotools' (``dataset``, ``anns``, ``imgs``, ``cats``,
    ``imgToAnns``, ``catToImgs``, ``getAnnIds``, ``getCatIds``, ``getImgIds``, ``loadAnns``,
    ``loadCats``, ``loadImgs``, ``loadRes``, ``annToRLE``, ``annToMask``).
    """

    def __init__(self, annotation_file=None):
        self.dataset, self.anns, self.cats, self.imgs = dict(), dict(), dict(), dict()
        self.imgToAnns, self.catToImgs = defaultdict(list), defaultdict(list)
        self._cols = None
        if annotation_file is not None:
            if isinstance(annotation_file, dict):
                dataset = annotation_file
            else:
                with open(annotation_file) as f:
                    dataset = json.load(f)
            assert type(dataset) is dict, f"annotation file format {type(dataset)} not supported"
            self.dataset = dataset
            self.createIndex()

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
        ours.createIndex()
        if coco.dataset.get("annotations") and "bbox" in coco.dataset["annotations"][0]:
            ours._bbox_results = True  # results loaded by pycocotools already carry their polygons
        return ours

    def createIndex(self):
        anns, cats, imgs = {}, {}, {}
        imgToAnns, catToImgs = defaultdict(list), defaultdict(list)
        if "annotations" in self.dataset:
            for ann in self.dataset["annotations"]:
                imgToAnns[ann["image_id"]].append(ann)
                anns[ann["id"]] = ann
        if "images" in self.dataset:
            for img in self.dataset["images"]:
                imgs[img["id"]] = img
        if "categories" in self.dataset:
            for cat in self.dataset["categories"]:
                cats[cat["id"]] = cat
        if "annotations" in self.dataset and "categories" in self.dataset:
            for ann in self.dataset["annotations"]:
                catToImgs[ann["category_id"]].append(ann["image_id"])
        self.anns = anns
        self.imgToAnns = imgToAnns
        self.catToImgs = catToImgs
        self.imgs = imgs
        self.cats = cats
        self._cols = None  # the evaluation's columns and RLEs are read once; createIndex() resets them
        self._rles = None

    def columns(self) -> AnnotationColumns:
        """The annotations as columns for the evaluation (built once, rebuilt when the annotation list
        changes)."""
        anns = self.dataset.get("annotations", [])
        if self._cols is None or self._cols._anns is not anns or self._cols.n != len(anns):
            self._cols = AnnotationColumns(anns)
        return self._cols

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
        area (and its bounding box when absent)."""
        res = COCO()
        res.dataset["info"] = copy.deepcopy(self.dataset.get("info", {}))
        res.dataset["images"] = [img for img in self.dataset["images"]]
        if isinstance(resFile, str):
            with open(resFile) as f:
                anns = json.load(f)
        elif isinstance(resFile, np.ndarray):
            anns = self.loadNumpyAnnotations(resFile)
        else:
            anns = resFile
        assert type(anns) is list, "results in not an array of objects"
        annsImgIds = [ann["image_id"] for ann in anns]
        assert set(annsImgIds) == (set(annsImgIds) & set(self.getImgIds())), (
            "Results do not correspond to current coco set"
        )
        if len(anns) == 0:
            res.dataset["categories"] = copy.deepcopy(self.dataset.get("categories", []))
        elif "caption" in anns[0]:
            imgIds = set([img["id"] for img in res.dataset["images"]]) & set([ann["image_id"] for ann in anns])
            res.dataset["images"] = [img for img in res.dataset["images"] if img["id"] in imgIds]
            for id, ann in enumerate(anns):
                ann["id"] = id + 1
        elif "bbox" in anns[0] and not anns[0]["bbox"] == []:
            res.dataset["categories"] = copy.deepcopy(self.dataset["categories"])
            for id, ann in enumerate(anns):
                bb = ann["bbox"]
                if len(bb) != 4:
                    raise ValueError(f"loadRes: result {id} has bbox {bb!r}; a bbox is [x, y, w, h]")
                ann["area"] = bb[2] * bb[3]
                ann["id"] = id + 1
                ann["iscrowd"] = 0
            res._bbox_results = True  # segmentation, when absent, is the box's polygon (annToRLE)
        elif "segmentation" in anns[0]:
            res.dataset["categories"] = copy.deepcopy(self.dataset["categories"])
            segms = [ann["segmentation"] for ann in anns]
            areas = maskUtils.area(segms)
            missing = [i for i, ann in enumerate(anns) if "bbox" not in ann]
            boxes = maskUtils.toBbox([segms[i] for i in missing]) if missing else None
            for id, ann in enumerate(anns):
                ann["area"] = areas[id]
                ann["id"] = id + 1
                ann["iscrowd"] = 0
            for j, i in enumerate(missing):
                anns[i]["bbox"] = boxes[j]
        elif "keypoints" in anns[0]:
            res.dataset["categories"] = copy.deepcopy(self.dataset["categories"])
            for id, ann in enumerate(anns):
                s = ann["keypoints"]
                x = s[0::3]
                y = s[1::3]
                x0, x1, y0, y1 = np.min(x), np.max(x), np.min(y), np.max(y)
                ann["area"] = (x1 - x0) * (y1 - y0)
                ann["id"] = id + 1
                ann["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        res.dataset["annotations"] = anns
        res.createIndex()
        return res

    def loadNumpyAnnotations(self, data):
        """[N, 7] array of (image_id, x, y, w, h, score, category_id) -> list of result dicts."""
        assert type(data) is np.ndarray
        assert data.shape[1] == 7
        return [
            {
                "image_id": int(row[0]),
                "bbox": [row[1], row[2], row[3], row[4]],
                "score": row[5],
                "category_id": int(row[6]),
            }
            for row in data
        ]

    def annToRLE(self, ann):
        """An annotation's segmentation (polygons, uncompressed or compressed RLE) as compressed RLE."""
        t = self.imgs[ann["image_id"]]
        h, w = t["height"], t["width"]
        segm = ann.get("segmentation")
        if segm is None and getattr(self, "_bbox_results", False):
            bb = ann["bbox"]
            x1, x2, y1, y2 = [bb[0], bb[0] + bb[2], bb[1], bb[1] + bb[3]]
            segm = ann["segmentation"] = [[x1, y1, x1, y2, x2, y2, x2, y1]]
        if type(segm) is list:
            rles = maskUtils.frPyObjects(segm, h, w)
            rle = maskUtils.merge(rles)
        elif type(segm["counts"]) is list:
            rle = maskUtils.frPyObjects(segm, h, w)
        else:
            rle = segm
        return rle

    def annToMask(self, ann):
        return maskUtils.decode(self.annToRLE(ann))

    def rle_batch(self):
        """Every annotation's RLE (as annToRLE gives it), batched in annotation order; converted
        once per COCO object (as other evaluators convert at load time) and kept."""
        anns = self.dataset.get("annotations", [])
        cached = getattr(self, "_rles", None)
        if cached is None or cached[0] is not anns or cached[1] != len(anns):
            batch = rle.segmentations(anns, self.imgs, getattr(self, "_bbox_results", False))
            self._rles = cached = (anns, len(anns), batch)
        return cached[2]


class ArrayCOCO:
    """What COCOeval reads of a COCO object (``columns()``, ``getImgIds()``, ``getCatIds()``,
    ``rle_batch()``), built from arrays rather than annotation dicts (``MeanAveragePrecision``'s path)."""

    def __init__(self, cols: AnnotationColumns, img_ids, cat_ids, rles=None):
        self._cols, self._img_ids, self._cat_ids, self._rles = cols, list(img_ids), list(cat_ids), rles

    def columns(self):
        return self._cols

    def getImgIds(self):
        return list(self._img_ids)

    def getCatIds(self):
        return list(self._cat_ids)

    def rle_batch(self):
        return self._rles
