"""The parts of torchvision.ops' contract beyond values: exception types, early returns, quantized
tensors, the focal loss never exceeding torch's cross-entropy, reprs. (TorchScript and FX:
test_torchscript_fx.py; fastops.patch_torchvision: test_torchvision_patch.py.)"""

import itertools

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvops
from common import rand_boxes_xyxy

import fastops
import fastops.nn

FLOAT = torch.float32

# ---- exception types: ours are also torchvision's ----------------------------------------------


def test_error_classes_are_both_types():
    assert issubclass(fastops.ArgumentError, ValueError) and issubclass(fastops.ArgumentError, RuntimeError)
    assert issubclass(fastops.ArgumentTypeError, TypeError) and issubclass(fastops.ArgumentTypeError, RuntimeError)
    assert issubclass(fastops.BoxesShapeError, ValueError) and issubclass(fastops.BoxesShapeError, AssertionError)
    assert issubclass(fastops.ConvArgumentError, fastops.ArgumentError)


@pytest.mark.parametrize(
    "boxes,scores,match",
    [
        (torch.rand(4), torch.rand(3), r"boxes must have shape \[N, 4\]"),
        (torch.rand(3, 5), torch.rand(3), r"boxes must have shape \[N, 4\]"),
        (torch.rand(3, 4), torch.rand(3, 2), "scores must be 1-D"),
        (torch.rand(3, 4), torch.rand(4), "same length"),
    ],
)
def test_nms_shape_errors_are_runtime_and_value_errors(boxes, scores, match):
    """torchvision's test_nms_input_errors: RuntimeError; ours is also a ValueError naming the argument."""
    for fn in (tvops.nms, fastops.nms):
        with pytest.raises(RuntimeError):
            fn(boxes, scores, 0.5)
    with pytest.raises(fastops.ArgumentError, match=match):
        fastops.nms(boxes, scores, 0.5)
    with pytest.raises(fastops.ArgumentError, match=match):
        fastops.batched_nms(boxes, scores, torch.zeros(len(boxes), dtype=torch.int64), 0.5)


def test_dtype_errors_are_runtime_and_type_errors():
    boxes = rand_boxes_xyxy(3)
    with pytest.raises(RuntimeError):
        tvops.nms(boxes.long(), torch.rand(3), 0.5)
    with pytest.raises(fastops.ArgumentTypeError, match="boxes must be float16"):
        fastops.nms(boxes.long(), torch.rand(3), 0.5)
    x = torch.rand(1, 2, 8, 8)
    rois = torch.tensor([[0, 1.0, 1, 5, 5]], dtype=torch.float64)
    with pytest.raises(RuntimeError):
        tvops.roi_align(x, rois, 2)
    with pytest.raises(fastops.ArgumentTypeError):
        fastops.roi_align(x, rois, 2)


@pytest.mark.parametrize("fn", ["roi_align", "roi_pool"])
def test_roi_box_shape_errors_are_assertion_and_value_errors(fn):
    """torchvision's _helper_boxes_shape: AssertionError; ours is also a ValueError."""
    a = torch.linspace(1, 8 * 8, 8 * 8).reshape(1, 1, 8, 8)
    for bad in (torch.tensor([[0, 0, 3, 3]], dtype=a.dtype), [torch.tensor([[0, 0, 3]], dtype=a.dtype)]):
        for ops in (tvops, fastops):
            with pytest.raises(AssertionError):
                getattr(ops, fn)(a, bad, output_size=(2, 2))
        with pytest.raises(fastops.BoxesShapeError, match="boxes"):
            getattr(fastops, fn)(a, bad, output_size=(2, 2))
    module = fastops.nn.RoIAlign(2, 1.0, 2) if fn == "roi_align" else fastops.nn.RoIPool(2, 1.0)
    with pytest.raises(AssertionError):
        module(a, torch.tensor([[0, 0, 3, 3]], dtype=a.dtype))


def test_kernel_value_errors_become_runtime_errors():
    """Errors raised by the C++ checks (a batch index out of range, a negative threshold) keep
    their messages and become ArgumentError."""
    x = torch.rand(1, 2, 8, 8)
    with pytest.raises(fastops.ArgumentError, match=r"boxes\[0, 0\]"):
        fastops.roi_align(x, torch.tensor([[3, 1.0, 1, 5, 5]]), 2)
    with pytest.raises(fastops.ArgumentError, match="iou_threshold must be >= 0"):
        fastops.nms(rand_boxes_xyxy(3, dtype=FLOAT), torch.rand(3), -0.5)
    with pytest.raises(fastops.ArgumentError, match="gamma must be finite"):
        fastops.sigmoid_focal_loss(torch.rand(3, 2), torch.rand(3, 2), gamma=-1.0)


