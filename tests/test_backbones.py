"""Backbones and FrozenBatchNorm2d against torchvision (state_dict names and outputs, random weights)."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FrozenBatchNorm2d as TvFrozenBatchNorm2d

from fastops.models.backbones import resnet18, resnet34, resnet50, resnet101, small_resnet
from fastops.nn import FrozenBatchNorm2d


def _randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial statistics and affine parameters in every (frozen) batch norm."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, TvFrozenBatchNorm2d, FrozenBatchNorm2d)):
            c = m.running_mean.shape[0]
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)


def assert_close_scaled(actual, expected, rel=1e-5):
    """Equal up to rel times the largest magnitude (convolutions on small maps run on fastops'
    kernels, which round differently from oneDNN's)."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=rel * float(expected.abs().max()) + 1e-6)


# ---- FrozenBatchNorm2d ----------------------------------------------------------------------------


def test_frozen_batch_norm_matches_torchvision_and_float64_definition():
    ours, theirs = FrozenBatchNorm2d(7, eps=1e-3), TvFrozenBatchNorm2d(7, eps=1e-3)
    _randomize_norms(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(2, 7, 5, 6)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    sd = {k: v.double() for k, v in theirs.state_dict().items()}
    expected = (x.double() - sd["running_mean"][:, None, None]) / (sd["running_var"][:, None, None] + 1e-3).sqrt()
    expected = expected * sd["weight"][:, None, None] + sd["bias"][:, None, None]
    torch.testing.assert_close(ours(x).double(), expected, rtol=1e-5, atol=1e-6)
    assert not list(ours.parameters())


def test_frozen_batch_norm_loads_a_batch_norm_state_dict():
    bn = nn.BatchNorm2d(4)
    _randomize_norms(bn)
    frozen = FrozenBatchNorm2d(4)
    frozen.load_state_dict(bn.state_dict(), strict=True)  # num_batches_tracked is ignored
    x = torch.randn(3, 4, 2, 2)
    torch.testing.assert_close(frozen(x), bn.eval()(x))


def test_folding_into_a_convolution_is_the_same_function_with_its_gradient():
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=True).double()
    norm = FrozenBatchNorm2d(5).double()
    _randomize_norms(norm)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    expected = norm(conv(x))
    weight, bias = norm.fold_into(conv.weight, conv.bias)
    got = nn.functional.conv2d(x, weight, bias, padding=1)
    torch.testing.assert_close(got, expected)
    g_expected = torch.autograd.grad(expected.square().sum(), (x, conv.weight, conv.bias))
    g_got = torch.autograd.grad(got.square().sum(), (x, conv.weight, conv.bias))
    for a, b in zip(g_got, g_expected):
        torch.testing.assert_close(a, b)


# ---- ResNet against torchvision ------------------------------------------------------------------

BUILDERS = {
    "resnet18": (resnet18, torchvision.models.resnet18),
    "resnet34": (resnet34, torchvision.models.resnet34),
    "resnet50": (resnet50, torchvision.models.resnet50),
    "resnet101": (resnet101, torchvision.models.resnet101),
}
RETURN = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_state_dict_names_and_shapes_are_torchvision_s(name):
    ours_builder, tv_builder = BUILDERS[name]
    with torch.device("meta"):
        tv, ours = tv_builder(num_classes=10), ours_builder(num_classes=10)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in tv.state_dict().items()]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_classifier_state_dict_loads_strictly_and_gives_torchvision_outputs(name):
    ours_builder, tv_builder = BUILDERS[name]
    tv = tv_builder(num_classes=10)
    _randomize_norms(tv)
    tv.eval()
    ours = ours_builder(weights=tv.state_dict()).eval()  # the classifier is kept: fc in the weights
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        out = ours(x)
        expected_logits = tv(x)
        expected = IntermediateLayerGetter(tv, RETURN)(x)
    assert_close_scaled(out["fc"], expected_logits)
    for i, stage in enumerate(("layer1", "layer2", "layer3", "layer4")):
        assert_close_scaled(out[stage], expected[str(i)])


@pytest.mark.parametrize(("name", "frozen"), [("resnet18", False), ("resnet18", True), ("resnet50", True)])
def test_detection_body_matches_torchvision_frozen_or_not(name, frozen):
    ours_builder, tv_builder = BUILDERS[name]
    norm = FrozenBatchNorm2d if frozen else None
    tv = tv_builder(norm_layer=TvFrozenBatchNorm2d if frozen else None)
    _randomize_norms(tv)
    body = IntermediateLayerGetter(tv, RETURN).eval()
    ours = ours_builder(weights=tv.state_dict(), return_layers=RETURN, norm_layer=norm).eval()
    ours.load_state_dict(body.state_dict(), strict=True)  # the detection body's keys, no fc
    assert set(ours.state_dict()) == set(body.state_dict())
    x = torch.randn(2, 3, 61, 77)
    with torch.no_grad():
        out, expected = ours(x), body(x)
    assert list(out) == list(expected)
    for k in out:
        assert_close_scaled(out[k], expected[k])
    assert ours.out_channels == {k: v.shape[1] for k, v in expected.items()}
    assert ours.strides == {"0": 4, "1": 8, "2": 16, "3": 32}


