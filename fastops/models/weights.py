"""Weights from a local file or a state_dict (nothing is ever downloaded).

``read_state_dict`` accepts a path to a ``torch.save``'d state_dict (or to a training checkpoint
holding one under "model" or "state_dict", as torchvision's reference scripts save them) or a
mapping of names to tensors; ``load_weights`` loads it into a model with ``strict=True`` after
dropping the entries of modules the model deliberately lacks (a classifier's ``fc`` in a backbone).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["Weights", "load_weights", "read_state_dict"]

Weights = str | os.PathLike | Mapping[str, Tensor]


def read_state_dict(weights: Weights) -> dict[str, Tensor]:
    """The state_dict in ``weights`` (a path or a mapping), on the CPU for a path."""
    if isinstance(weights, (str, os.PathLike)):
        obj = torch.load(os.fspath(weights), map_location="cpu", weights_only=True)
    elif isinstance(weights, Mapping):
        obj = weights
    else:
        raise TypeError(f"weights must be a path or a state_dict (a mapping of names to tensors), got {type(weights)}")
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError("weights: expected a state_dict mapping names to tensors")
    return dict(obj)


def load_weights(model: nn.Module, weights: Weights, *, drop_prefixes: Sequence[str] = ()) -> nn.Module:
    """Loads ``weights`` into ``model`` with ``strict=True``, first dropping the entries whose names
    start with one of ``drop_prefixes``. Returns the model."""
    state = read_state_dict(weights)
    if drop_prefixes:
        state = {k: v for k, v in state.items() if not k.startswith(tuple(drop_prefixes))}
    model.load_state_dict(state, strict=True)
    return model
