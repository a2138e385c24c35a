"""FPN, its extra levels and BackboneWithFPN against torchvision's (state_dict names, outputs)."""

import pytest
import torch
import torchvision
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import feature_pyramid_network as tv_fpn

from fastops.models.backbones import resnet18, small_resnet
from fastops.models.necks import BackboneWithFPN, FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7

RETURN = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}


def _features(channels, size=(32, 40), n=2):
    out, (h, w) = {}, size
    for i, c in enumerate(channels):
        out[f"f{i}"] = torch.randn(n, c, h, w)
        h, w = (h + 1) // 2, (w + 1) // 2
    return out


@pytest.mark.parametrize(
    ("extra", "tv_extra"),
    [
        (None, None),
        (LastLevelMaxPool(), tv_fpn.LastLevelMaxPool()),
        (LastLevelP6P7(16, 16), tv_fpn.LastLevelP6P7(16, 16)),  # from P5
        (LastLevelP6P7(32, 16), tv_fpn.LastLevelP6P7(32, 16)),  # from C5
    ],
)
def test_fpn_matches_torchvision(extra, tv_extra):
    channels = [8, 16, 32]
    theirs = tv_fpn.FeaturePyramidNetwork(channels, 16, extra_blocks=tv_extra)
    ours = FeaturePyramidNetwork(channels, 16, extra_blocks=extra)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = _features(channels, size=(33, 47))  # odd sizes: the top-down pass upsamples to each lateral's size
    with torch.no_grad():
        got, expected = ours(x), theirs(x)
    assert list(got) == list(expected)
    for k in got:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-5)


def test_fpn_loads_torchvision_version_1_names():
    theirs = tv_fpn.FeaturePyramidNetwork([8, 16], 16)
    old = {k.replace(".0.weight", ".weight").replace(".0.bias", ".bias"): v for k, v in theirs.state_dict().items()}
    assert "inner_blocks.0.weight" in old
    ours = FeaturePyramidNetwork([8, 16], 16)
    ours.load_state_dict(old, strict=True)  # a plain dict has no version: read as version 1
    for k, v in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v)


def test_fpn_gradients_match_torchvision():
    channels = [8, 16]
    theirs = tv_fpn.FeaturePyramidNetwork(channels, 8, extra_blocks=tv_fpn.LastLevelMaxPool())
    ours = FeaturePyramidNetwork(channels, 8, extra_blocks=LastLevelMaxPool())
    ours.load_state_dict(theirs.state_dict())
    x = _features(channels, size=(16, 12))
    sum(v.square().sum() for v in ours(x).values()).backward()
    sum(v.square().sum() for v in theirs(x).values()).backward()
    tv_params = dict(theirs.named_parameters())
    for k, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, tv_params[k].grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("returned", [[1, 2, 3, 4], [2, 3, 4]])
def test_backbone_with_fpn_matches_torchvision_detection_backbone(returned):
    tv = torchvision.models.resnet18()
    extra = tv_fpn.LastLevelP6P7(256, 256) if returned[0] == 2 else None
    tv_backbone = _resnet_fpn_extractor(tv, 5, returned_layers=returned, extra_blocks=extra).eval()
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned)}
    body = resnet18(return_layers=return_layers)
    ours = BackboneWithFPN(body, 256, extra_blocks=LastLevelP6P7(256, 256) if extra else None).eval()
    ours.load_state_dict(tv_backbone.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(tv_backbone.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        got, expected = ours(x), tv_backbone(x)
    assert list(got) == list(expected)
    for k in got:
        scale = float(expected[k].abs().max())
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=1e-5 * scale + 1e-6)
        assert got[k].shape[-1] == -(-96 // ours.strides[k])  # the reported stride: ceil division per level


def test_small_backbone_with_fpn_reports_strides():
    ours = BackboneWithFPN(small_resnet(), 32)
    assert ours.strides == {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32, "pool": 64}
    out = ours(torch.randn(1, 3, 128, 64))
    assert {k: v.shape[1:] for k, v in out.items()} == {
        k: (32, 128 // s, max(64 // s, 1)) for k, s in ours.strides.items()
    }


def test_fpn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="in_channels=0"):
        FeaturePyramidNetwork([0, 8], 8)
    with pytest.raises(TypeError, match="extra_blocks"):
        FeaturePyramidNetwork([8], 8, extra_blocks=torch.nn.ReLU())
    with pytest.raises(ValueError, match="input levels"):
        FeaturePyramidNetwork([8, 16], 8)({"a": torch.randn(1, 8, 4, 4)})
