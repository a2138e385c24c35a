"""A training run's logs in its output folder: ``steps.jsonl`` (one JSON line per step) and
``metrics.jsonl`` (one per epoch), the per-epoch averages, and the training-curves picture."""

from __future__ import annotations

import json
import os
import time

__all__ = ["EpochStats", "RunLogs", "format_record", "read_jsonl"]


def read_jsonl(path: str) -> list[dict]:
    """The records of a JSON-lines file ([] when it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class RunLogs:
    """The two logs of the run in ``out``; only the main process writes them."""

    def __init__(self, out: str):
        self.out = out
        self.steps = os.path.join(out, "steps.jsonl")
        self.epochs = os.path.join(out, "metrics.jsonl")

    def start(self) -> None:
        """A new run: empty logs."""
        for path in (self.steps, self.epochs):
            if os.path.exists(path):
                os.remove(path)

    def resume(self, last_step: int) -> None:
        """Drops the records after ``last_step``: steps taken after the checkpoint a run resumes
        from are taken again."""
        for path in (self.steps, self.epochs):
            kept = [r for r in read_jsonl(path) if r["step"] <= last_step]
            with open(path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)

    def step(self, record: dict) -> None:
        _append(self.steps, record)

    def epoch(self, record: dict) -> None:
        _append(self.epochs, record)

    def draw(self) -> None:
        """``training_curves.png`` from both logs (nothing without matplotlib)."""
        from .plots import MissingPlotLibrary, plot_training_curves

        try:
            path = os.path.join(self.out, "training_curves.png")
            plot_training_curves(read_jsonl(self.steps), read_jsonl(self.epochs), path)
        except MissingPlotLibrary:
            pass


def _append(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


class EpochStats:
    """Mean losses and throughput over the steps of one epoch (of this run)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.images = 0
        self.start = time.perf_counter()

    def add(self, losses: dict[str, float], images: int) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1
        self.images += images

    def summary(self) -> dict:
        seconds = time.perf_counter() - self.start
        means = {k: v / max(1, self.steps) for k, v in self.sums.items()}
        return {**means, "images_per_s": self.images / max(seconds, 1e-9), "seconds": seconds}


def format_record(record: dict) -> str:
    """One line: "key value" pairs, floats to 4 decimals."""
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
    return "  ".join(f"{k} {v}" for k, v in shown.items())
