"""The multi-label classifier (losses against references, thresholds, surface, bad input, compile,
overfitting to macro mAP >= 0.9) and fastops.metrics.f1_optimal_thresholds against brute force."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import fastops
from fastops.metrics import f1_optimal_thresholds, multilabel_average_precision
from fastops.models.backbones import small_resnet
from fastops.models.classification import MultiLabelClassifier, multilabel_classifier

F64 = dict(rtol=1e-6, atol=1e-7)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread skips the parallel regions' overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class PoolBackbone(nn.Module):
    """A fixed feature map: the images themselves (so the loss is a function of the classifier only)."""

    def __init__(self):
        super().__init__()
        self.out_channels = {"out": 3}

    def forward(self, x):
        return {"out": x}


def _batch(n=8, labels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 8, generator=g)
    targets = (torch.rand(n, labels, generator=g) > 0.5).float()
    return images, targets


# ---- losses ---------------------------------------------------------------------------------------


def test_bce_with_class_pos_and_sample_weights_matches_torch():
    images, targets = _batch()
    counts = targets.sum(0)
    model = multilabel_classifier(PoolBackbone(), 4, label_counts=counts, num_samples=8)
    torch.testing.assert_close(model.class_weight, fastops.class_weights(counts))
    torch.testing.assert_close(model.pos_weight, (8 - counts) / counts)
    sample_weight = torch.rand(8)
    logits = model(images)
    expected = F.binary_cross_entropy_with_logits(
        logits, targets, weight=model.class_weight * sample_weight[:, None], pos_weight=model.pos_weight
    )
    torch.testing.assert_close(model.loss(images, targets, sample_weight)["loss"], expected, **F64)


def test_focal_loss_matches_torchvision():
    tvops = pytest.importorskip("torchvision.ops")
    images, targets = _batch()
    model = MultiLabelClassifier(PoolBackbone(), 4, loss="focal", gamma=1.5, alpha=0.3)
    expected = tvops.sigmoid_focal_loss(model(images), targets, alpha=0.3, gamma=1.5, reduction="mean")
    torch.testing.assert_close(model.loss(images, targets)["loss"], expected, **F64)


def test_gradient_of_the_loss_matches_the_reference():
    images, targets = _batch()
    model = MultiLabelClassifier(PoolBackbone(), 4, class_weight=torch.tensor([1.0, 2.0, 0.5, 1.5])).double()
    images = images.double()
    model.loss(images, targets)["loss"].backward()
    ours = model.classifier.weight.grad.clone()
    model.zero_grad()
    F.binary_cross_entropy_with_logits(model(images), targets.double(), weight=model.class_weight.double()).backward()
    torch.testing.assert_close(ours, model.classifier.weight.grad, rtol=1e-10, atol=1e-12)


# ---- surface ---------------------------------------------------------------------------------------


def test_predict_uses_per_label_thresholds():
    images, _ = _batch()
    model = MultiLabelClassifier(PoolBackbone(), 4).eval()
    out = model.predict(images)
    torch.testing.assert_close(out["scores"], torch.sigmoid(model(images)))
    assert torch.equal(out["labels"], out["scores"] >= 0.5)
    thresholds = torch.tensor([0.1, 0.5, 0.9, 1.1])
    model.set_thresholds(thresholds)
    assert torch.equal(model.predict(images)["labels"], out["scores"] >= thresholds)
    assert "thresholds" in model.state_dict()


def test_backbone_outputs_and_in_features():
    tensor_backbone = nn.Conv2d(3, 6, 3)
    model = MultiLabelClassifier(tensor_backbone, 2, in_features=6)
    assert model(torch.randn(2, 3, 9, 9)).shape == (2, 2)
    model = MultiLabelClassifier(small_resnet(), 5)  # layer4's 128 channels, from out_channels
    assert model.classifier.in_features == 128
    model = MultiLabelClassifier(small_resnet(), 5, feature_name="layer3")
    assert model.classifier.in_features == 64 and model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_bad_input_names_the_argument():
    model = MultiLabelClassifier(PoolBackbone(), 4)
    images, targets = _batch()
    with pytest.raises(ValueError, match="targets: expected shape"):
        model.loss(images, targets[:, :3])
    with pytest.raises(ValueError, match=r"targets: values must be in \[0, 1\]"):
        model.loss(images, targets * 2)
    with pytest.raises(ValueError, match="images"):
        model.loss(torch.randn(8, 4, 8, 8), targets)
    with pytest.raises(TypeError, match="images"):
        model.predict(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="sample_weight"):
        model.loss(images, targets, torch.ones(3))
    with pytest.raises(ValueError, match="thresholds"):
        model.set_thresholds(torch.ones(3))
    with pytest.raises(ValueError, match="loss"):
        MultiLabelClassifier(PoolBackbone(), 4, loss="hinge")
    with pytest.raises(ValueError, match="in_features"):
        MultiLabelClassifier(nn.Identity(), 4)
    with pytest.raises(ValueError, match="label_counts"):
        multilabel_classifier(PoolBackbone(), 4, label_counts=torch.ones(3))


def test_compile_fullgraph():
    model = MultiLabelClassifier(small_resnet(), 3).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["bce", "focal"])
def test_overfits_to_macro_map(loss):
    """Eight 32x32 images, each with some of four coloured squares; labels: which colours appear."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    palette = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])
    targets = (torch.rand(8, 4, generator=g) > 0.5).float()
    targets[0] = 1
    images = 0.2 * torch.randn(8, 3, 32, 32, generator=g)
    for i in range(8):
        for c in torch.nonzero(targets[i])[:, 0].tolist():
            y, x = (int(v) for v in torch.randint(0, 24, (2,), generator=g))
            images[i, :, y : y + 8, x : x + 8] = palette[c][:, None, None]
    model = multilabel_classifier(small_resnet(), 4, label_counts=targets.sum(0), num_samples=8, loss=loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        model.loss(images, targets)["loss"].backward()
        optimizer.step()
    scores = model.eval().predict(images)["scores"]
    assert multilabel_average_precision(scores, targets)["macro_map"] >= 0.9


# ---- thresholds -----------------------------------------------------------------------------------


def _brute_force(scores, targets):
    """Every distinct score as the cut, F1 counted directly; the highest cut among the best."""
    best_t, best_f1 = math.inf, -1.0
    for t in sorted(set(scores.tolist()), reverse=True):
        p = scores >= t
        tp, fp, fn = (p & targets).sum(), (p & ~targets).sum(), (~p & targets).sum()
        f1 = 2 * tp / (2 * tp + fp + fn)
        if f1 > best_f1:
            best_t, best_f1 = t, f1
    return best_t, best_f1


@given(
    n=st.integers(1, 30),
    c=st.integers(1, 4),
    levels=st.sampled_from([3, 10, 1000]),
    seed=st.integers(0, 2**16),
)
def test_thresholds_maximize_f1(n, c, levels, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (n, c), generator=g).double() / levels  # ties when levels is small
    targets = torch.rand(n, c, generator=g) > 0.5
    out = f1_optimal_thresholds(scores, targets)
    for k in range(c):
        s, y = scores[:, k].numpy(), targets[:, k].numpy()
        if not y.any():
            assert out["thresholds"][k] == math.inf and math.isnan(out["f1"][k])
            continue
        cut, f1 = _brute_force(s, y)
        assert out["f1"][k].item() == pytest.approx(f1, abs=1e-12)
        predicted = s >= out["thresholds"][k].item()
        assert np.array_equal(predicted, s >= cut)  # the same decisions as the best cut
        below = s[s < cut]
        if below.size:
            assert out["thresholds"][k] > below.max() and out["thresholds"][k] <= cut


def test_thresholds_midpoint_and_one_dimensional():
    scores = torch.tensor([0.9, 0.8, 0.3, 0.1])
    targets = torch.tensor([1, 1, 0, 0])
    out = f1_optimal_thresholds(scores, targets)
    assert out["thresholds"].item() == pytest.approx(0.55) and out["f1"].item() == 1.0


def test_thresholds_bad_input():
    with pytest.raises(ValueError, match="same"):
        f1_optimal_thresholds(torch.rand(3, 2), torch.ones(3, 3))
    with pytest.raises(ValueError, match="0 or 1"):
        f1_optimal_thresholds(torch.rand(3), torch.tensor([0, 2, 1]))
    with pytest.raises(TypeError, match="floating"):
        f1_optimal_thresholds(torch.ones(3, dtype=torch.long), torch.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        f1_optimal_thresholds(torch.tensor([0.1, float("nan")]), torch.tensor([0, 1]))
