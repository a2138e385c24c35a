"""Checkpoints: a run stopped halfway and resumed gives the losses of an uninterrupted run (model,
optimizer, scheduler, sampler and random states restored), across an epoch boundary and with a
class-balanced sampler; checkpoints are written atomically and name their model."""

import os

import pytest
import torch
from engine_common import one_thread  # noqa: F401

from fastops import engine
from fastops.engine import EngineError, TrainConfig, read_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(out, **kwargs) -> TrainConfig:
    base = dict(
        model="fasterrcnn_small", out=str(out), steps=6, batch_size=2, num_images=6, val_images=2, num_classes=3,
        image_size=64, warmup_steps=2, progress=False,
    )  # fmt: skip
    return TrainConfig(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("fasterrcnn_small", {}),
        ("fasterrcnn_small", {"augment": ("flip", "erasing", "copy_paste")}),
        ("multilabel_classifier", {"sampler": "class_balanced", "image_size": 32}),
    ],
)
def test_resume_gives_the_uninterrupted_losses(tmp_path, model, extra):
    # 6 images, batch 2: 3 steps per epoch, so the stop (step 4) is inside the second epoch,
    # after an epoch's end, an evaluation and a checkpoint
    straight = engine.train(_config(tmp_path / "a", model=model, **extra))
    engine.train(_config(tmp_path / "b", model=model, stop_at_step=4, **extra))
    interrupted = read_jsonl(os.path.join(tmp_path, "b", "steps.jsonl"))
    assert [r["step"] for r in interrupted] == [1, 2, 3, 4]
    resumed = engine.train(_config(tmp_path / "b", model=model, resume=True, **extra))
    a = read_jsonl(os.path.join(tmp_path, "a", "steps.jsonl"))
    b = read_jsonl(os.path.join(tmp_path, "b", "steps.jsonl"))
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    assert [(r["loss"], r["lr"], r["epoch"]) for r in a] == [(r["loss"], r["lr"], r["epoch"]) for r in b]
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    assert straight.metrics == resumed.metrics


def test_resume_drops_log_lines_written_after_the_checkpoint(tmp_path):
    small = {"model": "multilabel_classifier", "image_size": 32}
    engine.train(_config(tmp_path, steps=4, stop_at_step=2, **small))
    with open(tmp_path / "steps.jsonl", "a") as f:
        f.write('{"step": 3, "epoch": 0, "loss": 123.0, "lr": 0.0}\n')  # a step the checkpoint never saw
    engine.train(_config(tmp_path, steps=4, resume=True, **small))
    steps = read_jsonl(tmp_path / "steps.jsonl")
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert 123.0 not in [r["loss"] for r in steps]


def test_resume_without_a_checkpoint(tmp_path):
    with pytest.raises(EngineError, match="does not exist"):
        engine.train(_config(tmp_path, resume=True))


def test_checkpoint_contents_and_atomic_write(tmp_path):
    engine.train(_config(tmp_path, steps=2, model="multilabel_classifier", image_size=32))
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "metrics.jsonl", "steps.jsonl", "training_curves.png"]
    state = engine.load_checkpoint(str(tmp_path / "last.pt"), model_name="multilabel_classifier", num_classes=3)
    for key in ("model", "optimizer", "scheduler", "sampler", "rng", "conv_paths", "step", "epoch", "config"):
        assert key in state
    assert state["step"] == 2 and len(state["rng"]) == 1
    with pytest.raises(EngineError, match="holds a 'multilabel_classifier' model, not 'unet_small'"):
        engine.load_checkpoint(str(tmp_path / "last.pt"), model_name="unet_small")
    with pytest.raises(EngineError, match="trained for 3 classes"):
        engine.load_checkpoint(str(tmp_path / "last.pt"), num_classes=5)


def test_an_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "last.pt")
    engine.save_checkpoint(path, {"model_name": "m", "num_classes": 1, "step": 1})

    def fail(obj, f, *args, **kwargs):
        with open(f, "wb") as h:
            h.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        engine.save_checkpoint(path, {"model_name": "m", "num_classes": 1, "step": 2})
    monkeypatch.undo()
    assert engine.load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


def test_a_killed_writer_leaves_the_last_complete_checkpoint(tmp_path):
    """A child process writes checkpoints of 8 MB in a loop and is killed (SIGKILL) at several moments;
    the file on disk is always a complete, loadable checkpoint."""
    import signal
    import subprocess
    import sys
    import time

    path = str(tmp_path / "last.pt")
    writer = (
        "import sys, torch\n"
        "from fastops.engine import save_checkpoint\n"
        "step = 0\n"
        "while True:\n"
        "    step += 1\n"
        "    save_checkpoint(sys.argv[1], {'model_name': 'm', 'num_classes': 1, 'step': step,\n"
        "                                  'weights': torch.full((2**21,), float(step))})\n"
        "    print(step, flush=True)\n"
    )
    for delay in (0.05, 0.2, 0.5):
        child = subprocess.Popen([sys.executable, "-c", writer, path], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
        assert child.stdout.readline().strip() == "1"  # one complete write before the kill
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        state = engine.load_checkpoint(path)
        assert torch.equal(state["weights"], torch.full((2**21,), float(state["step"])))
