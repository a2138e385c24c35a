"""The data layer's exception type."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset file or annotation that cannot be read: the message names the file (and the
    annotation id where there is one). A ValueError, so code catching bad input keeps working."""
