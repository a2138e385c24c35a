"""Linear assignment: ``linear_sum_assignment`` (scipy's, on a tensor) and ``hungarian_match``
(one assignment per image of a batch, as DETR's matcher needs).

Kernel: ``csrc/hungarian_match/``: the shortest augmenting path algorithm (Jonker-Volgenant in
Crouse's 2016 rectangular form, scipy's ``linear_sum_assignment``) on each matrix in float64, after
a greedy start (each row's cheapest free column), matrices in parallel on the CPU. A CUDA input
is copied to the host, solved there and its indices returned on the input's device (DETR indexes
its device tensors with them; the algorithm is sequential per matrix, so the GPU has nothing to
add for DETR's matrices of about 100 x 50).

Costs: any float dtype, read as float64; +inf marks a forbidden pair (-inf with ``maximize``).
NaN or -inf (+inf with ``maximize``) raises ``ArgumentError`` (ValueError) naming the matrix, as
does a matrix with no complete assignment that avoids the forbidden pairs ("infeasible", scipy's
error). An R x C matrix assigns min(R, C) pairs; an empty matrix gives empty indices. The
assignment has scipy's minimum total cost, and scipy's pairs where the optimum is unique; among
equal-cost assignments it may differ from scipy's.

Not differentiable: the outputs are indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._fake import register_fake
from ._jit import script_as, trace_or_type_error
from .errors import as_torch_error

__all__ = ["hungarian_match", "linear_sum_assignment"]

# ---- op registration: fake kernel ----------------------------------------------------------------


@register_fake("fastops::hungarian_match")
def _hungarian_match_fake(costs, maximize):
    rows, cols = [], []
    for c in costs:
        torch._check(c.dim() == 2, lambda c=c: f"hungarian_match: costs must be matrices, got shape {tuple(c.shape)}")
        k = min(c.shape[0], c.shape[1])
        rows.append(c.new_empty((k,), dtype=torch.int64))
        cols.append(c.new_empty((k,), dtype=torch.int64))
    return rows, cols


# ---- public API ----------------------------------------------------------------------------------


def _linear_sum_assignment_script(cost: Tensor, maximize: bool = False) -> tuple[Tensor, Tensor]:
    rows, cols = torch.ops.fastops.hungarian_match([cost], maximize)
    return rows[0], cols[0]


@script_as(_linear_sum_assignment_script)
def linear_sum_assignment(cost: Tensor, maximize: bool = False) -> tuple[Tensor, Tensor]:
    """Minimum-cost assignment of a cost matrix, as ``scipy.optimize.linear_sum_assignment``.

    Args:
        cost: ``[R, C]`` float tensor (any float dtype, any strides, CPU or CUDA). +inf marks a
            forbidden pair (-inf with ``maximize``).
        maximize: find the maximum-cost assignment instead.

    Returns:
        ``(rows, cols)``: int64 ``[min(R, C)]`` each, on ``cost``'s device, ``rows`` increasing:
        row ``rows[k]`` is assigned column ``cols[k]``, and ``cost[rows, cols].sum()`` is minimal.
    """
    if not isinstance(cost, Tensor):
        return trace_or_type_error(linear_sum_assignment, (cost, maximize), "cost", cost)
    try:
        rows, cols = torch.ops.fastops.hungarian_match([cost], bool(maximize))
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None
    return rows[0], cols[0]


def _matrices(costs: Tensor, sizes: list[int] | None) -> list[Tensor]:
    if costs.dim() != 3:
        raise ValueError(
            f"costs must be a list of [R, C] matrices or a [B, R, C] tensor, got shape {tuple(costs.shape)}"
        )
    if sizes is None:
        return list(costs.unbind(0))
    if len(sizes) != costs.shape[0] or sum(sizes) != costs.shape[2] or any(s < 0 for s in sizes):
        raise ValueError(
            f"sizes must hold B = {costs.shape[0]} nonnegative column counts summing to costs.shape[2] = "
            f"{costs.shape[2]}, got {list(sizes)}"
        )
    return [block[b] for b, block in enumerate(costs.split(sizes, -1))]


def _hungarian_match_script(
    costs: Tensor, sizes: list[int] | None = None, maximize: bool = False
) -> list[tuple[Tensor, Tensor]]:
    if sizes is None:
        matrices = costs.unbind(0)
    else:
        matrices = [block[b] for b, block in enumerate(costs.split(sizes, -1))]
    if len(matrices) == 0:  # no tensor to dispatch on
        return []
    rows, cols = torch.ops.fastops.hungarian_match(matrices, maximize)
    return [(rows[b], cols[b]) for b in range(len(rows))]


@script_as(_hungarian_match_script)
def hungarian_match(
    costs: Tensor | Sequence[Tensor], sizes: Sequence[int] | Tensor | None = None, maximize: bool = False
) -> list[tuple[Tensor, Tensor]]:
    """One minimum-cost assignment per image, as DETR's matcher calls
    ``scipy.optimize.linear_sum_assignment`` on each image's block; matrices are solved in parallel.

    Args:
        costs: the images' cost matrices in one of three forms:

            - DETR's: a ``[B, Q, T]`` tensor whose columns are every image's targets in turn, with
              ``sizes`` (B counts summing to T): image b's matrix is ``costs[b]``'s b-th block of
              ``sizes[b]`` columns (``C.split(sizes, -1)[b][b]`` in DETR's matcher);
            - a ``[B, R, C]`` tensor without ``sizes``: image b's matrix is ``costs[b]``;
            - a list of ``[R_b, C_b]`` matrices of any shapes.

            Any float dtype, CPU or CUDA; +inf marks a forbidden pair (-inf with ``maximize``).
        sizes: per-image column counts for DETR's form (a list of ints or an integer tensor).
        maximize: maximum-cost assignments instead.

    Returns:
        One ``(rows, cols)`` pair per image: int64 ``[min(R_b, C_b)]`` each on the costs' device,
        ``rows`` increasing (``linear_sum_assignment``'s result for that matrix).
    """
    if isinstance(costs, Tensor):
        if isinstance(sizes, Tensor):
            sizes = [int(s) for s in sizes.tolist()]
        elif sizes is not None:
            sizes = [int(s) for s in sizes]
        try:
            matrices = _matrices(costs, sizes)
        except ValueError as e:
            raise as_torch_error(e) from None
    elif isinstance(costs, (list, tuple)) and all(isinstance(c, Tensor) for c in costs):
        if sizes is not None:
            raise ValueError("sizes goes with a [B, Q, T] costs tensor, not with a list of matrices")
        matrices = list(costs)
    else:
        return trace_or_type_error(hungarian_match, (costs, sizes, maximize), "costs", costs)
    if not matrices:  # no tensor to dispatch on
        return []
    try:
        rows, cols = torch.ops.fastops.hungarian_match(matrices, bool(maximize))
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None
    return list(zip(rows, cols, strict=True))
