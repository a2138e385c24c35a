"""Detection ops, named and called as in ``torchvision.ops`` where torchvision has them.

Each op family's module (``fastops/ops/<family>.py``) lists its public functions in ``__all__``;
they are re-exported here. (A function may share its family's name, as ``box_iou`` does, so the
modules are imported under private names.)
"""

from . import box_iou as _box_iou
from .box_iou import *  # noqa: F403

__all__ = [*_box_iou.__all__]