@pytest.mark.parametrize(
    "fn", [fastops.generalized_box_iou_loss, fastops.distance_box_iou_loss, fastops.complete_box_iou_loss]
)
def test_box_loss_reduction_error_has_torchvision_wording(fn):
    b = rand_boxes_xyxy(3, dtype=FLOAT)
    with pytest.raises(ValueError, match="Invalid"):
        fn(b, b, reduction="xyz")


def test_focal_loss_errors_have_torchvision_wording():
    x, t = torch.rand(4, 3), torch.rand(4, 3)
    with pytest.raises(ValueError, match="Invalid"):
        fastops.sigmoid_focal_loss(x, t, 0.25, 2, "xyz")
    for alpha in (1.5, float("nan")):
        for fn in (tvops.sigmoid_focal_loss, fastops.sigmoid_focal_loss):
            with pytest.raises(ValueError, match="Invalid alpha value"):
                fn(x, t, alpha=alpha)


def test_type_errors_name_the_argument():
    with pytest.raises(TypeError, match=r"boxes must be a torch\.Tensor, got list"):
        fastops.nms([[0, 0, 1, 1]], torch.rand(1), 0.5)
    with pytest.raises(TypeError, match=r"input must be a torch\.Tensor, got list"):
        fastops.roi_align([1.0], torch.zeros(1, 5), 2)
    with pytest.raises(TypeError, match=r"targets must be a torch\.Tensor, got float"):
        fastops.sigmoid_focal_loss(torch.rand(2), 1.0)


# ---- early returns -----------------------------------------------------------------------------


def test_batched_nms_empty_boxes_return_empty_whatever_the_rest():
    """torchvision's test_batched_nms_implementations: batched_nms(empty, None, None, None)."""
    empty = torch.empty((0,), dtype=torch.int64)
    for fn in (tvops.batched_nms, fastops.batched_nms):
        torch.testing.assert_close(fn(empty, None, None, None), empty)
    out = fastops.batched_nms(torch.empty(0, 4, dtype=torch.float64), torch.empty(0), torch.empty(0), 0.5)
    assert out.dtype == torch.int64 and out.shape == (0,)
    scripted = torch.jit.script(fastops.batched_nms)
    assert scripted(torch.empty(0, 4), torch.empty(0), torch.empty(0, dtype=torch.int64), 0.5).shape == (0,)


# ---- quantized CPU tensors: torchvision's results ----------------------------------------------


def _boxes_with_iou(n, iou, generator):
    """torchvision's _create_tensors_with_iou: the last box has IoU iou (+1e-5) with the first."""
    boxes = torch.rand(n, 4, generator=generator) * 100
    boxes[:, 2:] += boxes[:, :2]
    boxes[-1, :] = boxes[0, :]
    x0, _, x1, _ = boxes[-1].tolist()
    iou += 1e-5
    boxes[-1, 2] += (x1 - x0) * (1 - iou) / iou
    return boxes, torch.rand(n, generator=generator)


