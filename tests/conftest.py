import os

# The convolution modules' path="auto" times both implementations on a problem's first call; the
# suite tests correctness, so it takes the fixed rule unless a test turns measuring on
# (tests/test_conv_autotune.py). Read when fastops.nn is first imported, so set before the imports.
os.environ.setdefault("FASTOPS_CONV_AUTOTUNE", "0")

import pytest
import torch
from hypothesis import HealthCheck, settings

import fastops
import fastops.nn

# "default" (CI): the same examples every run, so a red CI always points at a change.
# "thorough" (HYPOTHESIS_PROFILE=thorough): fresh random examples, ten times as many.
settings.register_profile(
    "default", deadline=None, max_examples=50, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
# "long" (FASTOPS_FUZZ=long, scripts/fuzz.sh): fresh examples, thousands per property.
settings.register_profile("long", deadline=None, max_examples=5000, suppress_health_check=list(HealthCheck))
settings.load_profile(
    "long" if os.environ.get("FASTOPS_FUZZ") == "long" else os.environ.get("HYPOTHESIS_PROFILE", "default")
)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def restore_isa():
    yield
    fastops.set_cpu_isa("avx512")  # back to the best available


@pytest.fixture
def fixed_rule():
    """The convolution modules' path="auto" without measurement: the fixed rule alone."""
    previous = fastops.nn.set_conv_autotune(False)
    yield
    fastops.nn.set_conv_autotune(previous)
