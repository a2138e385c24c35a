"""Fake (meta) kernels that first check their tensors' devices.

The dispatcher sends a call to the Meta kernel as soon as one tensor argument is a meta tensor,
so a meta weight beside CPU inputs would reach the fake kernel, which allocates its output like
the first input: an uninitialised CPU tensor returned as if computed. Every op's fake kernel is
registered through ``register_fake`` here, which rejects tensors on different devices with the
error the real kernels raise for the same mistake. The layout helpers give the fake results the
memory format the kernels give theirs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _devices(value, found: list) -> None:
    if isinstance(value, torch.Tensor):
        found.append(value.device)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _devices(v, found)


def check_one_device(op: str, args: tuple) -> None:
    """RuntimeError naming the op and the devices when the tensors in ``args`` (lists included)
    are not all on one device."""
    found: list = []
    _devices(args, found)
    if any(d != found[0] for d in found[1:]):
        devices = ", ".join(sorted({str(d) for d in found}))
        raise RuntimeError(f"{op}: every tensor argument must be on one device, got tensors on {devices}")


def register_fake(op: str) -> Callable[[Callable], Callable]:
    """``torch.library.register_fake(op)`` for ``fn``, with the device check in front."""

    def register(fn: Callable) -> Callable:
        def checked(*args, **kwargs):
            check_one_device(op, args)
            return fn(*args, **kwargs)

        torch.library.register_fake(op)(checked)
        return fn

    return register


def is_channels_last(t: torch.Tensor) -> bool:
    """The kernels' layout rule: a 4-D tensor in channels_last (NHWC) memory that is not also NCHW
    memory (sizes of 1 make some both); such maps give their results in channels_last."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def empty_in_layout(shape, like: torch.Tensor, channels_last: bool, dtype=None) -> torch.Tensor:
    """An uninitialised tensor on ``like``'s device, in channels_last memory or NCHW."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device, memory_format=fmt)