@pytest.mark.parametrize("iou", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("scale,zero_point", [(1, 0), (2, 50), (3, 10), (0.1, 3)])
@pytest.mark.parametrize("qdtype", [torch.quint8, torch.qint8, torch.qint32])
def test_quantized_nms_equals_torchvision(iou, scale, zero_point, qdtype):
    g = torch.Generator().manual_seed(int(iou * 10) + zero_point)
    boxes, scores = _boxes_with_iou(1000, iou, g)
    qboxes = torch.quantize_per_tensor(boxes, scale, zero_point, qdtype)
    qscores = torch.quantize_per_tensor(scores * 100, scale, zero_point, qdtype)
    keep = fastops.nms(qboxes, qscores, iou)
    torch.testing.assert_close(keep, tvops.nms(qboxes, qscores, iou))
    # and the NMS of the dequantized tensors (torchvision's test_qnms)
    torch.testing.assert_close(keep, tvops.nms(qboxes.dequantize(), qscores.dequantize(), iou))
    scripted = torch.jit.script(fastops.nms)
    torch.testing.assert_close(scripted(qboxes, qscores, iou), keep)
    idxs = torch.randint(0, 3, (1000,), generator=g)
    torch.testing.assert_close(
        fastops.batched_nms(qboxes, qscores, idxs, iou),
        fastops.batched_nms(qboxes.int_repr().float(), qscores.int_repr().float(), idxs, iou),
    )


def _qrois(img_size, num_imgs, num_rois, generator):
    """torchvision's _make_rois, plus a few boxes reaching outside the map."""
    rois = torch.randint(0, img_size // 2, size=(num_rois, 5), generator=generator).float()
    rois[:, 0] = torch.randint(0, num_imgs, size=(num_rois,), generator=generator)
    rois[:, 3:] += rois[:, 1:3]
    rois[:5, 1:] -= 3
    return rois


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("scale,zero_point", [(1, 0), (2, 10), (0.1, 50), (0.37, 3)])
@pytest.mark.parametrize("qdtype", [torch.qint8, torch.quint8, torch.qint32])
def test_quantized_roi_align_equals_torchvision(aligned, scale, zero_point, qdtype):
    g = torch.Generator().manual_seed(zero_point)
    x = torch.randint(50, 100, size=(1, 3, 10, 12), generator=g).float()
    qx = torch.quantize_per_tensor(x, scale, zero_point, qdtype)
    qrois = torch.quantize_per_tensor(_qrois(10, 1, 40, g), scale, zero_point, qdtype)
    for sampling_ratio, spatial_scale in itertools.product((-1, 2), (1.0, 0.7)):
        out = fastops.roi_align(qx, qrois, 5, spatial_scale, sampling_ratio, aligned)
        expected = tvops.roi_align(qx, qrois, 5, spatial_scale, sampling_ratio, aligned)
        assert out.is_quantized and out.dtype == qdtype
        assert (out.q_scale(), out.q_zero_point()) == (qx.q_scale(), qx.q_zero_point())
        torch.testing.assert_close(out.int_repr(), expected.int_repr(), rtol=0, atol=0)
    module = torch.jit.script(fastops.nn.RoIAlign(5, 1.0, -1, aligned))
    torch.testing.assert_close(module(qx, qrois).int_repr(), tvops.roi_align(qx, qrois, 5, 1.0, -1, aligned).int_repr())


def test_quantized_roi_align_rules():
    x = torch.randint(50, 100, size=(2, 3, 10, 10)).float()
    qx = torch.quantize_per_tensor(x, 1, 0, torch.qint8)
    qrois = torch.quantize_per_tensor(_qrois(10, 2, 10, torch.Generator().manual_seed(0)), 1, 0, torch.qint8)
    for fn in (tvops.roi_align, fastops.roi_align):
        with pytest.raises(RuntimeError, match="Only one image per batch is allowed"):
            fn(qx, qrois, output_size=5)
    with pytest.raises(ValueError, match="rois must also be quantized"):
        fastops.roi_align(qx[:1], qrois.dequantize(), 5)
    empty = fastops.roi_align(qx[:1], qrois[:0], 5)
    assert empty.is_quantized and empty.shape == (0, 3, 5, 5)


# ---- the focal loss never exceeds torch's cross-entropy -----------------------------------------


def diverse_logits_and_targets(shape=(5, 2), dtype=FLOAT, seed=0):
    """torchvision's _generate_diverse_input_target_pair: logits of small, big and random
    probabilities against all-0, all-1 and random binary targets."""
    g = torch.Generator().manual_seed(seed)
    ranges = {"small": (0.0, 0.2), "big": (0.8, 1.0), "random": (0.0, 1.0)}
    inputs, targets = [], []
    for p_range, t_kind in itertools.product(ranges, ("zeros", "ones", "random_binary")):
        low, high = ranges[p_range]
        p = (low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)).clamp(1e-7, 1 - 1e-7)
        inputs.append(torch.log(p / (1 - p)).to(dtype))
        t = {"zeros": torch.zeros(shape), "ones": torch.ones(shape)}.get(t_kind)
        targets.append((torch.rand(shape, generator=g) < 0.5).float() if t is None else t)
    return torch.cat(inputs), torch.cat(targets).to(dtype)


def sweep_logits(dtype, n=25_000, seed=0):
    """Logits across the range that matters (|x| up to 110: past exp's clamp and underflow)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat(
        [
            torch.randn(n, generator=g) * 4,
            torch.linspace(-110, 110, n),
            torch.rand(n, generator=g) * 220 - 110,
            torch.logit(torch.rand(n, generator=g)),
            torch.tensor([0.76725519, 0.0, -0.0, 1e-30, -1e-30, 87.3, -87.3, 104.0, 200.0]),
        ]
    )
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_focal_loss_never_exceeds_torch_cross_entropy(dtype):
    x = sweep_logits(dtype)
    g = torch.Generator().manual_seed(1)
    targets = {
        "zeros": torch.zeros_like(x),
        "ones": torch.ones_like(x),
        "binary": (torch.rand(x.shape, generator=g) < 0.5).to(dtype),
        "soft": torch.rand(x.shape, generator=g).to(dtype),
    }
    for t in targets.values():
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        for gamma, alpha in itertools.product((0.0, 0.5, 2.0, 3.7), (-1.0, 0.0, 0.25, 1.0)):
            loss = fastops.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma)
            assert loss.dtype == dtype
            assert (loss <= ce).all(), (gamma, alpha, x[loss > ce][:4], t[loss > ce][:4])
            assert (loss >= 0).all()


def test_the_reported_element():
    """x = 0.76725519, t = 1, gamma = 0 came out 1 ulp above torch's cross-entropy."""
    x, t = torch.tensor([0.76725519]), torch.tensor([1.0])
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert fastops.sigmoid_focal_loss(x, t, alpha=-1, gamma=0) <= ce
    assert fastops.weighted_bce_with_logits(x, t, reduction="none") <= ce


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cross_entropy_term_accuracy_against_torch(dtype):
    """The stated accuracy: at gamma = 0, alpha < 0 the loss is torch's cross-entropy with
    log1p(exp(-|x|)) up to 2^-20 low, so it is at most 2^-19 of the value below torch's, plus the
    rounding of the operations around that term (two units of the last place of |x| + ce)."""
    x = sweep_logits(dtype)
    g = torch.Generator().manual_seed(2)
    eps = torch.finfo(dtype).eps
    for t in (torch.zeros_like(x), torch.ones_like(x), torch.rand(x.shape, generator=g).to(dtype)):
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none").double()
        ours = fastops.sigmoid_focal_loss(x, t, alpha=-1, gamma=0).double()
        slack = 2**-19 * ce + 2 * eps * (x.double().abs() + ce) + torch.finfo(dtype).tiny
        assert ((ce - ours) <= slack).all()
        # half the elements or more are torch's bits exactly
        assert (ours == ce).double().mean() > (0.2 if dtype != torch.bfloat16 else 0.9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.58, 1.0])
