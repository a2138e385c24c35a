"""fastops: fast, tested kernels for object detection and segmentation in PyTorch.

Ops are registered under ``torch.ops.fastops``; the functions here are their Python API. Where
torchvision has an op, ours has the same name, signature and results (``fastops.ops`` mirrors
``torchvision.ops``), and ``patch_torchvision()`` puts ours into torchvision itself.
"""

from . import metrics, nn, ops
from ._library import build_info, output_cache_bytes, release_output_cache, set_cpu_isa
from .ops import *  # noqa: F403
from .torchvision_patch import TorchvisionPatch, patch_torchvision, unpatch_torchvision

__version__ = "0.1.0"

__all__ = [
    "build_info",
    "metrics",
    "nn",
    "ops",
    "TorchvisionPatch",
    "output_cache_bytes",
    "patch_torchvision",
    "release_output_cache",
    "set_cpu_isa",
    "unpatch_torchvision",
    *ops.__all__,
]
