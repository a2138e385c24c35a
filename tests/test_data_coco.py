"""CocoDetection on small files the tests write: boxes, contiguous labels, polygon / RLE / crowd
masks (pycocotools as the oracle), semantic maps, and every kind of bad input."""

import copy
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as pcmask
from pycocotools.coco import COCO

from fastops.data import CocoDetection, DatasetError, image_labels

# pycocotools' decode under numpy 2 (the oracle's warning, not ours)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

H, W = 40, 60


def write_image(path, seed, size=(H, W)):
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


def base_dataset():
    square = np.zeros((H, W), dtype=np.uint8, order="F")
    square[5:15, 30:45] = 1
    rle = pcmask.encode(square)
    rle["counts"] = rle["counts"].decode()
    crowd = np.zeros((H, W), dtype=np.uint8, order="F")
    crowd[25:35, 2:20] = 1
    flat = crowd.flatten(order="F")
    runs, last, n = [], 0, 0
    for v in flat:
        if v != last:
            runs.append(n)
            n, last = 0, v
        n += 1
    runs.append(n)
    return {
        "images": [
            {"id": 10, "file_name": "a.png", "height": H, "width": W},
            {"id": 11, "file_name": "b.png", "height": H, "width": W},
            {"id": 12, "file_name": "c.png", "height": H, "width": W},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 12, "name": "bird"}],
        "annotations": [
            # a polygon triangle
            {
                "id": 1,
                "image_id": 10,
                "category_id": 7,
                "bbox": [2.0, 3.0, 20.0, 16.0],
                "area": 160.0,
                "iscrowd": 0,
                "segmentation": [[2.0, 3.0, 22.0, 3.0, 12.0, 19.0]],
            },
            # a compressed RLE
            {
                "id": 2,
                "image_id": 10,
                "category_id": 12,
                "bbox": [30.0, 5.0, 15.0, 10.0],
                "area": 150.0,
                "iscrowd": 0,
                "segmentation": rle,
            },
            # a crowd region as an uncompressed RLE
            {
                "id": 3,
                "image_id": 10,
                "category_id": 3,
                "bbox": [2.0, 25.0, 18.0, 10.0],
                "area": 180.0,
                "iscrowd": 1,
                "segmentation": {"size": [H, W], "counts": runs},
            },
            # two polygons for one object, a box past the edge within the tolerance
            {
                "id": 4,
                "image_id": 11,
                "category_id": 3,
                "bbox": [40.0, 20.0, 20.5, 20.0],
                "area": 100.0,
                "iscrowd": 0,
                "segmentation": [[40, 20, 50, 20, 50, 30, 40, 30], [52, 32, 60, 32, 60, 40, 52, 40]],
            },
            # a zero-width box: dropped
            {
                "id": 5,
                "image_id": 11,
                "category_id": 7,
                "bbox": [5.0, 5.0, 0.0, 4.0],
                "area": 0.0,
                "iscrowd": 0,
                "segmentation": [[5, 5, 5, 9, 5, 9]],
            },
        ],
    }


@pytest.fixture
def coco_dir(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    pixels = {name: write_image(images / name, k) for k, name in enumerate(("a.png", "b.png", "c.png"))}
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(base_dataset()))
    return tmp_path, images, ann, pixels


def test_reads_boxes_labels_masks(coco_dir):
    _, images, ann, pixels = coco_dir
    ds = CocoDetection(images, ann)
    assert len(ds) == 3 and ds.num_classes == 3
    assert ds.class_names == ["dog", "cat", "bird"] and ds.category_ids == [3, 7, 12]
    assert ds.has_masks and ds.has_semantic
    assert image_labels(ds) == [[2, 3], [1], []]
    assert ds.label_counts().tolist() == [1, 1, 1]

    image, t = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert torch.equal((image * 255).round().to(torch.uint8), torch.from_numpy(pixels["a.png"]).permute(2, 0, 1))
    assert t["image_id"] == 10
    assert t["boxes"].tolist() == [[2.0, 3.0, 22.0, 19.0], [30.0, 5.0, 45.0, 15.0]]
    assert t["labels"].tolist() == [2, 3]
    assert t["tags"].tolist() == [0.0, 1.0, 1.0]
    assert "iscrowd" not in t
    oracle = COCO(str(ann))
    for j, aid in enumerate((1, 2)):
        assert np.array_equal(t["masks"][j].numpy(), oracle.annToMask(oracle.anns[aid]))
    crowd = oracle.annToMask(oracle.anns[3]).astype(bool)
    sem = t["semantic"].numpy()
    assert (sem[crowd] == 255).all()
    assert (sem[t["masks"][1].numpy().astype(bool)] == 3).all()
    assert (sem[~crowd & (t["masks"].sum(0).numpy() == 0)] == 0).all()

    _, t1 = ds[1]
    assert t1["boxes"].tolist() == [[40.0, 20.0, 60.0, 40.0]]  # clipped to the image
    assert np.array_equal(t1["masks"][0].numpy(), oracle.annToMask(oracle.anns[4]))
    _, t2 = ds[2]
    assert t2["boxes"].shape == (0, 4) and t2["masks"].shape == (0, H, W) and bool((t2["semantic"] == 0).all())


def test_include_crowd_and_skip_empty(coco_dir):
    _, images, ann, _ = coco_dir
    ds = CocoDetection(images, ann, include_crowd=True, skip_empty=True)
    assert len(ds) == 2
    _, t = ds[0]
    assert t["labels"].tolist() == [2, 3, 1] and t["iscrowd"].tolist() == [False, False, True]
    assert (t["semantic"][t["masks"][2].bool()] == 255).all()


