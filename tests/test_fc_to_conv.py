"""convert_fc_to_conv: fully connected layers as convolutions, tested by equal outputs."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastops.models
from fastops.models import convert_fc_to_conv
from fastops.models.backbones import vgg16

F64 = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_torchvision_alexnet_equal_outputs():
    """features + avgpool (6x6) + Linear classifier == features + 6x6 and 1x1 convolutions at 224."""
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.alexnet(weights=None, num_classes=7).double().eval()
    converted = convert_fc_to_conv(model).eval()
    assert list(dict(converted.named_children())) == ["features", "classifier"]
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
        out = converted(x)
    assert out.shape == (2, 7, 1, 1)
    torch.testing.assert_close(out[:, :, 0, 0], expected, **F64)


def test_vgg_classifier_slides_over_a_larger_input():
    """On a larger input the converted classifier scores every 7x7 window of pool5: window (i, j)
    equals the original classifier applied to that window."""
    model = vgg16(num_classes=5, width_scale=16, fc_channels=16).double().eval()
    converted = convert_fc_to_conv(model).eval()
    x = torch.randn(1, 3, 288, 256, dtype=torch.float64)  # pool5: 9 x 8
    with torch.no_grad():
        scores = converted(x)
        pool5 = model.features(x)
        assert scores.shape == (1, 5, 3, 2)
        for i, j in [(0, 0), (2, 1), (1, 0)]:
            window = pool5[:, :, i : i + 7, j : j + 7]
            torch.testing.assert_close(scores[:, :, i, j], model.classifier(window.flatten(1)), **F64)
        x224 = x[..., :224, :224]
        torch.testing.assert_close(converted(x224)[:, :, 0, 0], model(x224)["fc"], **F64)


def test_linear_and_sequential():
    linear = nn.Linear(12, 5).double()
    conv = convert_fc_to_conv(linear)
    v = torch.randn(3, 12, dtype=torch.float64)
    torch.testing.assert_close(conv(v[:, :, None, None])[:, :, 0, 0], linear(v), **F64)
    head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 3 * 2, 8), nn.ReLU(), nn.Dropout(0.0), nn.Linear(8, 3)).double()
    converted = convert_fc_to_conv(head, input_shape=(4, 3, 2))
    assert not any(isinstance(m, (nn.Flatten, nn.Linear)) for m in converted.modules())
    x = torch.randn(2, 4, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(converted(x)[:, :, 0, 0], head(x), **F64)
    # a map: the convolution slides (3x2 windows over 5x4: 3x3 outputs)
    big = torch.randn(1, 4, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(converted(big)[:, :, 1, 2], head(big[:, :, 1:4, 2:4]), **F64)
    assert isinstance(converted[0], fastops.nn.Conv2d)
    assert set(converted.state_dict()) == set(head.state_dict())  # the layers keep their names
    torch.testing.assert_close(converted.state_dict()["1.weight"], head[1].weight.reshape(8, 4, 3, 2))


def test_conversion_errors():
    with pytest.raises(ValueError, match="in_features"):
        convert_fc_to_conv(nn.Linear(10, 2), input_shape=(3, 2, 2))
    with pytest.raises(TypeError, match="BatchNorm1d"):
        convert_fc_to_conv(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
    with pytest.raises(ValueError, match="no Linear"):
        convert_fc_to_conv(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="expected a Linear"):
        convert_fc_to_conv(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match=r"\(C, kh, kw\)"):
        convert_fc_to_conv(nn.Linear(4, 2), input_shape=(4, 1))


def test_unpadded_linear_layer_keeps_its_device_and_dtype():
    linear = nn.Linear(8, 2).to(torch.float64)
    conv = convert_fc_to_conv(linear)[0]
    assert conv.weight.dtype == torch.float64 and conv.bias is not None
    x = torch.randn(1, 8, 3, 3, dtype=torch.float64)
    expected = F.linear(x.permute(0, 2, 3, 1), linear.weight, linear.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(conv(x), expected, **F64)
