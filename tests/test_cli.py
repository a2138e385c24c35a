"""The command line: a smoke run of train -> eval -> predict (a picture) for a detector, a segmenter
and the multi-label classifier; bench and demo; bad input as one message on stderr and exit status 2."""

import json
import os
import subprocess

import pytest
import torch
from engine_common import PYTHON, needs_matplotlib, one_thread, run_cli, tiny_train_args  # noqa: F401

import fastops
from fastops.cli import main
from fastops.engine import EngineError, demo

pytestmark = pytest.mark.usefixtures("one_thread")

# the folder holding the fastops under test (the source tree in a dev build, site-packages when installed)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(fastops.__file__)))


@pytest.mark.parametrize(
    ("model", "metric"),
    [
        ("fasterrcnn_small", "map"),
        ("unet_small", "miou"),
        ("multilabel_classifier", "macro_map"),
        ("panoptic_fpn_small", "pq"),
    ],
)
def test_train_eval_predict(tmp_path, capsys, model, metric):
    needs_matplotlib()
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *tiny_train_args(model, out))
    assert code == 0, err
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs[-1]["step"] == 2 and 0.0 <= epochs[-1][metric] <= 1.0
    assert (out / "last.pt").is_file() and (out / "training_curves.png").stat().st_size > 0

    code, stdout, err = run_cli(capsys, "eval", "--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "e"))
    assert code == 0, err
    printed = json.loads(stdout.strip().splitlines()[-1])
    assert printed[metric] == pytest.approx(epochs[-1][metric])  # the same validation images as in training
    assert json.loads((tmp_path / "e" / "eval.json").read_text())[metric] == printed[metric]
    if model == "fasterrcnn_small":
        assert (tmp_path / "e" / "pr_curve.png").stat().st_size > 0

    argv = ["predict", "--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "p"), "--images", "2"]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    picture = tmp_path / "p" / "predictions.png"
    assert stdout.strip() == str(picture)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_prints_a_row(capsys):
    argv = ["bench", "--model", "unet_small", "--batch-size", "1", "--image-size", "32", "--repeats", "1"]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 0, err
    row = stdout.strip().splitlines()[-1].split()
    assert row[0] == "unet_small" and float(row[-1]) > 0 and float(row[-2]) > 0


def test_demo_runs_and_draws(tmp_path, capsys, monkeypatch):
    needs_matplotlib()
    tiny = demo.DemoRecipe("fasterrcnn_small", steps=2, batch_size=2, lr=1e-3, image_size=64, num_images=4,
                           val_images=2, num_classes=3, warmup_steps=1)  # fmt: skip
    monkeypatch.setattr(demo, "QUICK_DEMO", tiny)
    code, stdout, err = run_cli(capsys, "demo", "--quick", "--out", str(tmp_path), "--no-progress")
    assert code == 0, err
    assert "COCO mAP" in stdout and "mAP@0.5" in stdout
    for name in ("predictions.png", "pr_curve.png", "training_curves.png"):
        assert (tmp_path / name).stat().st_size > 0


def _one_clear_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "--model", "no_such_model"], ["unknown model 'no_such_model'", "fasterrcnn_small"]),
        (["train", "--model", "unet_small", "--data", "imagenet"], ["unknown dataset 'imagenet'"]),
        (["train", "--model", "unet_small", "--data", "coco:/no/such/dir"], ["/no/such/dir"]),
        (["train", "--model", "unet_small", "--data", "voc:"], ["voc:"]),
        (["eval", "--checkpoint", "/no/such/file.pt"], ["/no/such/file.pt", "does not exist"]),
        (["bench", "--model", "unet_small", "nope"], ["unknown model 'nope'"]),
    ],
)
def test_bad_input_is_one_message_and_status_2(capsys, argv, words):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    _one_clear_line(err, *words)


def test_coco_layout_is_checked(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", "fasterrcnn_small", "--data", f"coco:{tmp_path}")
    assert code == 2
    _one_clear_line(err, "instances_train2017.json")


def test_a_broken_dataset_file_is_one_message(tmp_path, capsys):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "train2017").mkdir()
    (tmp_path / "val2017").mkdir()
    for split in ("train2017", "val2017"):
        (tmp_path / "annotations" / f"instances_{split}.json").write_text("{not json")
    code, _, err = run_cli(capsys, "train", "--model", "fasterrcnn_small", "--data", f"coco:{tmp_path}")
    assert code == 2
    _one_clear_line(err, "instances_train2017.json")


def test_checkpoint_of_another_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny_train_args("multilabel_classifier", out, 1, "--val-images", "0")) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "eval", "--checkpoint", str(out / "last.pt"), "--model", "unet_small")
    assert code == 2
    _one_clear_line(err, "'multilabel_classifier'", "not 'unet_small'")
    # resuming another model's run, and a file that is no checkpoint
    code, _, err = run_cli(capsys, *tiny_train_args("unet_small", out, 2, "--resume"))
    assert code == 2
    _one_clear_line(err, "'multilabel_classifier'", "not 'unet_small'")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "predict", "--checkpoint", str(tmp_path / "junk.pt"))
    assert code == 2
    _one_clear_line(err, "junk.pt", "cannot be read")