def test_without_segmentation(coco_dir, tmp_path):
    _, images, _, _ = coco_dir
    data = base_dataset()
    for a in data["annotations"]:
        a.pop("segmentation")
    path = tmp_path / "boxes_only.json"
    path.write_text(json.dumps(data))
    ds = CocoDetection(images, path)
    assert not ds.has_masks and not ds.has_semantic
    _, t = ds[0]
    assert "masks" not in t and "semantic" not in t and t["boxes"].shape == (2, 4)


def test_transforms_called(coco_dir):
    _, images, ann, _ = coco_dir
    ds = CocoDetection(images, ann, transforms=lambda im, t: (im * 0, {**t, "seen": True}))
    image, t = ds[0]
    assert t["seen"] and float(image.abs().sum()) == 0


def _write(tmp_path, data, name="bad.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _edit(fn):
    data = base_dataset()
    fn(data)
    return data


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["annotations"][0].update(image_id=99), r"annotation 1 points to image 99"),
        (lambda d: d["annotations"][1].update(category_id=5), r"annotation 2 has category_id 5"),
        (lambda d: d["annotations"][0].update(bbox=[50.0, 3.0, 20.0, 16.0]), r"annotation 1: box .* outside"),
        (lambda d: d["annotations"][0].update(bbox=[2.0, 3.0, -1.0, 16.0]), r"annotation 1: negative box"),
        (lambda d: d["annotations"][0].update(bbox=[2.0, 3.0, 16.0]), r"annotation 1: 'bbox' must be"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3]]), r"annotation 1: polygons"),
        (lambda d: d["annotations"][1]["segmentation"].update(size=[H, W + 1]), r"annotation 2: RLE size"),
        (lambda d: d["annotations"][1].update(segmentation="x"), r"annotation 2: 'segmentation' must"),
        (lambda d: d["images"][0].pop("height"), r"image 10 needs positive integer"),
        (lambda d: d["images"].append(dict(d["images"][0])), r"image id 10 appears twice"),
        (lambda d: d.pop("categories"), r"missing or malformed 'categories'"),
    ],
)
def test_bad_annotations(coco_dir, tmp_path, edit, message):
    _, images, _, _ = coco_dir
    path = _write(tmp_path, _edit(edit))
    with pytest.raises(DatasetError, match=message) as info:
        CocoDetection(images, path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_files(coco_dir, tmp_path):
    _, images, ann, _ = coco_dir
    with pytest.raises(DatasetError, match="annotation file not found"):
        CocoDetection(images, tmp_path / "missing.json")
    bad = _write(tmp_path, '{"images": [', "truncated.json")
    with pytest.raises(DatasetError, match=r"truncated\.json: malformed JSON"):
        CocoDetection(images, bad)
    with pytest.raises(DatasetError, match="images folder not found"):
        CocoDetection(tmp_path / "nowhere", ann)
    # an image named in the file but absent from the folder
    (images / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"b.png: image file not found \(image 11"):
        CocoDetection(images, ann)
    ds = CocoDetection(images, ann, check_files=False)
    with pytest.raises(DatasetError, match=r"b\.png: image file not found"):
        ds[1]
    # an undecodable image, and one of another size than the file says
    (images / "b.png").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"b\.png: cannot decode image"):
        CocoDetection(images, ann)[1]
    write_image(images / "c.png", 3, size=(H + 1, W))
    with pytest.raises(DatasetError, match=r"c.png: image is 60 x 41, its annotations say 60 x 40"):
        CocoDetection(images, ann)[2]


def test_undecodable_rle_names_the_annotation(coco_dir, tmp_path):
    _, images, _, _ = coco_dir
    data = base_dataset()
    data["annotations"][1]["segmentation"] = copy.deepcopy(data["annotations"][1]["segmentation"])
    data["annotations"][1]["segmentation"]["counts"] = [10**6, 5]  # runs past the image
    path = _write(tmp_path, data)
    ds = CocoDetection(images, path)
    with pytest.raises(DatasetError, match=r"annotations \[1, 2, 3\]"):
        ds[0]


@settings(max_examples=15)
@given(
    polys=st.lists(
        st.lists(st.tuples(st.floats(-3, W + 3), st.floats(-3, H + 3)), min_size=3, max_size=7),
        min_size=1,
        max_size=4,
    )
)
def test_random_polygon_masks_match_pycocotools(tmp_path_factory, polys):
    root = tmp_path_factory.mktemp("poly")
    (root / "images").mkdir()
    write_image(root / "images" / "a.png", 0)
    anns = []
    for k, poly in enumerate(polys):
        flat = [float(v) for xy in poly for v in xy]
        xs, ys = flat[0::2], flat[1::2]
        x0, y0 = max(min(xs), 0.0), max(min(ys), 0.0)
        x1, y1 = min(max(xs), W), min(max(ys), H)
        bbox = [x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)]
        anns.append({"id": k + 1, "image_id": 1, "category_id": 1, "bbox": bbox, "segmentation": [flat], "area": 1.0})
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": anns,
    }
    path = root / "ann.json"
    path.write_text(json.dumps(data))
    ds = CocoDetection(root / "images", path)
    _, t = ds[0]
    oracle = COCO(str(path))
    kept = [a for a in anns if a["bbox"][2] > 0 and a["bbox"][3] > 0]
    assert t["masks"].shape == (len(kept), H, W)
    for j, a in enumerate(kept):
        assert np.array_equal(t["masks"][j].numpy(), oracle.annToMask(oracle.anns[a["id"]]))
    # the semantic map is the union of the kept masks
    assert torch.equal(t["semantic"] > 0, t["masks"].sum(0) > 0)
