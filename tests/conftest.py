import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# "default" (CI): the same examples every run, so a red CI always points at a change.
# "thorough" (HYPOTHESIS_PROFILE=thorough): fresh random examples, ten times as many.
settings.register_profile(
    "default", deadline=None, max_examples=50, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The convolution modules' path="auto" times both implementations on a problem's first call; the
# suite tests correctness, so it takes the fixed rule unless a test turns measuring on
# (tests/test_conv_autotune.py). Read when fastops is first imported, after this file.
os.environ.setdefault("FASTOPS_CONV_AUTOTUNE", "0")


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
