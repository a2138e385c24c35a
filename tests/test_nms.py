"""NMS family: nms, batched_nms, soft_nms, matrix_nms, multiclass_nms."""

import math
import subprocess
import sys

import pytest
import torch
import torchvision.ops as tvops
from common import DEVICES
from hypothesis import given
from hypothesis import strategies as st
from torchvision.ops.boxes import _batched_nms_coordinate_trick

import fastops

# ---- references ----------------------------------------------------------------------------------


def iou_matrix(boxes: torch.Tensor) -> torch.Tensor:
    """torchvision's NMS IoU formula, in the boxes' dtype (float32 for half boxes)."""
    b = boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / ((area[:, None] + area[None, :]) - inter)


def greedy_reference(boxes, scores, iou_threshold, idxs=None):
    """Plain greedy NMS: visit by decreasing score (stable, NaN last), keep a box unless a kept box
    of its class has IoU > threshold with it (compared in double, as torchvision compares)."""
    n = boxes.shape[0]
    key = torch.where(scores.isnan(), torch.full_like(scores, -math.inf), scores)
    order = key.sort(stable=True, descending=True).indices.tolist()
    iou = iou_matrix(boxes).tolist()  # Python floats: the comparison below runs in double
    classes = idxs.tolist() if idxs is not None else [0] * n
    kept = []
    for i in order:
        if all(not (classes[k] == classes[i] and iou[k][i] > iou_threshold) for k in kept):
            kept.append(i)
    return torch.tensor(kept, dtype=torch.int64)


def soft_reference(boxes, scores, iou_threshold, sigma, min_score, method, idxs=None):
    boxes, scores = boxes.double(), scores.double()
    iou = torch.nan_to_num(iou_matrix(boxes), nan=0.0)
    alive = [i for i in range(len(scores)) if not math.isnan(scores[i])]
    cur = {i: scores[i].item() for i in alive}
    classes = idxs.tolist() if idxs is not None else [0] * len(scores)
    keep, kept_scores = [], []
    while alive:
        best = max(alive, key=lambda i: (cur[i], -i))
        keep.append(best)
        kept_scores.append(cur[best])
        alive.remove(best)
        survivors = []
        for j in alive:
            if classes[j] == classes[best]:
                o = iou[best, j].item()
                if method == "linear":
                    cur[j] *= (1 - o) if o >= iou_threshold else 1.0
                else:
                    cur[j] *= math.exp(-(o * o) / sigma)
            if cur[j] >= min_score:
                survivors.append(j)
        alive = survivors
    return torch.tensor(keep, dtype=torch.int64), torch.tensor(kept_scores, dtype=torch.float64)


def matrix_reference(boxes, scores, idxs=None, kernel="gaussian", sigma=2.0, score_threshold=-math.inf):
    """mmdet's mask_matrix_nms written for boxes, in float64."""
    order = scores.sort(stable=True, descending=True).indices
    b, s = boxes.double()[order], scores.double()[order]
    n = len(s)
    iou = torch.nan_to_num(iou_matrix(b), nan=0.0).triu(diagonal=1)
    same = torch.ones(n, n, dtype=torch.bool) if idxs is None else idxs[order][:, None] == idxs[order][None, :]
    decay_iou = iou * same.triu(diagonal=1)
    comp = decay_iou.max(0).values.expand(n, n).t()
    if kernel == "gaussian":
        decay = (torch.exp(-sigma * decay_iou**2) / torch.exp(-sigma * comp**2)).min(0).values
    else:
        decay = ((1 - decay_iou) / (1 - comp)).min(0).values
    new = s * decay
    keep = (new >= score_threshold).nonzero().squeeze(1)
    by_score = new[keep].sort(stable=True, descending=True).indices
    return order[keep[by_score]], new[keep[by_score]]


def random_boxes(n, *, image=800.0, min_side=4.0, max_side=204.0, dtype=torch.float32, generator=None):
    xy = torch.rand(n, 2, generator=generator) * image
    wh = torch.rand(n, 2, generator=generator) * (max_side - min_side) + min_side
    return torch.cat([xy, xy + wh], 1).to(dtype)


