"""Training checkpoints: everything a resumed run needs to continue as if never stopped (model,
optimizer, scheduler, sampler, epoch and step, every process's RNG states for torch, CUDA, numpy and
Python), written atomically (a temporary file, then ``os.replace``), so an interrupted write leaves
the previous checkpoint intact."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import EngineError

__all__ = ["FORMAT", "load_checkpoint", "model_state", "restore_rng", "rng_state", "save_checkpoint"]

FORMAT = "fastops-train-1"


def rng_state() -> dict:
    """This process's random number generators."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str, state: dict) -> None:
    """Writes ``state`` (with ``format`` added) to ``path`` atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save({"format": FORMAT, **state}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: str, *, model_name: str | None = None, num_classes: int | None = None) -> dict:
    """A checkpoint written by ``save_checkpoint``; EngineError when the file is missing, is not a
    fastops training checkpoint, or was written for another model or number of classes."""
    if not os.path.isfile(path):
        raise EngineError(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: say which, not how unpickling failed
        raise EngineError(f"checkpoint {path!r} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise EngineError(f"{path!r} is not a fastops training checkpoint (written by `fastops train`)")
    if model_name is not None and state["model_name"] != model_name:
        raise EngineError(
            f"checkpoint {path!r} holds a {state['model_name']!r} model, not {model_name!r} "
            f"(use --model {state['model_name']} or another checkpoint)"
        )
    if num_classes is not None and state["num_classes"] != num_classes:
        raise EngineError(
            f"checkpoint {path!r} was trained for {state['num_classes']} classes, the dataset has {num_classes}"
        )
    return state


def model_state(model: torch.nn.Module) -> dict:
    """The model's state_dict (of the module inside DistributedDataParallel)."""
    return getattr(model, "module", model).state_dict()
