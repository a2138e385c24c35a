"""Loads the compiled extension fastops._C, after checking it matches the installed torch.

A compiled torch extension runs only with the torch it was built against: under another version it
fails to load with undefined symbols, or loads and crashes. The build writes the version it used
into fastops/_build_config.py; this module compares it with the running torch first and says what
to do when they differ.
"""

from __future__ import annotations

import torch


def _base(version: str) -> str:
    return version.split("+")[0]


def check_torch_compat(
    built: str, built_cuda: str, cuda_compiled: bool, installed: str, installed_cuda: str | None
) -> None:
    """Raises ImportError when a build made against torch ``built`` cannot run under ``installed``."""
    if _base(built) != _base(installed):
        raise ImportError(
            f"fastops was built against torch {built}, but torch {installed} is installed. "
            f"A compiled extension runs only with the torch it was built against: install "
            f"torch=={_base(built)}, or rebuild fastops for this torch with "
            f"`pip install --no-build-isolation --force-reinstall <fastops source>`."
        )
    if cuda_compiled and not installed_cuda:
        raise ImportError(
            f"fastops was built with CUDA kernels against torch {built} (CUDA {built_cuda}), but the "
            f"installed torch {installed} is a CPU-only build. Install a CUDA build of torch, or "
            f"rebuild fastops with FASTOPS_CUDA=0 for a CPU-only build."
        )
    if cuda_compiled and installed_cuda and built_cuda.split(".")[0] != installed_cuda.split(".")[0]:
        raise ImportError(
            f"fastops was built for CUDA {built_cuda} (torch {built}), but the installed torch "
            f"{installed} uses CUDA {installed_cuda}; rebuild fastops against this torch."
        )


try:
    from . import _build_config
except ImportError as e:  # a source checkout that was never built
    raise ImportError(
        "fastops is not built: install it with `pip install --no-build-isolation .` from the "
        "source tree (and do not import it from inside the source folder)."
    ) from e

check_torch_compat(
    _build_config.TORCH_VERSION,
    _build_config.TORCH_CUDA_VERSION,
    _build_config.CUDA_COMPILED,
    torch.__version__,
    torch.version.cuda,
)

try:
    from . import _C  # registers every op under torch.ops.fastops
except ImportError as e:
    raise ImportError(f"fastops._C failed to load ({e}); rebuild fastops against the installed torch.") from e

_CPU_ISAS = ("default", "avx2", "avx512")


def build_info() -> dict:
    """How this fastops was built, and what it uses on this machine.

    Returns a dict with: ``torch_version`` (the torch it was built against), ``cuda`` (whether CUDA
    kernels are compiled in), ``cuda_archs`` (their CUDA architectures, CMake notation),
    ``nvcc_version``, ``cpu_isa`` (the instruction set the CPU kernels use now),
    ``cpu_isa_detected`` (the best one this CPU has) and ``num_threads`` (CPU threads of the kernels).
    """
    info = dict(_C.compiled_info())
    info["nvcc_version"] = _build_config.NVCC_VERSION
    return info


_cpu_isa_in_use = _C.compiled_info()["cpu_isa"]


def cpu_isa() -> str:
    """The instruction set the CPU kernels use now ("default", "avx2" or "avx512")."""
    return _cpu_isa_in_use


def set_cpu_isa(name: str) -> str:
    """Caps the instruction set of the CPU kernels ("default", "avx2" or "avx512"; results are
    identical across them, only speed differs, except the float32 convolutions: their direct
    kernels exist for AVX-512 only, and below it they take their GEMM path, which rounds
    differently). Returns the one now in use, which is lower when the CPU lacks the one asked for."""
    global _cpu_isa_in_use
    if name not in _CPU_ISAS:
        raise ValueError(f"set_cpu_isa: name must be one of {_CPU_ISAS}, got {name!r}")
    _cpu_isa_in_use = _C.set_cpu_isa(name)
    return _cpu_isa_in_use


def release_output_cache() -> int:
    """Frees the memory fastops keeps from freed large CPU outputs and returns its size in bytes.

    Every op allocates its large CPU outputs and gradients (4 MB and more) from a small cache: when
    such a tensor is freed its memory stays mapped, at most 512 MB in all, and the next output that
    fits (up to twice its size) reuses it, so a training loop stops paying the page faults of fresh
    memory. Set the environment variable ``FASTOPS_OUTPUT_CACHE=0`` (before importing fastops) to
    turn it off.
    """
    return _C.release_output_cache()


def output_cache_bytes() -> int:
    """Bytes of freed large CPU outputs that fastops holds for reuse (see release_output_cache)."""
    return _C.output_cache_bytes()