def adversarial_boxes():
    """Identical boxes, tied scores, nested boxes, an IoU of exactly 0.5."""
    boxes = torch.tensor(
        [
            [0, 0, 10, 10],
            [0, 0, 10, 10],  # identical to 0
            [0, 0, 10, 5],  # IoU with 0 exactly 0.5
            [2, 2, 8, 8],  # nested in 0 (IoU 0.36)
            [20, 20, 30, 30],
            [20, 20, 30, 30],  # identical to 4
            [21, 21, 29, 29],  # nested in 4 (IoU 0.64)
            [50, 50, 50, 50],  # a point (zero area)
            [50, 50, 50, 50],
        ],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.9, 0.9, 0.8, 0.7, 0.5, 0.5, 0.5, 0.3, 0.3])
    return boxes, scores


# ---- nms / batched_nms -----------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 10, 200, 3000])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_torchvision(n, iou_threshold, dtype, device):
    g = torch.Generator().manual_seed(n)
    boxes, scores = random_boxes(n, dtype=dtype, generator=g), torch.rand(n, generator=g).to(dtype)
    keep = fastops.nms(boxes.to(device), scores.to(device), iou_threshold)
    assert keep.dtype == torch.int64
    assert torch.equal(keep.cpu(), tvops.nms(boxes, scores, iou_threshold))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("iou_threshold", [0.0, 0.36, 0.5, 0.64, 1.0])
def test_nms_adversarial(iou_threshold, device):
    boxes, scores = adversarial_boxes()
    keep = fastops.nms(boxes.to(device), scores.to(device), iou_threshold).cpu()
    assert torch.equal(keep, tvops.nms(boxes, scores, iou_threshold))
    assert torch.equal(keep, greedy_reference(boxes, scores, iou_threshold))
    if iou_threshold == 0.5:  # IoU exactly at the threshold does not suppress
        assert 2 in keep.tolist()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_half_precision_computes_in_float32(dtype, device):
    g = torch.Generator().manual_seed(0)
    boxes = random_boxes(2000, dtype=dtype, generator=g)
    scores = torch.rand(2000, generator=g).to(dtype)
    keep = fastops.nms(boxes.to(device), scores.to(device), 0.5).cpu()
    assert torch.equal(keep, tvops.nms(boxes.float(), scores.float(), 0.5))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("classes", [1, 3, 80])
def test_batched_nms_matches_torchvision(classes, device):
    g = torch.Generator().manual_seed(classes)
    n = 3000
    boxes = random_boxes(n, generator=g)
    scores = torch.randperm(n, generator=g).float() / n  # untied: torchvision's order is then fully defined
    idxs = torch.randint(0, classes, (n,), generator=g)
    keep = fastops.batched_nms(boxes.to(device), scores.to(device), idxs.to(device), 0.5).cpu()
    assert torch.equal(keep, tvops.batched_nms(boxes, scores, idxs, 0.5))


def test_batched_nms_ties_follow_the_stable_order():
    """With tied scores, our order is the stable one (as torchvision's coordinate-offset path);
    torchvision's per-class path sorts unstably, so there only the kept set is compared."""
    g = torch.Generator().manual_seed(3)
    n = 3000
    boxes = random_boxes(n, generator=g)
    scores = torch.randint(0, 20, (n,), generator=g).float()
    idxs = torch.randint(-5, 5, (n,), generator=g)  # negative categories are fine
    keep = fastops.batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(keep, _batched_nms_coordinate_trick(boxes, scores, idxs, 0.5))
    assert set(keep.tolist()) == set(tvops.batched_nms(boxes, scores, idxs, 0.5).tolist())
    assert torch.equal(keep, greedy_reference(boxes, scores, 0.5, idxs))


def test_batched_nms_accepts_any_integer_idxs():
    g = torch.Generator().manual_seed(1)
    boxes, scores = random_boxes(300, generator=g), torch.rand(300, generator=g)
    idxs = torch.randint(0, 4, (300,), generator=g)
    expected = fastops.batched_nms(boxes, scores, idxs, 0.5)
    for dtype in (torch.int32, torch.int16, torch.uint8):
        assert torch.equal(fastops.batched_nms(boxes, scores, idxs.to(dtype), 0.5), expected)


