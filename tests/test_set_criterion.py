"""HungarianMatcher and SetCriterion against tests/reference/detr.py (DETR's definitions in
float64, scipy's assignment)."""

import pytest
import torch
from reference import detr

from fastops.models.components import HungarianMatcher, SetCriterion


def random_batch(gen, batch=3, queries=12, num_classes=5, counts=(2, 0, 7), dtype=torch.float64):
    logits = torch.randn(batch, queries, num_classes + 1, generator=gen, dtype=dtype)
    boxes = torch.cat(
        [torch.rand(batch, queries, 2, generator=gen), 0.05 + 0.4 * torch.rand(batch, queries, 2, generator=gen)], -1
    )
    targets = []
    for n in counts:
        tb = torch.cat([torch.rand(n, 2, generator=gen), 0.05 + 0.4 * torch.rand(n, 2, generator=gen)], -1)
        targets.append({"labels": torch.randint(0, num_classes, (n,), generator=gen), "boxes": tb.to(dtype)})
    return {"pred_logits": logits, "pred_boxes": boxes.to(dtype)}, targets


@pytest.mark.parametrize("costs", [(1, 1, 1), (1, 5, 2), (2, 0, 1)])
def test_matcher_matches_reference(costs):
    gen = torch.Generator().manual_seed(sum(costs))
    outputs, targets = random_batch(gen)
    matcher = HungarianMatcher(cost_class=costs[0], cost_bbox=costs[1], cost_giou=costs[2])
    got = matcher(outputs, targets)
    want = detr.match(outputs["pred_logits"], outputs["pred_boxes"], targets, *costs)
    for (i, j), (wi, wj) in zip(got, want, strict=True):
        assert torch.equal(i, wi) and torch.equal(j, wj)


def test_matcher_more_targets_than_queries():
    gen = torch.Generator().manual_seed(1)
    outputs, targets = random_batch(gen, batch=2, queries=4, counts=(9, 3))
    got = HungarianMatcher()(outputs, targets)
    want = detr.match(outputs["pred_logits"], outputs["pred_boxes"], targets, 1, 1, 1)
    assert [len(i) for i, _ in got] == [4, 3]
    for (i, j), (wi, wj) in zip(got, want, strict=True):
        assert torch.equal(i, wi) and torch.equal(j, wj)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_criterion_matches_reference(dtype):
    gen = torch.Generator().manual_seed(2)
    outputs, targets = random_batch(gen, dtype=dtype)
    criterion = SetCriterion(num_classes=5, eos_coef=0.1)
    got = criterion(outputs, targets)
    indices = criterion.matcher(outputs, targets)
    want = detr.set_losses(outputs["pred_logits"], outputs["pred_boxes"], targets, indices, 5, 0.1)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for k, v in want.items():
        assert got[k].item() == pytest.approx(v, rel=tol, abs=tol), k
    assert got["loss"].item() == pytest.approx(want["loss_ce"] + 5 * want["loss_bbox"] + 2 * want["loss_giou"], rel=tol)


def test_criterion_aux_outputs_and_gradients():
    gen = torch.Generator().manual_seed(3)
    outputs, targets = random_batch(gen)
    aux, _ = random_batch(torch.Generator().manual_seed(4))
    outputs["pred_logits"].requires_grad_(True)
    outputs["pred_boxes"].requires_grad_(True)
    outputs["aux_outputs"] = [aux]
    losses = SetCriterion(num_classes=5)(outputs, targets)
    assert {"loss_ce_0", "loss_bbox_0", "loss_giou_0"} <= losses.keys()
    main = losses["loss_ce"] + 5 * losses["loss_bbox"] + 2 * losses["loss_giou"]
    aux_sum = losses["loss_ce_0"] + 5 * losses["loss_bbox_0"] + 2 * losses["loss_giou_0"]
    assert losses["loss"].item() == pytest.approx((main + aux_sum).item(), rel=1e-12)
    losses["loss"].backward()
    assert torch.isfinite(outputs["pred_logits"].grad).all() and outputs["pred_boxes"].grad.abs().sum() > 0


def test_criterion_without_targets():
    gen = torch.Generator().manual_seed(5)
    outputs, targets = random_batch(gen, counts=(0, 0, 0))
    losses = SetCriterion(num_classes=5)(outputs, targets)
    assert losses["loss_bbox"].item() == 0 and losses["loss_giou"].item() == 0
    # every query is "no object"
    want = torch.nn.functional.cross_entropy(outputs["pred_logits"].transpose(1, 2), torch.full((3, 12), 5))
    assert losses["loss_ce"].item() == pytest.approx(want.item(), rel=1e-12)
