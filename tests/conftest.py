import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import fastops

# "default" (CI): the same examples every run, so a red CI always points at a change.
# "thorough" (HYPOTHESIS_PROFILE=thorough): fresh random examples, ten times as many.
settings.register_profile(
    "default", deadline=None, max_examples=50, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


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
