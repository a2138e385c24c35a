"""The build: what it reports, the torch-version guard, and which kernels it registered."""

import math

import pytest
import torch

import fastops
from fastops import _build_config
from fastops._library import check_torch_compat


def test_build_info_reports_the_build():
    info = fastops.build_info()
    assert info["torch_version"] == _build_config.TORCH_VERSION
    assert isinstance(info["cuda"], bool) and info["cuda"] == _build_config.CUDA_COMPILED
    assert info["num_threads"] == torch.get_num_threads()
    assert info["cpu_isa"] in ("default", "avx2", "avx512")
    if info["cuda"]:
        assert info["cuda_archs"] and info["nvcc_version"]
        assert "90" in info["cuda_archs"] and "80" in info["cuda_archs"]


def test_built_against_the_running_torch():
    assert torch.__version__ == _build_config.TORCH_VERSION


def test_registered_kernels_match_the_build():
    for op in ("fastops::box_overlap", "fastops::box_overlap_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA") == _build_config.CUDA_COMPILED


def test_version_guard():
    check_torch_compat("2.14.1+cu130", "13.0", True, "2.14.1+cu130", "13.0")
    check_torch_compat("2.14.1+cu130", "13.0", False, "2.14.1+cpu", None)
    with pytest.raises(
        ImportError, match=r"built against torch 2\.13\.0.*torch 2\.14\.1 is installed.*torch==2\.13\.0"
    ):
        check_torch_compat("2.13.0", "", False, "2.14.1", None)
    with pytest.raises(ImportError, match="CPU-only build"):
        check_torch_compat("2.14.1+cu130", "13.0", True, "2.14.1+cpu", None)
    with pytest.raises(ImportError, match=r"CUDA 13\.0"):
        check_torch_compat("2.14.1+cu130", "13.0", True, "2.14.1+cu128", "12.8")


def test_set_cpu_isa_validates():
    with pytest.raises(ValueError, match="name must be one of"):
        fastops.set_cpu_isa("sse9")


def test_cpu_peak_is_a_positive_rate_and_checks_its_argument():
    gflops = torch.ops.fastops.cpu_peak_gflops(0.05)
    assert math.isfinite(gflops) and gflops > 0
    with pytest.raises(ValueError, match="seconds"):
        torch.ops.fastops.cpu_peak_gflops(0.0)
