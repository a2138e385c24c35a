"""The exception types of the ops: each is also the type torch or torchvision raises for the
same mistake, so code written to catch theirs catches ours, while our messages name the argument.

=============================================  ===========================  =========================
mistake                                        fastops raises               torchvision raises
=============================================  ===========================  =========================
a bad shape or value (nms, roi_align, ...)     ``ArgumentError``            RuntimeError
a bad dtype                                    ``ArgumentTypeError``        RuntimeError
RoI boxes that are not [K, 5] or [L, 4]        ``BoxesShapeError``          AssertionError
quantized roi_align input with N > 1 images    RuntimeError                 RuntimeError
an unknown reduction (losses)                  ValueError ("Invalid ...")   ValueError ("Invalid ...")
an alpha above 1 (sigmoid_focal_loss)          ValueError ("Invalid ...")   ValueError ("Invalid ...")
tensors on different devices                   RuntimeError                 RuntimeError
=============================================  ===========================  =========================

``ArgumentError`` is a ValueError and a RuntimeError, ``ArgumentTypeError`` a TypeError and a
RuntimeError, ``BoxesShapeError`` a ValueError and an AssertionError. The kernels' own checks
raise ValueError and TypeError (their C++ messages); the public functions re-raise them as the
two argument classes. Under TorchScript every error is TorchScript's ``torch.jit.Error``, for
torchvision's functions as for ours.
"""

from __future__ import annotations

__all__ = ["ArgumentError", "ArgumentTypeError", "BoxesShapeError"]


class ArgumentError(ValueError, RuntimeError):
    """A bad argument shape or value: a ValueError, and the RuntimeError torch and torchvision raise."""


class ArgumentTypeError(TypeError, RuntimeError):
    """A bad argument dtype: a TypeError, and the RuntimeError torch and torchvision raise."""


class BoxesShapeError(ValueError, AssertionError):
    """RoI boxes of the wrong shape: a ValueError, and the AssertionError torchvision raises."""


def as_torch_error(error: Exception) -> Exception:
    """A plain ValueError or TypeError (a kernel's check) as ArgumentError or ArgumentTypeError,
    same message; any other exception (ours included) unchanged."""
    if type(error) is ValueError:
        return ArgumentError(*error.args)
    if type(error) is TypeError:
        return ArgumentTypeError(*error.args)
    return error