nms_box = st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 30), st.integers(0, 30)).map(
    lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]
)


@given(
    st.lists(st.tuples(nms_box, st.integers(0, 8), st.integers(0, 2)), min_size=1, max_size=40),
    st.sampled_from([0.0, 0.2, 0.5, 0.8]),
)
def test_nms_properties(items, iou_threshold):
    boxes = torch.tensor([b for b, _, _ in items], dtype=torch.float32)
    scores = torch.tensor([s for _, s, _ in items], dtype=torch.float32)  # small integers: many ties
    idxs = torch.tensor([c for _, _, c in items])
    keep = fastops.batched_nms(boxes, scores, idxs, iou_threshold)
    assert torch.equal(keep, greedy_reference(boxes, scores, iou_threshold, idxs))
    iou = iou_matrix(boxes)
    same = idxs[:, None] == idxs[None, :]
    k = keep.tolist()
    rank = {i: r for r, i in enumerate(scores.sort(stable=True, descending=True).indices.tolist())}
    # kept boxes of one class overlap at most at the threshold
    sub = (iou[keep][:, keep].nan_to_num(0) * same[keep][:, keep]).double()
    assert (sub.fill_diagonal_(0) <= iou_threshold).all()
    # every suppressed box overlaps a kept box of its class, ranked before it, above the threshold
    for j in set(range(len(items))) - set(k):
        assert any(same[i, j] and iou[i, j].item() > iou_threshold and rank[i] < rank[j] for i in k)


@pytest.mark.parametrize("device", DEVICES)
def test_nms_nan_policy(device):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 9, 9], [0, 0, 10, 10]], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.8, math.nan])
    boxes[1, 2] = math.nan  # the best-scored box is broken: it must not suppress the others
    keep = fastops.nms(boxes.to(device), scores.to(device), 0.5).cpu().tolist()
    assert keep[0] == 1  # still kept, in score order
    assert 2 in keep  # not suppressed by the NaN box
    assert 0 not in keep  # suppressed by box 2 (IoU 0.64)
    assert 3 not in keep  # the NaN score ranks last: box 3 comes after box 2, which suppresses it
    # a NaN score ranks below -inf ties: as -inf, in index order
    s = torch.tensor([-math.inf, math.nan, 1.0])
    b = torch.tensor([[0, 0, 1, 1], [5, 5, 6, 6], [10, 10, 11, 11]], dtype=torch.float32)
    assert fastops.nms(b.to(device), s.to(device), 0.5).cpu().tolist() == [2, 0, 1]


@pytest.mark.parametrize("device", DEVICES)
def test_nms_empty(device):
    e = torch.zeros(0, 4, device=device)
    keep = fastops.nms(e, torch.zeros(0, device=device), 0.5)
    assert keep.dtype == torch.int64 and keep.shape == (0,)
    assert fastops.batched_nms(
        e, torch.zeros(0, device=device), torch.zeros(0, dtype=torch.int64, device=device), 0.5
    ).shape == (0,)


