"""Helpers for the engine and CLI tests: tiny training arguments (few steps, few small images)."""

import sys

import pytest
import torch

from fastops.cli import main

# fasterrcnn_small resizes every image to 128 pixels; the others run at the given size
TINY = {
    "fasterrcnn_small": ["--image-size", "64"],
    "unet_small": ["--image-size", "32"],
    "multilabel_classifier": ["--image-size", "32"],
    "panoptic_fpn_small": ["--image-size", "64"],
}


def tiny_train_args(model: str, out, steps: int = 2, *extra: str) -> list[str]:
    return [
        "train", "--model", model, "--out", str(out), "--steps", str(steps), "--batch-size", "2",
        "--num-images", "6", "--val-images", "2", "--num-classes", "3", "--warmup-steps", "1", "--no-progress",
        *TINY.get(model, []), *extra,
    ]  # fmt: skip


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``fastops`` with ``argv``, in this process."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def needs_matplotlib():
    return pytest.importorskip("matplotlib")


PYTHON = sys.executable


@pytest.fixture
def one_thread():
    """One CPU thread for the test: these tests check the flow, and on a busy 2-core machine two
    threads of tiny models wait on each other far longer than they compute."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
