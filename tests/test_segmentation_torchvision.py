"""FCN and DeepLab v3 against torchvision's: builder names and keyword arguments, state_dict keys
and shapes (strict loads both ways), and the same logits for the same weights at several input
sizes (odd ones included), in eval and training mode, float64."""

import pytest
import torch
from torch import nn

from fastops.models import segmentation as seg

tv_seg = pytest.importorskip("torchvision.models.segmentation")
tv_models = pytest.importorskip("torchvision.models")

F64 = dict(rtol=1e-9, atol=1e-9)
BUILDERS = {
    "fcn_resnet50": (seg.fcn_resnet50, tv_seg.fcn_resnet50),
    "deeplabv3_resnet50": (seg.deeplabv3_resnet50, tv_seg.deeplabv3_resnet50),
}


def _randomize(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm parameters and statistics (a fresh model's are ones and zeros)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.0)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _torchvision(name, **kwargs):
    return BUILDERS[name][1](weights=None, weights_backbone=None, **kwargs)


@pytest.fixture(scope="module")
def pairs():
    """(ours, torchvision's) with torchvision's random weights loaded into ours, float64, aux on."""
    out = {}
    for name, (ours, _) in BUILDERS.items():
        tv = _randomize(_torchvision(name, num_classes=5, aux_loss=True)).double()
        model = ours(weights=tv.state_dict()).double()
        out[name] = (model, tv)
    return out


@pytest.mark.parametrize("name", list(BUILDERS))
def test_state_dict_keys_and_shapes_match(name, pairs):
    model, tv = pairs[name]
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in tv.state_dict().items()}
    assert ours == theirs
    tv.load_state_dict(model.state_dict(), strict=True)


@pytest.mark.parametrize("name", ["fcn_resnet101", "deeplabv3_resnet101"])
def test_resnet101_builders_state_dicts(name):
    ours = getattr(seg, name)(num_classes=4, aux_loss=True)
    theirs = getattr(tv_seg, name)(weights=None, weights_backbone=None, num_classes=4, aux_loss=True)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("size", [(65, 47), (33, 33), (16, 97), (7, 5)])
def test_same_logits_eval(name, size, pairs):
    model, tv = pairs[name]
    model.eval(), tv.eval()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        ours, theirs = model(x), tv(x)
    assert list(ours) == list(theirs) == ["out", "aux"]
    for key in ours:
        assert ours[key].shape == (2, 5, *size)
        torch.testing.assert_close(ours[key], theirs[key], **F64)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_same_logits_and_gradients_training(name, pairs):
    """Training mode (batch statistics), dropout off in both: same logits and input gradients."""
    model, tv = pairs[name]
    model.train(), tv.train()
    for m in [*model.modules(), *tv.modules()]:
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    x = torch.randn(2, 3, 29, 26, dtype=torch.float64)
    xs, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, theirs = model(xs), tv(xt)
    torch.testing.assert_close(ours["out"], theirs["out"], **F64)
    (ours["out"].sum() + ours["aux"].square().sum()).backward()
    (theirs["out"].sum() + theirs["aux"].square().sum()).backward()
    torch.testing.assert_close(xs.grad, xt.grad, rtol=1e-8, atol=1e-8)
    model.eval(), tv.eval()  # the module-scoped pair is shared; restore nothing else (statistics moved alike)


def test_builder_defaults_follow_torchvision(tmp_path):
    model = seg.fcn_resnet50()
    assert model.num_classes == 21 and model.aux_classifier is None and model.classifier[4].out_channels == 21
    tv = _torchvision("deeplabv3_resnet50", num_classes=7, aux_loss=True)
    path = tmp_path / "deeplab.pth"
    torch.save({"model": tv.state_dict()}, path)  # a reference-script checkpoint
    loaded = seg.deeplabv3_resnet50(weights=path)
    assert loaded.num_classes == 7 and loaded.aux_classifier is not None
    with pytest.raises(ValueError, match="num_classes"):
        seg.deeplabv3_resnet50(weights=path, num_classes=3)
    with pytest.raises(ValueError, match="classifier"):
        seg.deeplabv3_resnet50(weights={"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)})
    assert seg.deeplabv3_resnet50(weights=path, aux_loss=False).aux_classifier is None
    no_aux = {k: v for k, v in tv.state_dict().items() if not k.startswith("aux_classifier.")}
    with pytest.raises(ValueError, match="aux_loss"):
        seg.deeplabv3_resnet50(weights=no_aux, aux_loss=True)


def test_weights_backbone_from_a_torchvision_resnet():
    resnet = tv_models.resnet50(weights=None)
    model = seg.fcn_resnet50(num_classes=3, weights_backbone=resnet.state_dict())
    torch.testing.assert_close(model.backbone.layer4[2].conv3.weight, resnet.layer4[2].conv3.weight)


def test_output_stride_16():
    """output_stride=16: layer3 keeps its stride, layer4 dilates, ASPP at rates 6/12/18, as the
    same composition built from torchvision's parts."""
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead

    body = IntermediateLayerGetter(
        tv_models.resnet50(weights=None, replace_stride_with_dilation=[False, False, True]), {"layer4": "out"}
    )
    tv = _randomize(tv_seg.DeepLabV3(body, DeepLabHead(2048, 3, (6, 12, 18)))).double().eval()
    model = seg.deeplabv3_resnet50(num_classes=3, output_stride=16).double().eval()
    assert model.classifier[0].rates == (6, 12, 18)
    model.load_state_dict(tv.state_dict())
    x = torch.randn(1, 3, 57, 49, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["out"], tv(x)["out"], **F64)
    with pytest.raises(ValueError, match="output_stride"):
        seg.deeplabv3_resnet50(output_stride=32)


def test_deeplabv2_builder():
    model = seg.deeplabv2_resnet101(num_classes=4).eval()
    assert model.classifier.rates == (6, 12, 18, 24)
    assert model.backbone.strides == {"out": 8}
    with torch.no_grad():
        assert model(torch.randn(1, 3, 23, 19))["out"].shape == (1, 4, 23, 19)
