"""fastops.patch_torchvision(): torchvision's ops and RoI modules replaced wherever torchvision looks
them up; its RetinaNet, Faster R-CNN and Mask R-CNN give the same losses, gradients and detections
patched and unpatched, with the patched calls reaching torch.ops.fastops."""

import sys

import pytest
import torch
import torchvision
import torchvision.models.detection as tvdet
import torchvision.ops as tvops
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

import fastops
import fastops.nn
from fastops import torchvision_patch

REPLACED = [
    "nms",
    "batched_nms",
    "box_iou",
    "generalized_box_iou",
    "distance_box_iou",
    "complete_box_iou",
    "generalized_box_iou_loss",
    "distance_box_iou_loss",
    "complete_box_iou_loss",
    "sigmoid_focal_loss",
    "roi_align",
    "roi_pool",
    "RoIAlign",
    "RoIPool",
    "MultiScaleRoIAlign",
]
ORIGINALS = {name: getattr(tvops, name) for name in REPLACED}


@pytest.fixture(autouse=True)
def _unpatched():
    fastops.unpatch_torchvision()
    yield
    fastops.unpatch_torchvision()


def fastops_objects():
    ours = {id(getattr(ns, name)) for name in ORIGINALS for ns in (fastops, fastops.nn) if hasattr(ns, name)}
    return ours | {id(torchvision_patch.box_iou)}


def torchvision_attributes_holding_fastops():
    ours = fastops_objects()
    return [
        f"{module_name}.{name}"
        for module_name, module in list(sys.modules.items())
        if module_name.startswith("torchvision") and module is not None
        for name, value in list(vars(module).items())
        if id(value) in ours
    ]


def test_patch_reaches_every_lookup_and_unpatch_restores_them():
    fastops.patch_torchvision()
    from torchvision.models.detection import _utils, faster_rcnn, mask_rcnn, retinanet, roi_heads, rpn

    assert tvops.nms is fastops.nms and tvops.boxes.nms is fastops.nms
    assert tvops.batched_nms is tvops.boxes.batched_nms is fastops.batched_nms
    assert tvops.roi_align is fastops.roi_align and tvops.poolers.roi_align is fastops.roi_align
    assert roi_heads.roi_align is fastops.roi_align
    assert tvops.RoIAlign is fastops.nn.RoIAlign and tvops.RoIPool is fastops.nn.RoIPool
    assert tvops.MultiScaleRoIAlign is tvops.poolers.MultiScaleRoIAlign is fastops.nn.MultiScaleRoIAlign
    assert faster_rcnn.MultiScaleRoIAlign is mask_rcnn.MultiScaleRoIAlign is fastops.nn.MultiScaleRoIAlign
    assert retinanet.sigmoid_focal_loss is tvops.focal_loss.sigmoid_focal_loss is fastops.sigmoid_focal_loss
    assert _utils.generalized_box_iou_loss is fastops.generalized_box_iou_loss
    assert rpn.box_ops.box_iou is tvops.box_iou is torchvision_patch.box_iou
    assert tvops.generalized_box_iou is fastops.generalized_box_iou
    assert len(torchvision_attributes_holding_fastops()) >= 25
    fastops.unpatch_torchvision()
    assert torchvision_attributes_holding_fastops() == []
    for name, original in ORIGINALS.items():
        assert getattr(tvops, name) is original
    assert tvops.boxes.nms is ORIGINALS["nms"] and retinanet.sigmoid_focal_loss is ORIGINALS["sigmoid_focal_loss"]


def test_context_manager_and_nesting():
    with fastops.patch_torchvision():
        assert tvops.nms is fastops.nms
    assert tvops.nms is ORIGINALS["nms"]
    fastops.patch_torchvision()
    with fastops.patch_torchvision():  # already patched: leaving the block keeps the patch
        assert tvops.nms is fastops.nms
    assert tvops.nms is fastops.nms
    fastops.patch_torchvision()  # idempotent
    fastops.unpatch_torchvision()
    assert torchvision_attributes_holding_fastops() == []


