"""Progress of a training run: a tqdm bar with the loss and images/s when tqdm is installed and the
output is a terminal, else a plain line every ``log_every`` steps."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """``update(images, loss)`` after each step; ``close()`` at the end. Silent when not ``enabled``
    (processes other than rank 0)."""

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True, log_every: int = 10, desc: str = "train"):
        self.total, self.step, self.enabled, self.log_every, self.desc = total, initial, enabled, log_every, desc
        self.start = time.perf_counter()
        self.images = 0
        self.bar = None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)

    @property
    def images_per_second(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)

    def update(self, images: int, loss: float) -> None:
        self.step += 1
        self.images += images
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{self.images_per_second:.1f}", refresh=False)
            self.bar.update(1)
        elif self.step % self.log_every == 0 or self.step == self.total:
            print(
                f"{self.desc} step {self.step}/{self.total}  loss {loss:.4f}  {self.images_per_second:.1f} images/s",
                flush=True,
            )

    def write(self, line: str) -> None:
        """Prints a line (above the bar, when there is one)."""
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
