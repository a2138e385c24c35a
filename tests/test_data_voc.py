"""VOCDetection on a small VOC folder the tests write: boxes, the difficult flag, segmentation
PNGs, and every kind of bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from fastops.data import VOC_CLASSES, DatasetError, VOCDetection

H, W = 30, 50


def xml(filename, objects, size=(W, H)):
    objs = "".join(
        f"<object><name>{name}</name><difficult>{int(hard)}</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b, hard in objects
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
        f"<height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>"
    )


def palette_png(path, indices):
    im = Image.fromarray(indices.astype(np.uint8), mode="P")
    im.putpalette([(7 * i) % 256 for i in range(768)])  # colours unlike the indices
    im.save(path)


OBJECTS = {
    "img1": [("dog", (1, 1, 10, 20), False), ("person", (20, 5, 50, 30), True)],
    "img2": [("car", (5, 5, 15, 15), False)],
}


@pytest.fixture
def voc_root(tmp_path):
    for d in ("Annotations", "JPEGImages", "ImageSets/Main", "SegmentationClass", "SegmentationObject"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "ImageSets/Main/train.txt").write_text("img1\nimg2\n")
    (tmp_path / "ImageSets/Main/val.txt").write_text("img2\n")
    for k, (name, objs) in enumerate(OBJECTS.items()):
        rgb = np.random.default_rng(k).integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / "JPEGImages" / f"{name}.png")
        (tmp_path / "Annotations" / f"{name}.xml").write_text(xml(f"{name}.png", objs))
        cls = np.zeros((H, W), np.int64)
        inst = np.zeros((H, W), np.int64)
        for j, (c, (x1, y1, x2, y2), _) in enumerate(objs):
            cls[y1 - 1 : y2, x1 - 1 : x2] = VOC_CLASSES.index(c) + 1
            inst[y1 - 1 : y2, x1 - 1 : x2] = j + 1
        cls[0, :] = 255  # a border line
        inst[0, :] = 255
        palette_png(tmp_path / "SegmentationClass" / f"{name}.png", cls)
        palette_png(tmp_path / "SegmentationObject" / f"{name}.png", inst)
    return tmp_path


def test_reads_boxes_difficult_and_segmentation(voc_root):
    ds = VOCDetection(voc_root, "train")
    assert len(ds) == 2 and ds.num_classes == 20 and ds.class_names == list(VOC_CLASSES)
    assert ds.has_semantic and ds.has_masks
    dog, person, car = (VOC_CLASSES.index(c) + 1 for c in ("dog", "person", "car"))
    assert ds.image_labels(0) == [dog, person] and ds.image_labels(1) == [car]
    counts = ds.label_counts()
    assert counts.sum() == 3 and counts[dog - 1] == 1 and counts[person - 1] == 1
    image, t = ds[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    # 1-based inclusive corners -> pixel edges
    assert t["boxes"].tolist() == [[0.0, 0.0, 10.0, 20.0], [19.0, 4.0, 50.0, 30.0]]
    assert t["labels"].tolist() == [dog, person]
    assert t["difficult"].dtype == torch.bool and t["difficult"].tolist() == [False, True]
    assert t["tags"][dog - 1] == 1 and t["tags"].sum() == 2
    assert t["semantic"].dtype == torch.int64 and t["semantic"].shape == (H, W)
    assert int(t["semantic"][10, 5]) == dog and int(t["semantic"][0, 3]) == 255 and int(t["semantic"][25, 12]) == 0
    # instance masks: the box of each object (rows below the border line)
    for j in range(2):
        x1, y1, x2, y2 = (int(v) for v in t["boxes"][j].tolist())
        expect = torch.zeros(H, W, dtype=torch.uint8)
        expect[max(y1, 1) : y2, x1:x2] = 1
        if j == 0:
            expect[:, 19:] = 0  # the person is drawn after the dog
        assert torch.equal(t["masks"][j], expect)


def test_difficult_excluded_by_option(voc_root):
    ds = VOCDetection(voc_root, "train", keep_difficult=False)
    _, t = ds[0]
    assert t["labels"].tolist() == [VOC_CLASSES.index("dog") + 1]
    assert t["difficult"].tolist() == [False] and t["masks"].shape == (1, H, W)
    assert ds.image_labels(0) == [VOC_CLASSES.index("dog") + 1]


def test_image_set_and_without_segmentation(voc_root):
    assert len(VOCDetection(voc_root, "val")) == 1
    (voc_root / "SegmentationClass" / "img2.png").unlink()
    ds = VOCDetection(voc_root, "train")
    assert not ds.has_semantic and ds.has_masks
    assert "semantic" not in ds[0][1]


def test_segmentation_image_set_fallback(voc_root):
    (voc_root / "ImageSets/Segmentation").mkdir()
    (voc_root / "ImageSets/Segmentation/segonly.txt").write_text("img1\n")
    assert VOCDetection(voc_root, "segonly").ids == ["img1"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("<annotation><size>", r"img2.xml: malformed XML"),
        (xml("img2.png", [("unicorn", (1, 1, 5, 5), False)]), r"img2.xml: object 0 has class 'unicorn'"),
        (xml("img2.png", [("car", (1, 1, 5, 5), False), ("car", (1, 1, 60, 5), False)]), r"img2.xml: object 1 box"),
        (xml("img2.png", [("car", (8, 1, 5, 5), False)]), r"img2.xml: object 0 box .* empty"),
        (xml("img2.png", [("car", (1, 1, "x", 5), False)]), r"img2.xml: object 0: <xmax> is not a number"),
        ("<annotation><filename>img2.png</filename></annotation>", r"img2.xml: no <size>"),
        (xml("nothere.png", []), r"nothere.png: image file not found \(named by .*img2.xml\)"),
    ],
)
def test_bad_xml(voc_root, content, message):
    (voc_root / "Annotations/img2.xml").write_text(content)
    with pytest.raises(DatasetError, match=message):
        VOCDetection(voc_root, "train")


def test_bad_files(voc_root, tmp_path):
    with pytest.raises(DatasetError, match="VOC folder not found"):
        VOCDetection(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"test.txt: image list not found"):
        VOCDetection(voc_root, "test")
    (voc_root / "Annotations/img2.xml").unlink()
    with pytest.raises(DatasetError, match=r"img2.xml: annotation file not found"):
        VOCDetection(voc_root, "train")


def test_undecodable_image_and_bad_png(voc_root):
    ds = VOCDetection(voc_root, "train")
    (voc_root / "JPEGImages/img2.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetError, match=r"img2\.png: cannot decode image"):
        ds[1]
    palette_png(voc_root / "SegmentationClass/img1.png", np.full((H, W), 30))
    with pytest.raises(DatasetError, match=r"img1\.png: class index 30 beyond the 20 classes"):
        ds[0]
    palette_png(voc_root / "SegmentationClass/img1.png", np.zeros((H + 2, W)))
    with pytest.raises(DatasetError, match=r"img1.png: label image is 50 x 32, the image 50 x 30"):
        ds[0]