def test_rotated_box_iou_still_torchvision_s():
    boxes = torch.tensor([[10.0, 10.0, 8.0, 4.0, 30.0], [11.0, 9.0, 6.0, 6.0, -15.0]])
    expected = tvops.box_iou(boxes, boxes, fmt="cxcywhr")
    with fastops.patch_torchvision():
        torch.testing.assert_close(tvops.box_iou(boxes, boxes, fmt="cxcywhr"), expected)
        b = boxes[:, :4]
        torch.testing.assert_close(tvops.box_iou(b, b, fmt="cxcywh"), fastops.box_iou(b, b, fmt="cxcywh"))


class OpNamespaces:
    """Records which fastops and torchvision ops run, by wrapping them in torch.ops, where both
    libraries' Python (forward and autograd formulas) looks them up on every call. (A
    TorchDispatchMode sees every aten op too, and slows these models' training steps ten times.)"""

    def __enter__(self):
        self.ops = set()
        self._wrapped = []
        for qualified in torch._C._dispatch_get_all_op_names():
            namespace, _, name = qualified.partition("::")
            if namespace not in ("fastops", "torchvision") or "." in name:
                continue
            ns = getattr(torch.ops, namespace)
            packet = getattr(ns, name)

            def record(*args, _name=qualified, _packet=packet, **kwargs):
                self.ops.add(_name)
                return _packet(*args, **kwargs)

            setattr(ns, name, record)
            self._wrapped.append((ns, name, packet))
        return self

    def __exit__(self, *exc):
        # the same op objects back: TorchScript knows torch.ops' ops by id(), so a freed one's id
        # could come back as another object's
        for ns, name, packet in self._wrapped:
            setattr(ns, name, packet)


