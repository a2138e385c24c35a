"""TorchScript and FX, as torchvision's ops support them: every public function and module scripts
(and gives the eager results), and torch.fx.symbolic_trace records each call as one node."""

import io

import pytest
import torch
import torch.fx
import torchvision.ops as tvops
from common import rand_boxes_xyxy
from torch import Tensor
from torch.autograd import gradcheck
from torchvision.models.feature_extraction import get_graph_node_names

import fastops
import fastops.nn

FLOAT = torch.float32


def _boxes(n, seed):
    return rand_boxes_xyxy(n, dtype=FLOAT, generator=torch.Generator().manual_seed(seed))


def _rois(k=6, images=2, size=30.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(k, 2, generator=g) * size
    wh = torch.rand(k, 2, generator=g) * size / 2 + 1
    ids = torch.randint(0, images, (k, 1), generator=g).float()
    return torch.cat([ids, xy, xy + wh], 1)


def _script_calls():
    """(name, call(fn)) for each public function: the call uses keywords where users do."""
    b1, b2, s = _boxes(7, 1), _boxes(5, 2), torch.rand(7)
    idxs = torch.tensor([0, 1, 0, 1, 2, 2, 0])
    x = torch.rand(2, 3, 16, 16)
    rois = _rois()
    feats = [torch.rand(2, 3, 32, 32), torch.rand(2, 3, 16, 16)]
    logits, targets = torch.randn(6, 4), (torch.rand(6, 4) < 0.3).float()
    labels = torch.tensor([0, 3, 4, 1, -100, 2])
    class_scores, class_weight, pos_weight = torch.rand(2, 7, 3), torch.rand(4), torch.rand(4) + 0.5
    costs = torch.rand(2, 4, 5)
    return [
        ("box_iou", lambda f: f(b1, b2)),
        ("box_iou", lambda f: f(b1, b2, fmt="cxcywh")),
        ("generalized_box_iou", lambda f: f(b1, b2)),
        ("distance_box_iou", lambda f: f(b1, b2, eps=1e-6)),
        ("complete_box_iou", lambda f: f(b1, b2)),
        ("box_overlap", lambda f: f(b1, b1, mode="iof", aligned=True)),
        ("box_overlap", lambda f: f(b1.int(), b2.double(), mode="giou")),
        ("generalized_box_iou_loss", lambda f: f(b1, b1.flip(0), reduction="mean")),
        ("distance_box_iou_loss", lambda f: f(b1, b1.flip(0), reduction="sum", eps=1e-6)),
        ("complete_box_iou_loss", lambda f: f(b1, b1.flip(0))),
        ("nms", lambda f: f(b1, s, 0.3)),
        ("batched_nms", lambda f: f(b1, s, idxs, 0.3)),
        ("soft_nms", lambda f: f(b1, s, method="gaussian", idxs=idxs)),
        ("matrix_nms", lambda f: f(b1, s, idxs, kernel="linear", score_threshold=0.1)),
        ("multiclass_nms", lambda f: f(b1[None].expand(2, 7, 4), class_scores, max_detections=5)),
        ("roi_align", lambda f: f(x, rois, 5)),
        ("roi_align", lambda f: f(x, [rois[:3, 1:], rois[3:, 1:]], (4, 3), 0.5, 2, True)),
        ("roi_pool", lambda f: f(x, rois, [3, 3], spatial_scale=0.5)),
        ("multi_scale_roi_align", lambda f: f(feats, rois, 4, [0.5, 0.25], 2, canonical_scale=56.0)),
        ("sigmoid_focal_loss", lambda f: f(logits, targets)),
        ("sigmoid_focal_loss", lambda f: f(logits, targets, gamma=0, alpha=-1, reduction="mean")),
        ("sigmoid_focal_loss", lambda f: f(logits, labels, class_weight=class_weight, normalizer=3.0)),
        ("sigmoid_focal_loss", lambda f: f(logits, targets, reduction="sum", normalizer=torch.tensor(2.0))),
        ("softmax_focal_loss", lambda f: f(logits, labels.clamp(max=3), alpha=0.5, reduction="none")),
        ("weighted_bce_with_logits", lambda f: f(logits, targets, pos_weight=pos_weight)),
        ("class_weights", lambda f: f(torch.tensor([3, 0, 10, 5]), "effective_number", beta=0.9)),
        ("paste_masks", lambda f: f(torch.rand(3, 1, 7, 7), b1[:3] * 2, (20, 24))),
        ("paste_masks", lambda f: f(torch.rand(3, 7, 7).double(), b1[:3].int(), (9, 11), 2, threshold=0.5)),
        ("linear_sum_assignment", lambda f: f(costs[0], maximize=True)),
        ("hungarian_match", lambda f: f(costs, [2, 3])),
        ("hungarian_match", lambda f: f(costs)),
        ("selective_search", lambda f: f((x[0] * 255).to(torch.uint8), "fast", 5, seed=2)),
    ]


@pytest.mark.parametrize("case", range(len(_script_calls())))
def test_every_public_function_scripts_and_matches_eager(case):
    name, call = _script_calls()[case]
    eager_fn = getattr(fastops, name)
    scripted = torch.jit.script(eager_fn)
    expected, got = call(eager_fn), call(scripted)
    if isinstance(expected, tuple):
        for e, g in zip(expected, got):
            torch.testing.assert_close(g, e, rtol=0, atol=0)
    else:
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_multiclass_nms_to_dicts_scripts():
    out = fastops.multiclass_nms(_boxes(7, 1)[None], torch.rand(1, 7, 3), max_detections=4)
    scripted = torch.jit.script(fastops.multiclass_nms_to_dicts)(out)
    for a, b in zip(scripted, fastops.multiclass_nms_to_dicts(out)):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_scripted_code_calling_the_functions():
    """Functions called from a scripted function, with keywords, as a detector head would."""

    @torch.jit.script
    def head(boxes: Tensor, scores: Tensor, labels: Tensor, gt: Tensor, logits: Tensor, t: Tensor) -> Tensor:
        keep = fastops.batched_nms(boxes, scores, labels, iou_threshold=0.5)
        iou = fastops.box_iou(boxes[keep], gt)
        loss = fastops.sigmoid_focal_loss(logits, t, gamma=2.0, reduction="sum")
        return iou.sum() + loss + fastops.generalized_box_iou_loss(boxes, boxes, reduction="mean")

    args = (_boxes(7, 1), torch.rand(7), torch.randint(0, 2, (7,)), _boxes(3, 2), torch.randn(4, 3), torch.rand(4, 3))
    boxes, scores, labels, gt, logits, t = args
    eager = (
        fastops.box_iou(boxes[fastops.batched_nms(boxes, scores, labels, 0.5)], gt).sum()
        + fastops.sigmoid_focal_loss(logits, t, gamma=2, reduction="sum")
        + fastops.generalized_box_iou_loss(boxes, boxes, reduction="mean")
    )
    torch.testing.assert_close(head(*args), eager)


def _modules():
    return [
        (fastops.nn.RoIAlign((4, 4), 0.5, 2), (torch.rand(2, 3, 16, 16), _rois())),
        (fastops.nn.RoIAlign([3, 3], 1, -1, aligned=True), (torch.rand(2, 3, 16, 16), _rois())),
        (fastops.nn.RoIPool(3, 0.5), (torch.rand(2, 3, 16, 16), _rois())),
        (
            fastops.nn.MultiScaleRoIAlign(["p2", "p3"], 4, 2),
            (
                {"p2": torch.rand(2, 3, 32, 32), "p3": torch.rand(2, 3, 16, 16), "pool": torch.rand(2, 3, 8, 8)},
                [_rois(3)[:, 1:] * 3, _rois(4, seed=1)[:, 1:] * 3],
                [(128, 128), (120, 100)],
            ),
        ),
        (fastops.nn.SigmoidFocalLoss(gamma=2), (torch.randn(5, 3), (torch.rand(5, 3) < 0.3).float())),
        (fastops.nn.SoftmaxFocalLoss(alpha=0.25, class_weight=torch.rand(3)), (torch.randn(5, 3), torch.arange(5) % 3)),
        (fastops.nn.WeightedBCEWithLogitsLoss(pos_weight=torch.ones(3) * 2), (torch.randn(5, 3), torch.rand(5, 3))),
    ]


@pytest.mark.parametrize("case", range(len(_modules())))
def test_modules_script_save_load_and_match_eager(case):
    module, inputs = _modules()[case]
    scripted = torch.jit.script(module)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    expected = module(*inputs)
    torch.testing.assert_close(scripted(*inputs), expected, rtol=0, atol=0)
    torch.testing.assert_close(loaded(*inputs), expected, rtol=0, atol=0)


class PoolWrapper(torch.nn.Module):
    def __init__(self, pool: torch.nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, imgs: Tensor, boxes: list[Tensor]) -> Tensor:
        return self.pool(imgs, boxes)


@pytest.mark.parametrize("pool", [fastops.nn.RoIAlign([3, 3], 1.0, -1), fastops.nn.RoIPool([3, 3], 1.0)])
def test_jit_boxes_list(pool):
    """torchvision's test_jit_boxes_list."""
    x = torch.rand(2, 1, 10, 10)
    roi = torch.tensor([[0, 0, 0, 9, 9], [0, 0, 5, 4, 9], [0, 5, 5, 9, 9], [1, 0, 0, 9, 9]], dtype=torch.float).t()
    y = torch.jit.script(PoolWrapper(pool))(x, [roi, roi])
    assert y.shape == (10, 1, 3, 3)


@pytest.mark.parametrize("name", ["roi_align", "roi_pool"])
def test_scripted_backward(name):
    """torchvision's test_backward: gradcheck through the scripted function, float64."""
    x = torch.rand(1, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 4, 4], [0, 0, 2, 3, 4], [0, 2, 2, 4, 4]], dtype=torch.float64)
    scripted = torch.jit.script(getattr(fastops, name))
    gradcheck(lambda z: scripted(z, rois, 2), (x,))


