"""Single-object localization: a backbone with a box head and a class head."""

from .localizer import SingleObjectLocalizer, localizer_small

__all__ = ["SingleObjectLocalizer", "localizer_small"]
