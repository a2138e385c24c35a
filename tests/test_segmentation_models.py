"""U-Net, stacked hourglass, FCN-32s/16s/8s and the segmenter surface (forward, loss, predict),
bad input, torch.compile, and overfitting small synthetic batches (mIoU >= 0.9 by fastops.metrics)."""

import pytest
import torch
import torch.nn.functional as F
from segmentation_common import miou, synthetic_batch, train
from torch import nn

import fastops.nn
from fastops.models.backbones import small_resnet
from fastops.models.segmentation import (
    FCN,
    DeepLabHead,
    DeepLabV2Head,
    DeepLabV3,
    FCNHead,
    SimpleSegmentationModel,
    fcn8s_vgg16,
    fcn16s_vgg16,
    fcn32s_vgg16,
    stacked_hourglass,
    unet,
)
from fastops.models.segmentation.fcn_skip import bilinear_kernel

F64 = dict(rtol=1e-9, atol=1e-10)


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread skips the parallel regions' overhead, which dominates
    (and, on a busy 2-core machine, multiplies) their time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _group_norm(channels):
    return nn.GroupNorm(min(4, channels), channels)


def _small_deeplab(num_classes=3, aux=True):
    """DeepLab v3's composition on a small backbone: layer2 (stride 8) -> DeepLabHead, layer1 -> aux."""
    backbone = small_resnet(return_layers={"layer2": "out", "layer1": "aux"} if aux else {"layer2": "out"})
    return DeepLabV3(
        backbone,
        DeepLabHead(32, num_classes, (1, 2, 3)),
        FCNHead(16, num_classes) if aux else None,
        num_classes=num_classes,
    )


def _small_fcn(num_classes=3):
    backbone = small_resnet(return_layers={"layer2": "out", "layer1": "aux"})
    return FCN(backbone, FCNHead(32, num_classes), FCNHead(16, num_classes), num_classes=num_classes)


def _small_deeplab_v2(num_classes=3):
    backbone = small_resnet(return_layers={"layer2": "out"})
    return SimpleSegmentationModel(backbone, DeepLabV2Head(32, num_classes, (1, 2, 3, 4)), num_classes=num_classes)


# every model at test size: (builder, the smallest input side, the alignment its stride needs)
MODELS = {
    "unet": (lambda: unet(3, 3, depth=2, base_channels=8), 4, 1),
    "unet_bilinear": (lambda: unet(3, 3, depth=2, base_channels=8, bilinear=True), 4, 1),
    "hourglass": (lambda: stacked_hourglass(2, num_classes=3, depth=2, channels=16), 16, 4),
    "hourglass_small": (lambda: stacked_hourglass(2, num_classes=3, depth=1, channels=8), 8, 4),
    "fcn32s": (lambda: fcn32s_vgg16(num_classes=3, width_scale=16, fc_channels=32), 32, 8),
    "fcn16s": (lambda: fcn16s_vgg16(num_classes=3, width_scale=16, fc_channels=32), 32, 8),
    "fcn8s": (lambda: fcn8s_vgg16(num_classes=3, width_scale=16, fc_channels=32), 32, 8),
    "deeplabv3": (_small_deeplab, 1, 8),
    "fcn": (_small_fcn, 1, 8),
    "deeplabv2": (_small_deeplab_v2, 1, 8),
}


# ---- sizes and parts ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("size", [(37, 45), (32, 33)])
def test_logits_have_the_input_size(name, size):
    build, _, _ = MODELS[name]
    model = build().eval()
    x = torch.randn(2, 3, *size)
    out = model(x)
    logits = out["out"] if isinstance(out, dict) else out
    assert logits.shape == (2, 3, *size)
    assert model.predict(x).shape == (2, *size) and model.predict(x).dtype == torch.int64


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("size", [(16, 16), (17, 23), (31, 20)])
def test_unet_paths_agree_in_float64(bilinear, size):
    """The same U-Net on fastops' kernels and on torch's: same logits and gradients."""
    ours = unet(3, 4, depth=2, base_channels=4, bilinear=bilinear, path="fastops").double()
    reference = unet(3, 4, depth=2, base_channels=4, bilinear=bilinear, path="torch").double()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    xs, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = ours(xs), reference(xr)
    torch.testing.assert_close(out, ref, **F64)
    g = torch.randn(out.shape, dtype=torch.float64)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(xs.grad, xr.grad, **F64)
    for (name, p), (_, q) in zip(ours.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, **F64, msg=name)