def test_scripted_errors_keep_their_messages():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(torch.jit.Error, match=r"BoxesShapeError: boxes as a Tensor must be \[K, 5\]"):
        torch.jit.script(fastops.roi_align)(x, torch.zeros(1, 4), 2)
    with pytest.raises(torch.jit.Error, match="Invalid Value for arg 'reduction'"):
        torch.jit.script(fastops.sigmoid_focal_loss)(x, x, reduction="xyz")


# ---- FX ---------------------------------------------------------------------------------------


class Detector(torch.nn.Module):
    """A module holding the RoI modules and calling the functions, from this (user) module."""

    def __init__(self):
        super().__init__()
        self.align = fastops.nn.RoIAlign(3, 0.5, 2)
        self.pool = fastops.nn.RoIPool(3, 0.5)
        self.fpn_pool = fastops.nn.MultiScaleRoIAlign(["p2", "p3"], 3, 2)
        self.focal = fastops.nn.SigmoidFocalLoss(reduction="sum")
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x, rois, boxes, scores, labels, logits, targets):
        f = self.conv(x)
        pooled = self.align(f, rois) + self.pool(f, rois) + fastops.roi_align(f, rois, 3, 0.5)
        fpn = self.fpn_pool({"p2": x, "p3": f[:, :, ::2, ::2]}, [rois[:3, 1:], rois[3:, 1:]], [(32, 32), (32, 32)])
        keep = fastops.batched_nms(boxes, scores, labels, 0.5)
        iou = fastops.box_iou(boxes, boxes) + fastops.generalized_box_iou(boxes, boxes)
        losses = (
            self.focal(logits, targets)
            + fastops.sigmoid_focal_loss(logits, targets, reduction="mean")
            + fastops.generalized_box_iou_loss(boxes, boxes.flip(0), reduction="sum")
        )
        conv = fastops.conv2d(x, self.conv.weight, None, 1, 2, 2)
        pasted = fastops.paste_masks(pooled[:, 0], boxes[: pooled.shape[0]], (20, 24), threshold=0.5)
        total = pooled.sum() + fpn.sum() + keep.sum() + iou.sum() + losses + conv.sum() + pasted.sum()
        return total + fastops.nms(boxes, scores, 0.3)