def test_nms_errors_name_the_argument():
    boxes, scores = random_boxes(5), torch.rand(5)
    with pytest.raises(ValueError, match="same length"):
        fastops.nms(boxes, torch.rand(4), 0.5)
    with pytest.raises(ValueError, match="scores must be 1-D"):
        fastops.nms(boxes, scores[:, None], 0.5)
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        fastops.nms(boxes[:, :3], scores, 0.5)
    with pytest.raises(TypeError, match="idxs must be an integer tensor"):
        fastops.batched_nms(boxes, scores, torch.zeros(5), 0.5)
    with pytest.raises(ValueError, match=r"idxs must have shape \[N\]"):
        fastops.batched_nms(boxes, scores, torch.zeros(4, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match="iou_threshold must be >= 0"):
        fastops.nms(boxes, scores, -0.1)
    with pytest.raises(ValueError, match="iou_threshold must be >= 0"):
        fastops.nms(boxes, scores, math.nan)
    with pytest.raises(TypeError, match="boxes must be float16"):
        fastops.nms(boxes.long(), scores, 0.5)


@pytest.mark.cuda
def test_nms_device_mismatch():
    with pytest.raises(RuntimeError, match="same device"):
        fastops.nms(random_boxes(5).cuda(), torch.rand(5), 0.5)


MILLION_SCRIPT = """
import torch, fastops
g = torch.Generator().manual_seed(0)
n = 1_000_000
xy = torch.rand(n, 2, generator=g) * 800
boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 200 + 4], 1)
scores = torch.rand(n, generator=g)
fastops.nms(boxes[:1000], scores[:1000], 0.5)  # warm up

def status_kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

open("/proc/self/clear_refs", "w").write("5")  # resets the peak resident set (VmHWM) to now
before = status_kib("VmRSS")
keep = fastops.nms(boxes, scores, 0.5)
torch.save({"keep": keep, "grown_kib": status_kib("VmHWM") - before}, OUT)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_nms_million_boxes_in_linear_memory(tmp_path):
    """N = 1,000,000 in a fresh process: the peak resident memory during the call (Linux's VmHWM,
    reset just before) grows by O(N) (a pairwise mask would need 125 GB); the result is checked on
    samples against the definition."""
    out = tmp_path / "million.pt"
    subprocess.run([sys.executable, "-c", f"OUT = {str(out)!r}\n" + MILLION_SCRIPT], check=True, cwd=tmp_path)
    result = torch.load(out)
    keep, grown_mb = result["keep"], result["grown_kib"] / 1024
    assert 5 < grown_mb < 200, grown_mb  # the kernel's own arrays: about 30 MB
    g = torch.Generator().manual_seed(0)
    n = 1_000_000
    xy = torch.rand(n, 2, generator=g) * 800
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 200 + 4], 1)
    scores = torch.rand(n, generator=g)
    sample = keep[torch.randperm(len(keep), generator=g)[:2000]]
    assert (iou_matrix(boxes[sample]).fill_diagonal_(0).double() <= 0.5).all()
    top = scores.sort(descending=True, stable=True).indices[:3000]
    local = top[greedy_reference(boxes[top], scores[top], 0.5)]
    assert torch.equal(keep[: len(local)], local)


# ---- soft-NMS ------------------------------------------------------------------------------------

# mmcv's published values (tests/test_ops/test_nms.py, test_softnms_allclose)
MMCV_BOXES = [[6.0, 3.0, 8.0, 7.0], [3.0, 6.0, 9.0, 11.0], [3.0, 7.0, 10.0, 12.0], [1.0, 4.0, 13.0, 7.0]]
MMCV_SCORES = [0.6, 0.9, 0.7, 0.2]
MMCV_SOFT = {
    "linear": ([1, 0, 2, 3], [0.9, 0.6, 0.29024392, 0.2]),
    "gaussian": ([1, 0, 2, 3], [0.9, 0.59630775, 0.35275510, 0.18650459]),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_mmcv_published_values(method, device):
    boxes, scores = torch.tensor(MMCV_BOXES, device=device), torch.tensor(MMCV_SCORES, device=device)
    keep, new_scores = fastops.soft_nms(
        boxes, scores, iou_threshold=0.3, sigma=0.5, score_threshold=0.01, method=method
    )
    inds, expected = MMCV_SOFT[method]
    assert keep.cpu().tolist() == inds
    torch.testing.assert_close(new_scores.cpu(), torch.tensor(expected))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("classes", [None, 3])
def test_soft_nms_matches_reference(method, classes, device):
    g = torch.Generator().manual_seed(7)
    n = 150
    boxes = random_boxes(n, image=300, generator=g, dtype=torch.float64)
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    idxs = None if classes is None else torch.randint(0, classes, (n,), generator=g)
    keep, new_scores = fastops.soft_nms(
        boxes.to(device), scores.to(device), 0.3, 0.5, 0.05, method, idxs=None if idxs is None else idxs.to(device)
    )
    ref_keep, ref_scores = soft_reference(boxes, scores, 0.3, 0.5, 0.05, method, idxs)
    assert torch.equal(keep.cpu(), ref_keep)
    torch.testing.assert_close(new_scores.cpu(), ref_scores)
    assert new_scores.dtype == scores.dtype


def test_soft_nms_edges():
    boxes, scores = torch.tensor(MMCV_BOXES), torch.tensor(MMCV_SCORES)
    keep, s = fastops.soft_nms(boxes[:0], scores[:0])
    assert keep.shape == (0,) and s.shape == (0,)
    scores_nan = scores.clone()
    scores_nan[1] = math.nan
    keep, _ = fastops.soft_nms(boxes, scores_nan)
    assert 1 not in keep.tolist()
    with pytest.raises(ValueError, match="method must be"):
        fastops.soft_nms(boxes, scores, method="hard")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        fastops.soft_nms(boxes, scores, sigma=0.0, method="gaussian")


# ---- Matrix NMS --------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("classes", [None, 4])
@pytest.mark.parametrize("score_threshold", [None, 0.2])
def test_matrix_nms_matches_reference(kernel, classes, score_threshold, device):
    g = torch.Generator().manual_seed(11)
    n = 300
    boxes = random_boxes(n, image=400, generator=g, dtype=torch.float64)
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    idxs = None if classes is None else torch.randint(0, classes, (n,), generator=g)
    keep, new_scores = fastops.matrix_nms(
        boxes.to(device),
        scores.to(device),
        None if idxs is None else idxs.to(device),
        kernel=kernel,
        sigma=2.0,
        score_threshold=score_threshold,
    )
    thr = -math.inf if score_threshold is None else score_threshold
    ref_keep, ref_scores = matrix_reference(boxes, scores, idxs, kernel, 2.0, thr)
    assert torch.equal(keep.cpu(), ref_keep)
    torch.testing.assert_close(new_scores.cpu(), ref_scores)


def test_matrix_nms_duplicates_and_errors():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep, s = fastops.matrix_nms(boxes, scores, kernel="linear")
    assert torch.isfinite(s).all()  # mmdet divides 0 by 0 here
    assert keep.tolist() == [0, 1, 2] and s[0] == 0.9 and (s[1:] == 0).all()
    with pytest.raises(ValueError, match="kernel must be"):
        fastops.matrix_nms(boxes, scores, kernel="cosine")


# ---- multiclass post-processing ------------------------------------------------------------------


def multiclass_reference(boxes, scores, score_threshold, iou_threshold, topk, max_detections):
    """torchvision RetinaNet's postprocess_detections for one level of decoded boxes."""
    out = []
    num_classes = scores.shape[-1]
    for b in range(scores.shape[0]):
        flat = scores[b].flatten()
        keep_idxs = flat > score_threshold
        cand_scores = flat[keep_idxs]
        topk_idxs = torch.where(keep_idxs)[0]
        num = min(topk, topk_idxs.size(0))
        cand_scores, idxs = cand_scores.topk(num)
        topk_idxs = topk_idxs[idxs]
        anchors = torch.div(topk_idxs, num_classes, rounding_mode="floor")
        labels = topk_idxs % num_classes
        cand_boxes = boxes[b, anchors, labels] if boxes.dim() == 4 else boxes[b, anchors]
        keep = tvops.batched_nms(cand_boxes, cand_scores, labels, iou_threshold)[:max_detections]
        out.append({"boxes": cand_boxes[keep], "scores": cand_scores[keep], "labels": labels[keep]})
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("per_class_boxes", [False, True])
@pytest.mark.parametrize("topk,max_detections", [(1000, 100), (50, 10), (5000, 1000)])
def test_multiclass_nms_matches_torchvision_retinanet(per_class_boxes, topk, max_detections, device):
    g = torch.Generator().manual_seed(topk)
    b, n, c = 3, 1500, 20
    boxes = random_boxes(b * n * (c if per_class_boxes else 1), generator=g)
    boxes = boxes.reshape(b, n, c, 4) if per_class_boxes else boxes.reshape(b, n, 4)
    scores = torch.randperm(b * n * c, generator=g).float().reshape(b, n, c) / (b * n * c)  # untied
    scores = scores**3
    out = fastops.multiclass_nms(
        boxes.to(device),
        scores.to(device),
        score_threshold=0.05,
        iou_threshold=0.5,
        topk=topk,
        max_detections=max_detections,
    )
    assert out.boxes.shape == (b, max_detections, 4) and out.labels.dtype == torch.int64
    got = fastops.multiclass_nms_to_dicts(out)
    for mine, ref in zip(got, multiclass_reference(boxes, scores, 0.05, 0.5, topk, max_detections)):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(mine[key].cpu(), ref[key]), key
    # padding
    for i in range(b):
        k = int(out.num_detections[i])
        assert (out.labels[i, k:] == -1).all() and (out.scores[i, k:] == 0).all() and (out.boxes[i, k:] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_multiclass_nms_class_agnostic_and_empty(device):
    g = torch.Generator().manual_seed(5)
    boxes = random_boxes(2 * 400, generator=g).reshape(2, 400, 4).to(device)
    scores = torch.rand(2, 400, 6, generator=g).to(device)
    out = fastops.multiclass_nms(boxes, scores, class_agnostic=True, max_detections=50, score_threshold=0.5)
    for i in range(2):
        k = int(out.num_detections[i])
        sel = out.boxes[i, :k].cpu()
        assert (iou_matrix(sel).fill_diagonal_(0) <= 0.5).all()  # no two kept overlap, whatever their class
    none = fastops.multiclass_nms(boxes, torch.zeros_like(scores))
    assert (none.num_detections == 0).all() and (none.labels == -1).all()
    empty = fastops.multiclass_nms(torch.zeros(2, 0, 4, device=device), torch.zeros(2, 0, 3, device=device))
    assert empty.boxes.shape == (2, 100, 4) and (empty.num_detections == 0).all()


def test_multiclass_nms_errors():
    boxes, scores = torch.zeros(2, 10, 4), torch.zeros(2, 10, 3)
    with pytest.raises(ValueError, match=r"scores must have shape \[B, N, C\]"):
        fastops.multiclass_nms(boxes, scores[0])
    with pytest.raises(ValueError, match=r"boxes must have shape \[B, N, 4\] or \[B, N, C, 4\]"):
        fastops.multiclass_nms(boxes[:, :5], scores)
    with pytest.raises(ValueError, match="topk must be >= 1"):
        fastops.multiclass_nms(boxes, scores, topk=0)
    with pytest.raises(ValueError, match="max_detections must be >= 1"):
        fastops.multiclass_nms(boxes, scores, max_detections=0)


# ---- registration: opcheck, compile, export --------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    g = torch.Generator().manual_seed(0)
    boxes, scores = random_boxes(60, generator=g).to(device), torch.rand(60, generator=g).to(device)
    idxs = torch.randint(0, 3, (60,), generator=g).to(device)
    ops = torch.ops.fastops
    torch.library.opcheck(ops.nms.default, (boxes, scores, None, 0.5))
    torch.library.opcheck(ops.nms.default, (boxes, scores, idxs, 0.5))
    torch.library.opcheck(ops.soft_nms.default, (boxes, scores, idxs, 0.3, 0.5, 0.01, "gaussian"))
    torch.library.opcheck(ops.matrix_nms.default, (boxes, scores, idxs, "linear", 2.0, 0.1))
    torch.library.opcheck(
        ops.multiclass_nms.default,
        (boxes.reshape(2, 30, 4), torch.rand(2, 30, 5, generator=g).to(device), 0.05, 0.5, 100, 10, False),
    )


def test_compile_fullgraph():
    def detect(boxes, scores, idxs):
        keep = fastops.batched_nms(boxes, scores, idxs, 0.5)
        return boxes[keep], scores[keep]

    g = torch.Generator().manual_seed(0)
    boxes, scores = random_boxes(500, generator=g), torch.rand(500, generator=g)
    idxs = torch.randint(0, 5, (500,), generator=g)
    compiled = torch.compile(detect, fullgraph=True)
    for got, expected in zip(compiled(boxes, scores, idxs), detect(boxes, scores, idxs)):
        assert torch.equal(got, expected)

    def post(boxes, scores):
        return fastops.multiclass_nms(boxes, scores, max_detections=20)

    b3, s3 = boxes.reshape(2, 250, 4), torch.rand(2, 250, 4, generator=g)
    for got, expected in zip(torch.compile(post, fullgraph=True)(b3, s3), post(b3, s3)):
        assert torch.equal(got, expected)


def test_export_multiclass():
    class Head(torch.nn.Module):
        def forward(self, boxes, scores):
            return tuple(fastops.multiclass_nms(boxes, scores, max_detections=30))

    g = torch.Generator().manual_seed(1)
    boxes, scores = random_boxes(400, generator=g).reshape(2, 200, 4), torch.rand(2, 200, 3, generator=g)
    exported = torch.export.export(Head(), (boxes, scores))
    for got, expected in zip(exported.module()(boxes, scores), Head()(boxes, scores)):
        assert torch.equal(got, expected)


# ---- CUDA against CPU --------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("n", [64, 65, 5000, 20000])
def test_cuda_nms_matches_cpu(n):
    g = torch.Generator().manual_seed(n)
    boxes, scores = random_boxes(n, generator=g), torch.rand(n, generator=g)
    idxs = torch.randint(0, 80, (n,), generator=g)
    assert torch.equal(fastops.nms(boxes.cuda(), scores.cuda(), 0.5).cpu(), fastops.nms(boxes, scores, 0.5))
    assert torch.equal(
        fastops.batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5).cpu(),
        fastops.batched_nms(boxes, scores, idxs, 0.5),
    )


# ---- many kept boxes: the spatial grid ------------------------------------------------------------


def spread_boxes(n: int, image: float, seed: int, big_every: int = 0):
    """n boxes of 4-40 pixels spread over an image x image square (sparse overlaps: most kept),
    every big_every-th one (when given) a box of a third of the image."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * image
    wh = 4 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 36
    if big_every:
        wh[::big_every] = image / 3
    boxes = torch.cat([xy, xy + wh], 1).float()
    # distinct scores: torchvision orders batched_nms's result by an unstable sort
    return boxes, torch.randperm(n, generator=g).float() / n


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7])
@pytest.mark.parametrize("big_every", [0, 97])
def test_nms_with_many_kept_boxes_matches_torchvision(threshold, big_every):
    # 20k boxes: the first blocks keep over a thousand and over 16k remain, so the grid takes over
    boxes, scores = spread_boxes(20_000, 15_000.0, seed=int(threshold * 10) + big_every, big_every=big_every)
    expected = tvops.nms(boxes, scores, threshold)
    assert expected.numel() > 2048  # most boxes survive: the grid ran
    torch.testing.assert_close(fastops.nms(boxes, scores, threshold), expected, rtol=0, atol=0)


def test_batched_nms_with_many_kept_boxes_matches_torchvision():
    boxes, scores = spread_boxes(40_000, 6_000.0, seed=3)
    idxs = torch.randint(0, 2, (40_000,), generator=torch.Generator().manual_seed(4))
    expected = tvops.batched_nms(boxes, scores, idxs, 0.5)
    torch.testing.assert_close(fastops.batched_nms(boxes, scores, idxs, 0.5), expected, rtol=0, atol=0)


def test_nms_grid_keeps_touching_and_coincident_boxes_right():
    # Boxes on a lattice that touch along edges (IoU 0: never suppress at threshold 0) and exact
    # duplicates (IoU 1), tied scores: the keep list must still be torchvision's.
    side = 150
    y, x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    cells = torch.stack([x, y, x + 1, y + 1], -1).reshape(-1, 4).float() * 8
    boxes = torch.cat([cells, cells[::3]])
    scores = torch.rand(boxes.shape[0], generator=torch.Generator().manual_seed(0)).round(decimals=2)
    for threshold in (0.0, 0.5):
        expected = tvops.nms(boxes, scores, threshold)
        torch.testing.assert_close(fastops.nms(boxes, scores, threshold), expected, rtol=0, atol=0)
