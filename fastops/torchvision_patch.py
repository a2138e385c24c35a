"""``patch_torchvision()``: torchvision's detection ops and RoI modules replaced by fastops' wherever
torchvision's own code looks them up, so unchanged torchvision code (its detection models'
training and inference included) runs on fastops' kernels; ``unpatch_torchvision()`` restores them.

Swapped: the functions ``nms``, ``batched_nms``, ``box_iou``, ``generalized_box_iou``,
``distance_box_iou``, ``complete_box_iou``, ``generalized_box_iou_loss``, ``distance_box_iou_loss``,
``complete_box_iou_loss``, ``sigmoid_focal_loss``, ``roi_align``, ``roi_pool`` and the module classes
``RoIAlign``, ``RoIPool``, ``MultiScaleRoIAlign``: every attribute of every loaded torchvision
module that holds one of them (``torchvision.ops`` and its submodules ``boxes``, ``poolers``,
``roi_align``, ..., and ``torchvision.models.detection.*``, which import them by name), so a
torchvision function calling another (``batched_nms`` -> ``nms``, the poolers -> ``roi_align``)
reaches ours too. ``box_iou``'s replacement hands torchvision's rotated formats to torchvision's own
function. Modules imported after the patch import the patched names.

Not reached: what was captured before the patch. A model built before it keeps its RoI module
instances (torchvision's ``MultiScaleRoIAlign`` then pools each level with the patched
``roi_align``) and the ``box_similarity`` attribute of its RPN and RoI heads (torchvision's
``box_iou``, used by the RPN's anchor matching): build models after patching.

Results are torchvision's: see the README's compatibility section for what differs and why.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch
from torch import Tensor

from . import nn as fastops_nn
from . import ops as fastops_ops

__all__ = ["TorchvisionPatch", "patch_torchvision", "unpatch_torchvision"]

_REPLACED_FUNCTIONS = (
    "nms",
    "batched_nms",
    "generalized_box_iou",
    "distance_box_iou",
    "complete_box_iou",
    "generalized_box_iou_loss",
    "distance_box_iou_loss",
    "complete_box_iou_loss",
    "sigmoid_focal_loss",
    "roi_align",
    "roi_pool",
)
_REPLACED_MODULES = ("RoIAlign", "RoIPool", "MultiScaleRoIAlign")

# torchvision's box_iou, for the rotated formats fastops does not compute (set by patch_torchvision)
_torchvision_box_iou = None


def box_iou(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> Tensor:
    """``fastops.box_iou`` for the axis-aligned formats, torchvision's own for the rotated ones
    (eager Python; scripted, the rotated formats raise, as fastops.box_iou)."""
    # two ifs: TorchScript skips the body of `if not torch.jit.is_scripting()`, not the rest of an `and`
    if not torch.jit.is_scripting():  # noqa: SIM102
        if fmt not in ("xyxy", "xywh", "cxcywh") and _torchvision_box_iou is not None:
            return _torchvision_box_iou(boxes1, boxes2, fmt)
    return fastops_ops.box_iou(boxes1, boxes2, fmt)


_originals: dict[int, tuple[object, object]] = {}  # id(torchvision's object) -> (it, fastops')
_applied: list[tuple[ModuleType, str, object]] = []  # (module, attribute, torchvision's object)


def _torchvision_modules() -> list[ModuleType]:
    import torchvision.models.detection
    import torchvision.ops  # noqa: F401

    return [
        m
        for name, m in list(sys.modules.items())
        if isinstance(m, ModuleType) and (name == "torchvision" or name.startswith("torchvision."))
    ]


def _replacements() -> dict[int, tuple[object, object]]:
    """torchvision's objects (found in torchvision.ops on the first call) and their replacements."""
    global _torchvision_box_iou
    if not _originals:
        import torchvision.ops as tv

        pairs = [(getattr(tv, name), getattr(fastops_ops, name)) for name in _REPLACED_FUNCTIONS]
        pairs += [(getattr(tv, name), getattr(fastops_nn, name)) for name in _REPLACED_MODULES]
        pairs.append((tv.box_iou, box_iou))
        _torchvision_box_iou = tv.box_iou
        _originals.update({id(original): (original, ours) for original, ours in pairs})
    return _originals


class TorchvisionPatch:
    """What ``patch_torchvision()`` returns: as a context manager, its exit unpatches unless
    torchvision was already patched when it was entered."""

    def __init__(self, was_patched: bool):
        self._was_patched = was_patched

    def __enter__(self) -> TorchvisionPatch:
        return self

    def __exit__(self, *exc) -> None:
        if not self._was_patched:
            unpatch_torchvision()


def patch_torchvision() -> TorchvisionPatch:
    """Replaces torchvision's detection ops and RoI modules by fastops' in every loaded torchvision
    module (see the module docstring). Calling it again patches what was imported since.

    Use it as a call (``fastops.patch_torchvision()``, undone by ``unpatch_torchvision()``) or as a
    context manager (``with fastops.patch_torchvision(): ...``, undone on exit).
    """
    was_patched = bool(_applied)
    replacements = _replacements()
    for module in _torchvision_modules():
        for name, value in list(vars(module).items()):
            pair = replacements.get(id(value))
            if pair is not None and pair[0] is value:
                setattr(module, name, pair[1])
                _applied.append((module, name, value))
    return TorchvisionPatch(was_patched)


def unpatch_torchvision() -> None:
    """Restores torchvision's own objects wherever a fastops one stands in for them, including
    names that modules imported while patched took from the patched modules."""
    if not _originals:
        return
    restore = {id(ours): original for original, ours in _originals.values()}
    for module, name, original in _applied:
        if id(getattr(module, name, None)) in restore:
            setattr(module, name, original)
    _applied.clear()
    for module in _torchvision_modules():
        for name, value in list(vars(module).items()):
            original = restore.get(id(value))
            if original is not None:
                setattr(module, name, original)
