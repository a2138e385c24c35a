"""Build-time metadata: the wheel requires exactly the torch release it is built against.

A compiled torch extension runs only with the torch it was built against (``fastops._library``
refuses any other release at import), so the wheel's ``Requires-Dist`` pins that release and pip
cannot pair the wheel with another one. scikit-build-core calls this as a ``[[tool.dynamic-metadata]]``
provider (pyproject.toml); the build runs without isolation, so ``torch`` is the installed one.
"""

from __future__ import annotations


def torch_requirement(version: str) -> str:
    """``torch==X.Y.Z`` for a torch version string such as ``2.14.1+cu130`` (the local part dropped:
    pip compares releases, and one release is one C++ ABI)."""
    return "torch==" + version.split("+")[0]


def dynamic_metadata(settings, project):
    if settings.keys() - {"field"}:
        raise RuntimeError(f"torch_requirement takes no settings, got {sorted(settings)}")
    import torch

    return {"dependencies": [torch_requirement(torch.__version__)]}
