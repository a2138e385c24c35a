"""The library-free float math shared by the CPU and CUDA kernels (csrc/common/fast_math.h, the
atan of csrc/box_iou/box_iou_math.h), against libm in double, on a sample of all float32 values."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")
def test_fast_math_within_documented_ulp(tmp_path):
    exe = tmp_path / "fast_math_check"
    subprocess.run(
        [
            "c++",
            "-std=c++20",
            "-O2",
            "-ffp-contract=off",
            f"-I{ROOT / 'csrc'}",
            str(ROOT / "tests" / "native" / "fast_math_check.cpp"),
            "-o",
            str(exe),
        ],
        check=True,
    )
    # stride 4099 (prime): about a million values spread over every exponent and sign
    result = subprocess.run([str(exe), "4099"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