def test_unet_up_block_matches_its_definition():
    """upsample to the skip's exact size (output_padding for an odd skip), concatenate [skip, up]."""
    model = unet(3, 2, depth=1, base_channels=4, path="torch").double().eval()
    x = torch.randn(1, 3, 9, 7, dtype=torch.float64)
    skip = model.inc(x)
    low = model.down[0](F.max_pool2d(skip, 2))
    up = model.up[0]
    upsampled = F.conv_transpose2d(low, up.up.weight, up.up.bias, stride=2, output_padding=(1, 1))
    expected = model.classifier(up.conv(torch.cat([skip, upsampled], 1)))
    torch.testing.assert_close(model(x), expected, **F64)


def test_hourglass_outputs_and_loss_cover_every_stack():
    model = stacked_hourglass(3, num_classes=2, depth=2, channels=8).double()
    x, masks = synthetic_batch(2, 2, (32, 32), dtype=torch.float64)
    out = model(x)
    assert list(out) == ["stack0", "stack1", "out"]
    losses = model.loss(x, masks)
    expected = sum(fastops.nn.pixel_cross_entropy(logits, masks) for logits in out.values())
    torch.testing.assert_close(losses["loss"], expected, **F64)
    assert set(losses) == {"loss", "loss_stack0", "loss_stack1", "loss_out"}
    model.eval()
    assert torch.equal(model.predict(x), model(x)["out"].argmax(1))


