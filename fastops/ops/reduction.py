"""Loss reductions: their names, torch's codes for them, and torchvision's error for another name."""

from __future__ import annotations

from .errors import ArgumentError

__all__ = ["reduction_code"]


def reduction_code(reduction: str) -> int:
    """Torch's code for a reduction name: "none" 0, "mean" 1, "sum" 2. Another name raises
    ArgumentError (a ValueError) with torchvision's wording ("Invalid Value for arg 'reduction'")."""
    if reduction == "none":
        return 0
    if reduction == "mean":
        return 1
    if reduction == "sum":
        return 2
    raise ArgumentError(
        "Invalid Value for arg 'reduction': '" + reduction + "'; reduction must be one of 'none', 'mean', 'sum'"
    )