@pytest.mark.parametrize("gamma", [0, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_torchvision_correct_ratio(alpha, gamma, dtype, seed):
    """torchvision's test_correct_ratio, float16 on the CPU included (torchvision skips it)."""
    x, t = diverse_logits_and_targets(dtype=dtype, seed=seed)
    focal = fastops.sigmoid_focal_loss(x, t, gamma=gamma, alpha=alpha, reduction="none")
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert torch.all(focal <= ce)
    p = torch.sigmoid(x)
    p_t = p * t + (1 - p) * (1 - t)
    ratio = (1.0 - p_t) ** gamma
    if alpha >= 0:
        ratio = ratio * (alpha * t + (1 - alpha) * (1 - t))
    tol = 1e-3 if dtype == torch.float16 else 1e-5
    torch.testing.assert_close(ratio, focal / ce, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("seed", [2, 3])
def test_torchvision_equal_ce_loss(reduction, dtype, seed):
    """torchvision's test_equal_ce_loss (alpha = -1, gamma = 0 is BCE), float16 on the CPU too."""
    x, t = diverse_logits_and_targets(dtype=dtype, seed=seed)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    focal = fastops.sigmoid_focal_loss(xa, t, gamma=0, alpha=-1, reduction=reduction)
    ce = F.binary_cross_entropy_with_logits(xb, t, reduction=reduction)
    torch.testing.assert_close(focal, ce)
    focal.backward()
    ce.backward()
    # float16: torch rounds each step of its gradient (sigmoid(x) - t) to float16, ours once
    tol = dict(rtol=2**-9, atol=2**-11) if dtype == torch.float16 else {}
    torch.testing.assert_close(xa.grad, xb.grad, **tol)


# ---- reprs ----------------------------------------------------------------------------------------


def test_module_reprs_are_torchvision_s():
    for ours, theirs in [
        (fastops.nn.MultiScaleRoIAlign(["0"], (7, 7), 2), tvops.MultiScaleRoIAlign(["0"], (7, 7), 2)),
        (fastops.nn.MultiScaleRoIAlign(["0", "1"], 7, 2), tvops.MultiScaleRoIAlign(["0", "1"], 7, 2)),
        (fastops.nn.RoIAlign((5, 5), 0.5, 2, True), tvops.RoIAlign((5, 5), 0.5, 2, True)),
        (fastops.nn.RoIPool(7, 0.25), tvops.RoIPool(7, 0.25)),
    ]:
        assert repr(ours) == repr(theirs)
