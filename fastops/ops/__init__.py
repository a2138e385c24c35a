"""Detection ops, named and called as in ``torchvision.ops`` where torchvision has them.

Each op family's module (``fastops/ops/<family>.py``) lists its public functions in ``__all__``;
they are re-exported here. (A function may share its family's name, as ``box_iou`` and ``nms``
do, so the modules are imported under private names.)
"""

from . import box_iou as _box_iou
from . import conv as _conv
from . import focal_loss as _focal_loss
from . import nms as _nms
from . import roi_align as _roi_align
from .box_iou import *  # noqa: F403
from .conv import *  # noqa: F403
from .focal_loss import *  # noqa: F403
from .nms import *  # noqa: F403
from .roi_align import *  # noqa: F403

__all__ = [*_box_iou.__all__, *_conv.__all__, *_focal_loss.__all__, *_nms.__all__, *_roi_align.__all__]
