"""Detection ops, named and called as in ``torchvision.ops`` where torchvision has them.

Each op family's module (``fastops/ops/<family>.py``) lists its public functions in ``__all__``;
they are re-exported here. (A function may share its family's name, as ``box_iou`` and ``nms``
do, so the modules are imported under private names.)

``torchvision.ops`` also holds the RoI pooling modules; they live in ``fastops.nn`` (every
``nn.Module`` does) and are re-exported here too, so ``from fastops.ops import RoIAlign`` works as
``from torchvision.ops import RoIAlign`` does. This re-export is the one place a lower layer names a
higher one; it is resolved on first access (``__getattr__``), so importing the ops never imports
``fastops.nn``. The import contract in ``pyproject.toml`` lists it as its only exception.
"""

from .. import _library  # noqa: F401  (loads the compiled ops before their Python sides register)
from . import (
    _double_backward,  # noqa: F401  (second-order gradients raise, never come out zero)
    quantized,  # noqa: F401  (registers the QuantizedCPU kernels of nms and roi_align)
)
from . import box_iou as _box_iou
from . import conv as _conv
from . import errors as _errors
from . import focal_loss as _focal_loss
from . import hungarian_match as _hungarian_match
from . import nms as _nms
from . import paste_masks as _paste_masks
from . import roi_align as _roi_align
from . import selective_search as _selective_search
from .box_iou import *  # noqa: F403
from .conv import *  # noqa: F403
from .errors import *  # noqa: F403
from .focal_loss import *  # noqa: F403
from .hungarian_match import *  # noqa: F403
from .nms import *  # noqa: F403
from .paste_masks import *  # noqa: F403
from .roi_align import *  # noqa: F403
from .selective_search import *  # noqa: F403

_TORCHVISION_MODULES = ("MultiScaleRoIAlign", "RoIAlign", "RoIPool")

__all__ = [
    *_box_iou.__all__,
    *_conv.__all__,
    *_errors.__all__,
    *_focal_loss.__all__,
    *_hungarian_match.__all__,
    *_nms.__all__,
    *_paste_masks.__all__,
    *_roi_align.__all__,
    *_selective_search.__all__,
    *_TORCHVISION_MODULES,
]


def __getattr__(name: str):
    if name in _TORCHVISION_MODULES:
        from ..nn import roi

        return getattr(roi, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