def test_training_mode_gradients_match_torchvision():
    tv = torchvision.models.resnet18(norm_layer=TvFrozenBatchNorm2d)
    _randomize_norms(tv)
    body = IntermediateLayerGetter(tv, {"layer4": "out"})
    ours = resnet18(weights=tv.state_dict(), return_layers={"layer4": "out"}, norm_layer=FrozenBatchNorm2d)
    x = torch.randn(2, 3, 40, 48)
    (ours(x)["out"].square().mean()).backward()
    (body(x)["out"].square().mean()).backward()
    tv_params = dict(body.named_parameters())
    for k, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, tv_params[k].grad, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("dilation", [(False, True, True)])
def test_dilation_matches_torchvision_and_reports_strides(dilation):
    tv = torchvision.models.resnet50(replace_stride_with_dilation=list(dilation))
    _randomize_norms(tv)
    getter = IntermediateLayerGetter(tv, {"layer3": "aux", "layer4": "out"}).eval()
    ours = resnet50(
        weights=tv.state_dict(), return_layers={"layer3": "aux", "layer4": "out"}, replace_stride_with_dilation=dilation
    ).eval()
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        out, expected = ours(x), getter(x)
    for k in ("aux", "out"):
        assert_close_scaled(out[k], expected[k])
    expected_strides = {"aux": 8 if dilation[1] else 16, "out": 8 if dilation[1] else 16}
    assert ours.strides == expected_strides
    assert ours.out_channels == {"aux": 1024, "out": 2048}


@pytest.mark.parametrize("trainable", [0, 1, 3, 5])
def test_trainable_layers_freeze_as_torchvision(trainable):
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

    tv = torchvision.models.resnet18()
    _resnet_fpn_extractor(tv, trainable)
    expected = {k for k, p in tv.named_parameters() if p.requires_grad and not k.startswith("fc.")}
    ours = resnet18(trainable_layers=trainable)
    assert {k for k, p in ours.named_parameters() if p.requires_grad} == expected
    with pytest.raises(ValueError, match="trainable_layers"):
        resnet18(trainable_layers=6)


def test_stages_after_the_last_returned_one_are_not_built():
    tv = torchvision.models.resnet34()
    body = IntermediateLayerGetter(tv, {"layer2": "c3"})
    ours = resnet34(weights=tv.state_dict(), return_layers={"layer2": "c3"})
    assert set(ours.state_dict()) == set(body.state_dict())
    assert ours(torch.randn(1, 3, 32, 32))["c3"].shape == (1, 128, 4, 4)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="return_layers"):
        resnet18(return_layers=["layer5"])
    with pytest.raises(ValueError, match="fc"):
        resnet18(return_layers=["fc"])
    with pytest.raises(ValueError, match="replace_stride_with_dilation"):
        resnet50(replace_stride_with_dilation=[True])
    with pytest.raises(TypeError, match="weights"):
        resnet18(weights=3)


def test_weights_from_a_file(tmp_path):
    tv = torchvision.models.resnet18(num_classes=4)
    path = tmp_path / "r18.pth"
    torch.save({"model": tv.state_dict(), "epoch": 3}, path)  # a training checkpoint
    ours = resnet18(weights=path).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_close_scaled(ours(x)["fc"], tv.eval()(x))


def test_small_resnet_shapes_strides_and_training_step():
    model = small_resnet()
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    assert model.strides == {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
    assert model.out_channels == {"layer1": 16, "layer2": 32, "layer3": 64, "layer4": 128}
    for k, v in out.items():
        assert v.shape == (2, model.out_channels[k], 64 // model.strides[k], 96 // model.strides[k])
    sum(v.mean() for v in out.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) < 400_000


@pytest.mark.slow
def test_compile_runs_the_backbone():
    model = small_resnet(norm_layer=FrozenBatchNorm2d, return_layers={"layer4": "out"}).eval()
    x = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(model)
    with torch.no_grad():
        assert_close_scaled(compiled(x)["out"], model(x)["out"])


def test_folded_weights_are_reused_only_while_nothing_changes():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    norm = FrozenBatchNorm2d(4)
    _randomize_norms(norm)
    x = torch.randn(1, 3, 5, 5)

    def folded_output():
        with torch.no_grad():
            w, b = norm.fold_into(conv.weight, conv.bias)
            return torch.nn.functional.conv2d(x, w, b, padding=1), w

    first, w1 = folded_output()
    _, w2 = folded_output()
    assert w2 is w1  # reused
    torch.testing.assert_close(first, norm(conv(x)))
    with torch.no_grad():
        conv.weight.mul_(2)  # an optimizer step
    torch.testing.assert_close(folded_output()[0], norm(conv(x)))
    norm.load_state_dict({k: v * 1.5 for k, v in norm.state_dict().items()})
    torch.testing.assert_close(folded_output()[0], norm(conv(x)))
    norm.eps = 0.5
    torch.testing.assert_close(folded_output()[0], norm(conv(x)))
    conv.to(memory_format=torch.channels_last)  # new storage
    out, w3 = folded_output()
    torch.testing.assert_close(out, norm(conv(x)))
    assert w3.is_contiguous(memory_format=torch.channels_last)
    # with gradients the fold is recomputed and differentiable
    w, _ = norm.fold_into(conv.weight, conv.bias)
    assert w.requires_grad and w is not w3