def test_debug_shows_the_traceback():
    with pytest.raises(EngineError, match="unknown model"):
        main(["train", "--model", "no_such_model", "--debug"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cuda_without_a_gpu(capsys):
    code, _, err = run_cli(capsys, "train", "--model", "unet_small", "--device", "cuda")
    assert code == 2
    _one_clear_line(err, "no CUDA device")


def test_console_script_target():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    module, _, name = scripts["fastops"].partition(":")
    assert (module, name) == ("fastops.cli", "main")
    assert main is __import__(module, fromlist=[name]).main


def test_python_dash_m_entry_point(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([PYTHON, "-m", "fastops", "train", "--model", "nope"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)  # fmt: skip
    assert r.returncode == 2
    _one_clear_line(r.stderr, "unknown model 'nope'")
    r = subprocess.run([PYTHON, "-m", "fastops", "train", "--help"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)  # fmt: skip
    assert r.returncode == 0
    assert "coco:PATH" in r.stdout and "instances_<split>.json" in r.stdout and "multilabel_classifier" in r.stdout


def _write_coco(root, split: str, count: int) -> None:
    """A COCO-layout copy of a few synthetic images: PNGs and an instances JSON (box polygons)."""
    from PIL import Image

    from fastops.data import SyntheticShapes

    ds = SyntheticShapes(count, image_size=(48, 64), num_classes=2, seed=5)
    (root / split).mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        image, target = ds[i]
        name = f"{i:04d}.png"
        Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()).save(root / split / name)
        images.append({"id": 10 + i, "file_name": name, "height": 48, "width": 64})
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            x1, y1, x2, y2 = box
            annotations.append({
                "id": len(annotations) + 1, "image_id": 10 + i, "category_id": 7 * label, "iscrowd": 0,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
            })  # fmt: skip
    categories = [{"id": 7, "name": "first"}, {"id": 14, "name": "second"}]
    doc = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("model", ["fasterrcnn_small", "maskrcnn_small"])
def test_train_and_eval_on_a_coco_folder(tmp_path, capsys, model):
    needs_matplotlib()
    pytest.importorskip("PIL")
    root = tmp_path / "coco"
    _write_coco(root, "mytrain", 4)
    _write_coco(root, "myval", 2)
    out = tmp_path / "run"
    argv = ["train", "--model", model, "--data", f"coco:{root}", "--train-split", "mytrain", "--val-split", "myval",
            "--steps", "2", "--batch-size", "2", "--out", str(out), "--no-progress", "--warmup-steps", "1"]  # fmt: skip
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["num_classes"] == 2 and state["class_names"] == ["first", "second"]
    code, stdout, err = run_cli(capsys, "eval", "--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "e"))
    assert code == 0, err
    assert 0.0 <= json.loads(stdout.strip().splitlines()[-1])["map"] <= 1.0


def _write_voc(root) -> None:
    """A VOC year folder: two images with boxes (one difficult) and class PNGs (a 255 border)."""
    import numpy as np
    from PIL import Image

    from fastops.data import VOC_CLASSES

    objects = {"a": [("dog", (2, 3, 20, 30), 0), ("cat", (25, 5, 60, 40), 1)], "b": [("car", (10, 10, 40, 30), 0)]}
    for d in ("Annotations", "JPEGImages", "ImageSets/Main", "SegmentationClass"):
        (root / d).mkdir(parents=True)
    for split in ("train", "val"):
        (root / "ImageSets/Main" / f"{split}.txt").write_text("a\nb\n")
    for k, (name, objs) in enumerate(objects.items()):
        rgb = np.random.default_rng(k).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "JPEGImages" / f"{name}.jpg")
        boxes = "".join(
            f"<object><name>{c}</name><difficult>{hard}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for c, b, hard in objs
        )
        size = "<size><width>64</width><height>48</height><depth>3</depth></size>"
        (root / "Annotations" / f"{name}.xml").write_text(f"<annotation><filename>{name}.jpg</filename>{size}{boxes}"
                                                           "</annotation>")  # fmt: skip
        classes = np.zeros((48, 64), np.uint8)
        for c, (x1, y1, x2, y2), _ in objs:
            classes[y1 - 1 : y2, x1 - 1 : x2] = VOC_CLASSES.index(c) + 1
        classes[0, :] = 255
        png = Image.fromarray(classes, mode="P")
        png.putpalette([(7 * i) % 256 for i in range(768)])
        png.save(root / "SegmentationClass" / f"{name}.png")


@pytest.mark.parametrize(("model", "metric"), [("fasterrcnn_small", "map"), ("unet_small", "miou")])
def test_train_and_eval_on_a_voc_folder(tmp_path, capsys, model, metric):
    pytest.importorskip("PIL")
    root = tmp_path / "VOC2012"
    _write_voc(root)
    out = tmp_path / "run"
    argv = ["train", "--model", model, "--data", f"voc:{root}", "--steps", "2", "--batch-size", "2", "--out", str(out),
            "--no-progress", "--warmup-steps", "1", "--sampler", "repeat_factor"]  # fmt: skip
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert 0.0 <= json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])[metric] <= 1.0
    assert torch.load(out / "last.pt", weights_only=False)["num_classes"] == 20
