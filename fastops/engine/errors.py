"""The engine's user-facing error: bad input from the command line or a file (an unknown model or
dataset name, a missing path, a checkpoint from another model). The CLI prints its message alone
and exits with status 2."""

from __future__ import annotations

__all__ = ["EngineError"]


class EngineError(ValueError):
    """A mistake in what the user asked for; the message says what and how to fix it."""
