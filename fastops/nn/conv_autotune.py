"""The measured half of the convolution modules' ``path="auto"``: on the first call with a new
problem, time our kernels and torch's on that call's tensors (for a channels_last input, also
torch's on an NCHW copy: ``TORCH_NCHW``) and keep the fastest, as cuDNN's benchmark mode does.

A problem is everything the speed depends on: the module kind, the input's shape, memory layout,
dtype and device, the module's hyper-parameters, which gradients the call will need (a forward
under ``torch.no_grad`` and a training forward whose backward follows are different problems), the
CPU thread count and the CPU instruction set in use. Each candidate runs once untimed (first-call
allocations, weight packing), then the candidates alternate up to ``REPEATS`` times (stopping early
once one is ``CLEAR_RATIO`` times faster than the other) and each keeps its fastest call; one
replaces the fixed rule's choice (the fallback) only when it is more than ``MARGIN`` faster, so
noise does not flip a tie. The choice is cached for the process.

Results stay deterministic: both implementations are deterministic, and a problem's path never
changes after its first call, so every later call gives the same bits. Two processes can choose
differently (the last bits of float32 results then differ between them); ``set_conv_autotune(False)``
(or ``FASTOPS_CONV_AUTOTUNE=0`` in the environment) uses the fixed rule only, and
``autotune_choices`` / ``load_autotune_choices`` save and restore a process's choices.

No timing happens while torch.compile traces (a cached choice is used, else the fixed rule), nor
when autotuning is off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import torch

from .. import _library

__all__ = [
    "CHOICES",
    "CLEAR_RATIO",
    "MARGIN",
    "REPEATS",
    "TORCH_NCHW",
    "autotune_choices",
    "clear_autotune_choices",
    "conv_autotune_enabled",
    "load_autotune_choices",
    "measured_choice",
    "problem_key",
    "set_conv_autotune",
    "time_call",
    "time_candidate",
]

REPEATS = 3
TORCH_NCHW = "torch-nchw"  # torch's convolution on an NCHW copy of a channels_last input
CHOICES = ("fastops", "torch", TORCH_NCHW)
MARGIN = 0.05
CLEAR_RATIO = 1.5

_state = {"enabled": os.environ.get("FASTOPS_CONV_AUTOTUNE", "1") != "0"}
_choices: dict[tuple, str] = {}


def set_conv_autotune(enabled: bool) -> bool:
    """Turns the measured choice of ``path="auto"`` on or off (off: the fixed rule alone);
    returns the previous setting. The default is on, unless FASTOPS_CONV_AUTOTUNE=0."""
    previous = _state["enabled"]
    _state["enabled"] = bool(enabled)
    return previous


def conv_autotune_enabled() -> bool:
    return _state["enabled"]


def autotune_choices() -> dict[tuple, str]:
    """A copy of the choices made so far: problem key -> one of ``CHOICES``."""
    return dict(_choices)


def load_autotune_choices(choices: Mapping[tuple, str]) -> None:
    """Adds saved choices (from ``autotune_choices``), e.g. to repeat another process's paths."""
    for key, path in choices.items():
        if path not in CHOICES:
            raise ValueError(f"a choice must be one of {CHOICES}, got {path!r} for {key!r}")
        _choices[tuple(key)] = path


def clear_autotune_choices() -> None:
    _choices.clear()


@torch.compiler.assume_constant_result
def _environment() -> tuple[int, str]:
    """The CPU thread count and instruction set (a constant of a torch.compile trace)."""
    return torch.get_num_threads(), _library.cpu_isa()


def problem_key(kind: str, input: torch.Tensor, grads: tuple[bool, ...], *params) -> tuple:
    """The cache key of one problem (module docstring): plain Python values only."""
    layout = "channels_last" if input.dim() == 4 and input.is_contiguous(memory_format=torch.channels_last) else ""
    return (
        kind,
        tuple(int(s) for s in input.shape),
        layout,
        str(input.dtype),
        str(input.device),
        grads,
        *_environment(),
        *params,
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(run: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``run`` takes (the device synchronized before and after)."""
    _synchronize(device)
    start = time.perf_counter()
    run()
    _synchronize(device)
    return time.perf_counter() - start


def time_candidate(name: str, run: Callable[[], object], device: torch.device) -> float:
    """The timer ``measured_choice`` uses: ``time_call`` (tests replace this to script the times
    of each named candidate)."""
    return time_call(run, device)


@torch.compiler.assume_constant_result
def _cached(key: tuple, fallback: str) -> str:
    return _choices.get(key, fallback)


def measured_choice(
    key: tuple, make_candidates: Callable[[], Mapping[str, Callable[[], object]]], device, fallback: str
) -> str:
    """The path for the problem ``key``: cached, else measured by running each candidate
    (``make_candidates()`` returns name -> a call of that path on the problem's tensors, built
    only when measuring; module docstring), else ``fallback`` (autotuning off, tracing under
    torch.compile, or a candidate that raises: then nothing is cached and the real call reports the
    error)."""
    if not _state["enabled"] or torch.compiler.is_compiling():
        return _cached(key, fallback)
    if key in _choices:
        return _choices[key]
    device = torch.device(device)
    times: dict[str, float] = {}
    try:
        candidates = make_candidates()
        for run in candidates.values():
            run()
        for _ in range(REPEATS):
            for name, run in candidates.items():
                elapsed = time_candidate(name, run, device)
                times[name] = min(times.get(name, elapsed), elapsed)
            if max(times.values()) > CLEAR_RATIO * min(times.values()):
                break  # a clear winner: no more rounds
    except Exception:
        return fallback
    best = min(times, key=times.get)
    choice = best if fallback not in times or times[best] < (1 - MARGIN) * times[fallback] else fallback
    _choices[key] = choice
    return choice
