"""hungarian_match / linear_sum_assignment against scipy.optimize.linear_sum_assignment (the
oracle: same total cost, same pairs where the optimum is unique), on random and degenerate
matrices, DETR's batched form, errors, opcheck and torch.compile."""

import math

import numpy as np
import pytest
import torch
from common import DEVICES
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.optimize import linear_sum_assignment as scipy_lsa

import fastops
from fastops.ops import ArgumentError, hungarian_match, linear_sum_assignment


def check_against_scipy(cost: np.ndarray, maximize: bool = False) -> None:
    """Our assignment is a valid one of min(R, C) distinct pairs with scipy's total cost."""
    rows, cols = linear_sum_assignment(torch.from_numpy(cost), maximize=maximize)
    want_rows, want_cols = scipy_lsa(cost, maximize=maximize)
    rows, cols = rows.numpy(), cols.numpy()
    assert rows.dtype == np.int64 and cols.dtype == np.int64
    assert len(rows) == len(cols) == min(cost.shape)
    assert np.all(np.diff(rows) > 0), "rows increase"
    assert len(set(cols.tolist())) == len(cols), "columns are distinct"
    got, want = cost[rows, cols].sum(), cost[want_rows, want_cols].sum()
    assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-9), (got, want)


@pytest.mark.parametrize("shape", [(1, 1), (5, 5), (30, 30), (10, 25), (25, 10), (100, 50), (50, 100)])
@pytest.mark.parametrize("maximize", [False, True])
def test_random_matches_scipy(shape, maximize):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        check_against_scipy(rng.random(shape), maximize)


def test_unique_optimum_gives_scipys_pairs():
    # continuous random costs: the optimum is unique almost surely, so the pairs are scipy's
    rng = np.random.default_rng(0)
    for shape in [(20, 20), (7, 13), (13, 7)]:
        cost = rng.normal(size=shape)
        rows, cols = linear_sum_assignment(torch.from_numpy(cost))
        want_rows, want_cols = scipy_lsa(cost)
        np.testing.assert_array_equal(rows.numpy(), want_rows)
        np.testing.assert_array_equal(cols.numpy(), want_cols)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=9),
        # few distinct values: many ties; some +inf (forbidden pairs)
        elements=st.sampled_from([0.0, 1.0, 1.0, 2.0, -3.5, 1e6, math.inf]),
    ),
    st.booleans(),
)
def test_hypothesis_ties_and_forbidden_pairs(cost, maximize):
    if maximize:
        cost = np.where(np.isinf(cost), -np.inf, cost)
    try:
        want = scipy_lsa(cost, maximize=maximize)
    except ValueError:
        with pytest.raises(ArgumentError, match="infeasible"):
            linear_sum_assignment(torch.from_numpy(cost), maximize=maximize)
        return
    rows, cols = linear_sum_assignment(torch.from_numpy(cost), maximize=maximize)
    assert np.isfinite(cost[rows.numpy(), cols.numpy()]).all()
    assert cost[rows.numpy(), cols.numpy()].sum() == pytest.approx(cost[want].sum(), rel=1e-12, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
        elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    )
)
def test_hypothesis_float_matrices(cost):
    check_against_scipy(cost)


def test_constant_matrix_is_identity():
    # scipy's column scan order makes a constant matrix's assignment the identity; ours too
    for shape in [(4, 4), (3, 6)]:
        rows, cols = linear_sum_assignment(torch.ones(shape))
        assert rows.tolist() == list(range(shape[0])) and cols.tolist() == list(range(shape[0]))


def test_empty_matrices():
    for shape in [(0, 0), (0, 5), (5, 0)]:
        rows, cols = linear_sum_assignment(torch.empty(shape))
        assert rows.shape == (0,) and cols.shape == (0,) and rows.dtype == torch.int64
    assert hungarian_match([]) == []
    assert hungarian_match(torch.empty(0, 10, 0), sizes=[]) == []


def test_infeasible_and_invalid_entries_raise_like_scipy():
    inf = math.inf
    infeasible = np.array([[inf, 1.0], [inf, 2.0]])  # column 0 forbidden for both: only one pair possible
    with pytest.raises(ValueError):
        scipy_lsa(infeasible)
    with pytest.raises(ArgumentError, match=r"costs\[0\] is infeasible"):
        linear_sum_assignment(torch.from_numpy(infeasible))
    for bad in [math.nan, -inf]:
        cost = torch.rand(3, 4, dtype=torch.float64)
        cost[1, 2] = bad
        with pytest.raises(ValueError):
            scipy_lsa(cost.numpy())
        with pytest.raises(ArgumentError, match="NaN or -inf"):
            linear_sum_assignment(cost)
    with pytest.raises(ArgumentError, match=r"costs\[1\] contains NaN"):
        hungarian_match([torch.rand(2, 2), torch.tensor([[math.nan]])])
    # with maximize, +inf is the invalid value and -inf the forbidden one
    with pytest.raises(ArgumentError, match=r"\+inf"):
        linear_sum_assignment(torch.tensor([[inf, 1.0]]), maximize=True)
    _, cols = linear_sum_assignment(torch.tensor([[-inf, 1.0], [2.0, 0.0]]), maximize=True)
    assert cols.tolist() == [1, 0]


