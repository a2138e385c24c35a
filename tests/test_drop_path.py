"""DropPath (stochastic depth) against its definition (timm's semantics): per-sample drops, kept
samples scaled by 1 / keep_prob, the expectation preserved, identity in eval mode and at
probability 0, gradients (gradcheck), determinism under a seed; the ResNet blocks' option with
rates rising linearly over the blocks."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fastops.models.backbones import resnet18, small_resnet
from fastops.nn import DropPath, drop_path


@given(st.floats(0.05, 0.95), st.integers(1, 6), st.booleans(), st.integers(0, 1000))
def test_each_sample_is_dropped_or_scaled_whole(p, n, scale_by_keep, seed):
    x = torch.rand(n, 3, 4, 5) + 0.5
    torch.manual_seed(seed)
    y = drop_path(x, p, training=True, scale_by_keep=scale_by_keep)
    # reference from the definition: one Bernoulli(1 - p) per sample, from the same generator
    torch.manual_seed(seed)
    keep = torch.empty(n, 1, 1, 1).bernoulli_(1 - p)
    expected = x * keep / ((1 - p) if scale_by_keep else 1.0)
    torch.testing.assert_close(y, expected, rtol=1e-6, atol=0)
    for sample, x_sample in zip(y, x):
        assert torch.equal(sample, torch.zeros_like(sample)) or torch.allclose(
            sample, x_sample / ((1 - p) if scale_by_keep else 1.0)
        )


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_expectation_is_preserved(p):
    torch.manual_seed(0)
    n = 200_000
    y = drop_path(torch.ones(n, 2), p, training=True)
    kept = (y[:, 0] > 0).double().mean()
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(float(kept) - (1 - p)) < 5 * sigma
    mean = float(y.double().mean())
    assert abs(mean - 1.0) < 5 * sigma / (1 - p)


def test_eval_mode_and_zero_probability_return_the_input():
    x = torch.rand(4, 3)
    module = DropPath(0.5).eval()
    assert module(x) is x
    assert DropPath(0.0).train()(x) is x
    assert drop_path(x, 0.7, training=False) is x


def test_probability_one_drops_everything():
    y = DropPath(1.0).train()(torch.rand(5, 2))
    assert torch.equal(y, torch.zeros(5, 2))


def test_same_seed_same_drops():
    x = torch.rand(64, 8)
    module = DropPath(0.4).train()
    torch.manual_seed(7)
    a = module(x)
    torch.manual_seed(7)
    b = module(x)
    assert torch.equal(a, b)
    assert not torch.equal(module(x), a)  # the next draw differs (equal with probability < 1e-18)


def test_gradcheck():
    x = torch.rand(6, 3, 2, dtype=torch.float64, requires_grad=True)

    def fn(t):
        torch.manual_seed(3)  # the same drops on every evaluation
        return drop_path(t, 0.4, training=True)

    assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bad_probability_raises(p):
    with pytest.raises(ValueError, match="drop_prob must be in"):
        DropPath(p)


def test_resnet_blocks_get_linearly_rising_rates():
    model = resnet18(drop_path_rate=0.3, return_layers=["layer4"])
    blocks = [b for name in ("layer1", "layer2", "layer3", "layer4") for b in getattr(model, name)]
    rates = [0.0 if b.drop_path is None else b.drop_path.drop_prob for b in blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.3, len(blocks)))
    assert list(model.state_dict()) == list(resnet18(return_layers=["layer4"]).state_dict())
    with pytest.raises(ValueError, match="drop_path_rate"):
        resnet18(drop_path_rate=1.2)


def test_resnet_with_drop_path_is_the_same_function_in_eval_mode_and_random_in_training():
    torch.manual_seed(0)
    plain = small_resnet(return_layers=["layer4"])
    dropped = small_resnet(return_layers=["layer4"], drop_path_rate=0.5)
    dropped.load_state_dict(plain.state_dict())
    x = torch.rand(4, 3, 64, 64)
    plain.eval(), dropped.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped(x)["layer4"], plain(x)["layer4"])
    dropped.train()
    torch.manual_seed(1)
    a = dropped(x)["layer4"]
    torch.manual_seed(1)
    b = dropped(x)["layer4"]
    assert torch.equal(a, b)
    assert not torch.allclose(a, plain.train()(x)["layer4"])
    a.sum().backward()