def test_symbolic_trace_of_a_module_holding_the_ops():
    model = Detector()
    inputs = (
        torch.rand(2, 3, 16, 16),
        _rois(),
        _boxes(8, 3),
        torch.rand(8),
        torch.randint(0, 3, (8,)),
        torch.randn(6, 4),
        (torch.rand(6, 4) < 0.3).float(),
    )
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(*inputs), model(*inputs), rtol=0, atol=0)
    targets = {n.target for n in traced.graph.nodes if n.op == "call_function"}
    for fn in (
        fastops.roi_align,
        fastops.roi_pool,
        fastops.batched_nms,
        fastops.nms,
        fastops.box_iou,
        fastops.generalized_box_iou,
        fastops.sigmoid_focal_loss,
        fastops.generalized_box_iou_loss,
        fastops.conv2d,
        fastops.paste_masks,
    ):
        assert fn in targets, fn.__name__


class TwoInputs(torch.nn.Module):
    """torchvision's RoIOpTesterModuleWrapper."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, a, b):
        self.layer(a, b)


class ThreeInputs(TwoInputs):
    """torchvision's MultiScaleRoIAlignModuleWrapper."""

    def forward(self, a, b, c):
        self.layer(a, b, c)


@pytest.mark.parametrize(
    "ours,theirs,wrapper",
    [
        (fastops.nn.RoIAlign(5, 1.0, -1), tvops.RoIAlign(5, 1.0, -1), TwoInputs),
        (fastops.nn.RoIPool(5, 1.0), tvops.RoIPool(5, 1.0), TwoInputs),
        (fastops.nn.MultiScaleRoIAlign(["0"], 7, 2), tvops.MultiScaleRoIAlign(["0"], 7, 2), ThreeInputs),
    ],
)
def test_graph_node_names_as_torchvision(ours, theirs, wrapper):
    """torchvision's test_is_leaf_node: feature extraction sees one node per RoI module call."""
    n_inputs = 2 if wrapper is TwoInputs else 3
    names = get_graph_node_names(wrapper(ours))
    assert len(names[0]) == len(names[1]) == 1 + n_inputs == len(get_graph_node_names(wrapper(theirs))[0])


def test_torch_fx_trace_of_the_roi_modules():
    """torchvision's test_torch_fx_trace."""
    x = torch.rand(2, 50, 5, 5)
    rois = torch.tensor([[0, 0, 0, 9, 9], [0, 0, 5, 4, 9], [0, 5, 5, 9, 9], [1, 0, 0, 9, 9]], dtype=torch.float)
    for module in (fastops.nn.RoIAlign((5, 5), 1, -1), fastops.nn.RoIPool((5, 5), 1)):
        graph_module = torch.fx.symbolic_trace(module)
        torch.testing.assert_close(graph_module(x, rois), module(x, rois), rtol=1e-5, atol=1e-5)
