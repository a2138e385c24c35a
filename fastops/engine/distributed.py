"""Multi-process training under ``torchrun``: the process group (gloo on CPU, nccl on GPU) from
torchrun's environment variables, and the few collectives the engine needs. Every helper also works
in a single process (no process group): it then does nothing or returns its input."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Context", "all_gather_objects", "all_reduce_mean", "all_reduce_sum", "barrier", "setup", "shutdown"]


@dataclass(frozen=True)
class Context:
    """This process's place: ``rank`` of ``world_size``, and the device it trains on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> Context:
    """Joins torchrun's process group when WORLD_SIZE > 1 (gloo for "cpu", nccl for "cuda", one
    GPU per local rank) and returns this process's context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if world_size > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Context(rank, dist.get_world_size() if dist.is_initialized() else 1, dev)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every process ([obj] in a single process)."""
    if not _active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sums ``tensor`` over the processes in place (on the backend's device) and returns it."""
    if _active():
        on_device = tensor.to(_backend_device())
        dist.all_reduce(on_device)
        tensor.copy_(on_device)
    return tensor


def all_reduce_mean(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each scalar's mean over the processes (one collective for all of them), as Python floats."""
    stacked = torch.stack([v.detach().reshape(()).double() for v in values.values()])
    if _active():
        stacked = stacked.to(_backend_device())
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(values, stacked.tolist()))


def barrier() -> None:
    if _active():
        dist.barrier()


def _backend_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