def test_bilinear_kernel_interpolates():
    """The transposed convolution's initial weights upsample like bilinear interpolation (away
    from the border, where the transposed convolution sees zeros)."""
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    for stride in (2, 4):
        w = bilinear_kernel(2, 2 * stride).double()
        up = F.conv_transpose2d(x, w, stride=stride, padding=stride // 2)
        ref = F.interpolate(x, scale_factor=stride, mode="bilinear", align_corners=False)
        inner = slice(stride, -stride)
        torch.testing.assert_close(up[..., inner, inner], ref[..., inner, inner], **F64)


def test_fcn_skip_scores_start_at_zero():
    """A fresh FCN-16s/8s: the skip scores are zero, so only the coarse scores reach the output."""
    for build in (fcn16s_vgg16, fcn8s_vgg16):
        model = build(num_classes=3, width_scale=16, fc_channels=16).eval()
        x = torch.randn(1, 3, 64, 64)
        features = model.backbone(x)
        assert model.score_pool4(features["pool4"]).abs().max() == 0


def test_vgg16_has_torchvision_names():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        theirs = torchvision.models.vgg16(num_classes=10).state_dict()
        ours = fastops.models.backbones.vgg16(num_classes=10, return_layers=["pool3", "fc"]).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_fcn_vgg_loads_a_vgg16_classifier(tmp_path):
    """fc6 / fc7 come from the classifier's Linear layers (fc6 padded to keep pool5's size)."""
    classifier = fastops.models.backbones.vgg16(num_classes=10, width_scale=16, fc_channels=24)
    path = tmp_path / "vgg16.pth"
    torch.save(classifier.state_dict(), path)
    model = fcn32s_vgg16(num_classes=3, weights_backbone=path, width_scale=16)
    torch.testing.assert_close(model.backbone.features[0].weight, classifier.features[0].weight)
    torch.testing.assert_close(model.fc[0].weight, classifier.classifier[0].weight.reshape(24, 32, 7, 7))
    torch.testing.assert_close(model.fc[3].weight[..., 0, 0], classifier.classifier[3].weight)
    assert model.fc[0].padding == (3, 3) and "classifier.0.weight" not in model.backbone.state_dict()
    with pytest.raises(ValueError, match="classifier"):
        fcn32s_vgg16(weights_backbone={k: v for k, v in classifier.state_dict().items() if "classifier" not in k})


def test_deeplab_v2_head_is_the_sum_of_atrous_classifiers():
    head = DeepLabV2Head(6, 4, (1, 3, 5)).double()
    x = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    expected = sum(F.conv2d(x, c.weight, c.bias, padding=r, dilation=r) for c, r in zip(head.classifiers, (1, 3, 5)))
    torch.testing.assert_close(head(x), expected, **F64)
    with pytest.raises(ValueError, match="rates"):
        DeepLabV2Head(6, 4, ())


# ---- surface -----------------------------------------------------------------------------------


def test_loss_and_predict_work_in_either_mode_and_keep_it():
    model = _small_deeplab()
    x, masks = synthetic_batch(2, 3, (32, 32))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = model.loss(x, masks)
    assert set(losses) == {"loss", "loss_out", "loss_aux"}
    torch.testing.assert_close(losses["loss"], losses["loss_out"] + 0.5 * losses["loss_aux"])
    assert not model.training
    for key, value in model.state_dict().items():  # no batch-norm statistics updated in eval mode
        assert torch.equal(value, before[key]), key
    model.train()
    model.predict(x)
    assert model.training
    losses["loss"].backward()


def test_ignore_index_and_custom_criterion():
    model = unet(3, 3, depth=1, base_channels=4).eval()
    x, masks = synthetic_batch(1, 3, (8, 8))
    masks[0, :4] = 255
    logits = model(x)
    torch.testing.assert_close(model.loss(x, masks)["loss"], F.cross_entropy(logits, masks, ignore_index=255))
    dice = fastops.nn.WeightedSumLoss(
        {"ce": (1.0, fastops.nn.PixelCrossEntropyLoss()), "dice": (1.0, fastops.nn.SoftDiceLoss())}
    )
    model = unet(3, 3, depth=1, base_channels=4, criterion=dice).eval()
    expected = dice(model(x), masks)
    torch.testing.assert_close(model.loss(x, masks)["loss"], expected)


def test_binary_model_with_dense_masks():
    model = unet(3, 1, depth=1, base_channels=4).eval()
    x = torch.randn(2, 3, 8, 8)
    masks = torch.rand(2, 1, 8, 8) > 0.5
    logits = model(x)
    expected = F.binary_cross_entropy_with_logits(logits, masks.float())
    torch.testing.assert_close(model.loss(x, masks)["loss"], expected)
    assert torch.equal(model.predict(x), (logits[:, 0] > 0).long())


@pytest.mark.parametrize("name", ["unet", "hourglass", "fcn8s", "deeplabv3"])
def test_bad_input_names_the_argument(name):
    build, min_size, _ = MODELS[name]
    model = build()
    x, masks = synthetic_batch(2, 3, (32, 32))
    with pytest.raises(ValueError, match="images: expected 3 channels"):
        model.loss(torch.randn(2, 4, 32, 32), masks)
    with pytest.raises(ValueError, match="images: expected a 4-D"):
        model.predict(torch.randn(3, 32, 32))
    with pytest.raises(TypeError, match="images: expected a floating-point"):
        model.predict(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"masks: class-index masks must have shape \[2, 32, 32\]"):
        model.loss(x, masks[:, :16])
    with pytest.raises(ValueError, match="label 7"):
        model.loss(x, torch.where(masks == 1, 7, masks))
    with pytest.raises(ValueError, match="label -1"):
        model.loss(x, masks - 1)
    with pytest.raises(ValueError, match="masks: dense masks"):
        model.loss(x, torch.rand(2, 2, 32, 32))
    if min_size > 1:
        small = min_size - 1
        with pytest.raises(ValueError, match=f"too small.*at least {min_size}"):
            model.predict(torch.randn(1, 3, small, 40))
    model.loss(x, torch.where(masks == 1, 255, masks))  # the ignore index is no error


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="depth"):
        unet(3, 2, depth=0)
    with pytest.raises(ValueError, match="num_classes"):
        unet(3, 0)
    with pytest.raises(ValueError, match="num_stacks"):
        stacked_hourglass(0)
    with pytest.raises(ValueError, match="variant"):
        fastops.models.segmentation.FCNVGG(
            fastops.models.backbones.vgg16(width_scale=16, return_layers=["pool5"]), variant="4s"
        )
    with pytest.raises(ValueError, match="path"):
        unet(3, 2, path="cudnn")


@pytest.mark.parametrize("name", ["unet", "hourglass_small", "fcn8s", "deeplabv3"])
def test_compile_fullgraph(name):
    build, _, _ = MODELS[name]
    model = build().eval()
    x = torch.randn(1, 3, 32, 40)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    expected, got = model(x), compiled(x)
    if isinstance(expected, dict):
        expected, got = expected["out"], got["out"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


# ---- overfitting -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,steps",
    [
        ("unet", 40),
        ("unet_bilinear", 40),
        ("hourglass", 80),
        ("fcn8s", 80),
        ("deeplabv3", 60),
        ("fcn", 80),
        ("deeplabv2", 60),
    ],
)
def test_overfits_a_small_batch(name, steps):
    """Adam at 1e-2 on two 32x32 images, dropout off; mIoU of predict (eval mode) on the batch."""
    torch.manual_seed(0)
    build, _, align = MODELS[name]
    model = build()
    for module in model.modules():
        if isinstance(module, (nn.Dropout, nn.Dropout2d)):
            module.p = 0.0
    images, masks = synthetic_batch(2, 3, (32, 32), align=align)
    train(model, images, masks, steps)
    assert miou(model, images, masks, 3) >= 0.9