def build(kind):
    """torchvision's detectors, small: a ResNet-18 FPN of 64 channels, 64-96 pixel images, few
    proposals (the multi-level RoI pooling, the matching, the losses and the NMS all run)."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, norm_layer=torchvision.ops.misc.FrozenBatchNorm2d)
    if kind == "retinanet":
        layers, extra = {"layer2": "0", "layer3": "1", "layer4": "2"}, LastLevelP6P7(64, 64)
        in_channels = [128, 256, 512]
    else:
        layers, extra = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}, None
        in_channels = [64, 128, 256, 512]
    backbone = BackboneWithFPN(resnet, layers, in_channels, 64, extra_blocks=extra)
    size = dict(min_size=64, max_size=96)
    if kind == "retinanet":
        sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (16, 32, 64, 128, 256))
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
        return tvdet.RetinaNet(
            backbone, num_classes=5, anchor_generator=anchors, score_thresh=0.0, detections_per_img=50, **size
        )
    proposals = dict(
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=150,
        rpn_pre_nms_top_n_test=150,
        rpn_post_nms_top_n_test=80,
        box_batch_size_per_image=64,
        box_detections_per_img=30,
        box_score_thresh=0.0,
    )
    cls = tvdet.FasterRCNN if kind == "faster_rcnn" else tvdet.MaskRCNN
    return cls(backbone, num_classes=5, **size, **proposals)


def images_and_targets():
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 80, generator=g), torch.rand(3, 56, 72, generator=g)]
    targets = []
    for image in images:
        masks = torch.zeros(2, *image.shape[1:], dtype=torch.uint8)
        masks[0, 10:40, 5:30] = 1
        masks[1, 15:50, 25:60] = 1
        boxes = torch.tensor([[5.0, 10.0, 30.0, 40.0], [25.0, 15.0, 60.0, 50.0]])
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 3]), "masks": masks})
    return images, targets


def run(model, images, targets):
    """Training losses and gradients, then eval detections, and the ops that ran."""
    with OpNamespaces() as ops:
        model.train()
        torch.manual_seed(5)  # the samplers draw
        losses = model(images, targets)
        sum(losses.values()).backward()
        model.eval()
        with torch.no_grad():
            detections = model(images)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return losses, grads, detections, ops.ops


def canonical(detection):
    """Detections sorted by (score, label, box): equal scores may come in another order (ties keep
    their index order in fastops' NMS; torchvision's batched_nms re-sorts large sets unstably)."""
    scores, labels = detection["scores"][:, None], detection["labels"][:, None].float()
    key = torch.cat([scores, labels, detection["boxes"]], 1).double()
    order = sorted(range(len(key)), key=lambda i: tuple(key[i].tolist()))
    return {k: v[order] for k, v in detection.items()}


@pytest.mark.parametrize("kind", ["retinanet", "faster_rcnn", "mask_rcnn"])
def test_models_same_outputs_and_gradients_patched(kind):
    images, targets = images_and_targets()
    reference = build(kind)
    state = reference.state_dict()
    losses, grads, detections, ops = run(reference, images, targets)
    assert not any(op.startswith("fastops") for op in ops)
    with fastops.patch_torchvision():
        model = build(kind)  # built while patched: its RoI modules and box_similarity are fastops'
        assert kind == "retinanet" or type(model.roi_heads.box_roi_pool) is fastops.nn.MultiScaleRoIAlign, (
            "the detection builders look MultiScaleRoIAlign up where the patch put ours"
        )
        model.load_state_dict(state)
        p_losses, p_grads, p_detections, p_ops = run(model, images, targets)
    assert p_losses.keys() == losses.keys()
    for name in losses:
        torch.testing.assert_close(p_losses[name], losses[name], rtol=1e-6, atol=1e-7)
    assert p_grads.keys() == grads.keys()
    for name in grads:
        # the focal loss's gradient differs in the last bits (its own formula): relative 1e-5
        scale = grads[name].abs().max().item() + 1e-12
        torch.testing.assert_close(p_grads[name], grads[name], rtol=0, atol=1e-5 * scale)
    for ours, theirs in zip(p_detections, detections):
        ours, theirs = canonical(ours), canonical(theirs)
        assert ours.keys() == theirs.keys()
        for k in theirs:
            torch.testing.assert_close(ours[k], theirs[k], rtol=0, atol=0)
    expected = {
        "retinanet": {"fastops::sigmoid_focal_loss", "fastops::box_overlap"},
        "faster_rcnn": {"fastops::multi_scale_roi_align", "fastops::multi_scale_roi_align_backward"},
        "mask_rcnn": {"fastops::multi_scale_roi_align", "fastops::roi_align"},  # roi_align: the mask targets
    }[kind] | {"fastops::nms", "fastops::box_overlap"}
    assert expected <= p_ops, p_ops
    assert not any(op.startswith("torchvision::") for op in p_ops), p_ops


def test_a_model_built_before_the_patch_pools_with_fastops():
    """Its torchvision MultiScaleRoIAlign pools each level with the patched roi_align."""
    images, _ = images_and_targets()
    model = build("faster_rcnn").eval()
    with torch.no_grad():
        expected = model(images)
    with fastops.patch_torchvision(), OpNamespaces() as ops, torch.no_grad():
        got = model(images)
    assert {"fastops::roi_align", "fastops::nms"} <= ops.ops
    assert not any(op.startswith("torchvision::") for op in ops.ops)
    for a, b in zip(got, expected):
        for k in b:
            torch.testing.assert_close(canonical(a)[k], canonical(b)[k], rtol=0, atol=0)


def test_patched_model_scripts():
    """torchvision's detection models script; patched, with fastops' modules and functions in them."""
    images, _ = images_and_targets()
    with fastops.patch_torchvision():
        model = build("mask_rcnn").eval()
        scripted = torch.jit.script(model)
        with torch.no_grad():
            expected = model(images)
            _, got = scripted(images)
    for a, b in zip(got, expected):
        for k in b:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_torchvision_version_has_the_patched_names():
    """The names the patch replaces exist in this torchvision (a rename would silently skip one)."""
    for name in ORIGINALS:
        assert hasattr(torchvision.ops, name)