def test_bad_arguments_name_them():
    with pytest.raises(TypeError, match="float"):
        linear_sum_assignment(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="matrix"):
        linear_sum_assignment(torch.ones(2, 2, 2))
    with pytest.raises(TypeError, match=r"cost must be a torch\.Tensor"):
        linear_sum_assignment([[1.0]])
    with pytest.raises(ValueError, match="sizes"):
        hungarian_match(torch.ones(2, 3, 5), sizes=[2, 2])
    with pytest.raises(ValueError, match="sizes"):
        hungarian_match([torch.ones(2, 2)], sizes=[2])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes_and_strides(dtype):
    cost = torch.rand(12, 9, dtype=torch.float64)
    want = scipy_lsa(cost.to(dtype).double().numpy())
    rows, cols = linear_sum_assignment(cost.to(dtype))
    np.testing.assert_array_equal(rows.numpy(), want[0])
    np.testing.assert_array_equal(cols.numpy(), want[1])
    # a transposed view is read through its strides
    rows, cols = linear_sum_assignment(cost.t())
    want = scipy_lsa(cost.t().numpy())
    np.testing.assert_array_equal(rows.numpy(), want[0])
    np.testing.assert_array_equal(cols.numpy(), want[1])


def test_detr_form_matches_per_image_scipy():
    # DETR's matcher: C [B, Q, sum(sizes)], image b's block C.split(sizes, -1)[b][b]
    gen = torch.Generator().manual_seed(3)
    sizes = [3, 0, 7, 120, 1]
    costs = torch.rand(len(sizes), 100, sum(sizes), generator=gen)
    got = hungarian_match(costs, sizes=sizes)
    got_tensor_sizes = hungarian_match(costs, sizes=torch.tensor(sizes))
    for b, block in enumerate(costs.split(sizes, -1)):
        want = scipy_lsa(block[b].numpy())
        np.testing.assert_array_equal(got[b][0].numpy(), want[0])
        np.testing.assert_array_equal(got[b][1].numpy(), want[1])
        assert torch.equal(got_tensor_sizes[b][0], got[b][0]) and torch.equal(got_tensor_sizes[b][1], got[b][1])


def test_padded_and_list_forms():
    gen = torch.Generator().manual_seed(4)
    batch = torch.rand(6, 20, 11, generator=gen, dtype=torch.float64)
    matrices = [torch.rand(r, c, generator=gen) for r, c in [(5, 9), (9, 5), (1, 30), (40, 40)]]
    for costs, blocks in [(batch, list(batch)), (matrices, matrices)]:
        for (rows, cols), block in zip(hungarian_match(costs), blocks, strict=True):
            want = scipy_lsa(block.numpy())
            np.testing.assert_array_equal(rows.numpy(), want[0])
            np.testing.assert_array_equal(cols.numpy(), want[1])


def test_many_images_in_parallel_same_as_one_by_one():
    gen = torch.Generator().manual_seed(5)
    costs = torch.rand(64, 100, 50, generator=gen)
    batched = hungarian_match(costs)
    for b in (0, 17, 63):
        rows, cols = linear_sum_assignment(costs[b])
        assert torch.equal(rows, batched[b][0]) and torch.equal(cols, batched[b][1])


@pytest.mark.parametrize("device", DEVICES)
def test_result_on_input_device(device):
    costs = torch.rand(3, 8, 5, device=device)
    for rows, cols in hungarian_match(costs):
        assert rows.device == costs.device and cols.device == costs.device
        want = scipy_lsa(costs[0].cpu().numpy())
        break
    np.testing.assert_array_equal(hungarian_match(costs)[0][1].cpu().numpy(), want[1])


def test_opcheck():
    gen = torch.Generator().manual_seed(6)
    for costs in ([torch.rand(5, 3, generator=gen), torch.rand(2, 4, generator=gen, dtype=torch.float64)],):
        torch.library.opcheck(torch.ops.fastops.hungarian_match.default, (costs, False))


def test_compile_fullgraph():
    def match(costs):
        return [c for pair in hungarian_match(costs) for c in pair]

    costs = torch.rand(2, 6, 4)
    compiled = torch.compile(match, fullgraph=True)
    for got, want in zip(compiled(costs), match(costs), strict=True):
        assert torch.equal(got, want)


def test_torchscript():
    scripted = torch.jit.script(fastops.ops.linear_sum_assignment)
    cost = torch.rand(4, 6)
    assert all(torch.equal(a, b) for a, b in zip(scripted(cost), linear_sum_assignment(cost), strict=True))
    scripted = torch.jit.script(hungarian_match)
    got = scripted(torch.rand(2, 3, 5), [2, 3])
    assert [r.shape[0] for r, _ in got] == [2, 3]


def test_fx_records_one_node():
    class Match(torch.nn.Module):
        def forward(self, costs):
            return hungarian_match(costs * 2)

    traced = torch.fx.symbolic_trace(Match())
    assert hungarian_match in {n.target for n in traced.graph.nodes if n.op == "call_function"}
    costs = torch.rand(2, 5, 3)
    for (r, c), (wr, wc) in zip(traced(costs), hungarian_match(costs * 2), strict=True):
        assert torch.equal(r, wr) and torch.equal(c, wc)
