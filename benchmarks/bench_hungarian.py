"""Linear assignment: fastops.hungarian_match against scipy.optimize.linear_sum_assignment.

Workloads: DETR's matching step, a batch of B = 32 (quick: 8) cost matrices of 100 queries x 50
targets, as one ``hungarian_match`` call (matrices in parallel) against DETR's loop of scipy
calls (each block converted to numpy, as DETR's matcher does); then single larger matrices
(300 x 300, 1000 x 1000; quick: 300 x 300 only) against one scipy call. Costs are uniform random
float32 in [0, 1). The reference column includes no conversion of the indices back to tensors.
"""

from __future__ import annotations

import torch
from common import Row, bench_main, time_ms
from scipy.optimize import linear_sum_assignment

import fastops


def scipy_batch(costs: torch.Tensor, sizes: list[int]) -> list:
    return [linear_sum_assignment(c[i]) for i, c in enumerate(costs.cpu().split(sizes, -1))]


def run(device: str = "cpu", quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    g = torch.Generator().manual_seed(0)
    repeat = 5 if quick else 15
    batch = 8 if quick else 32
    sizes = [50] * batch
    costs = torch.rand(batch, 100, sum(sizes), generator=g).to(device)
    ms = time_ms(lambda: fastops.ops.hungarian_match(costs, sizes=sizes), device, repeat=repeat)
    ref_ms = time_ms(lambda: scipy_batch(costs, sizes), device, repeat=repeat)
    rows.append(Row(f"hungarian_match {batch} x (100 x 50), DETR form", ms, "scipy loop (DETR's matcher)", ref_ms))
    padded = torch.rand(batch, 100, 50, generator=g).to(device)
    ms = time_ms(lambda: fastops.ops.hungarian_match(padded), device, repeat=repeat)
    ref_ms = time_ms(lambda: [linear_sum_assignment(c) for c in padded.cpu().numpy()], device, repeat=repeat)
    rows.append(Row(f"hungarian_match {batch} x (100 x 50), [B, R, C]", ms, "scipy loop", ref_ms))
    for n in [300] if quick else [300, 1000]:
        cost = torch.rand(n, n, generator=g).to(device)
        ms = time_ms(lambda: fastops.ops.linear_sum_assignment(cost), device, repeat=3 if n >= 1000 else repeat)
        ref_ms = time_ms(lambda: linear_sum_assignment(cost.cpu().numpy()), device, repeat=3 if n >= 1000 else repeat)
        rows.append(Row(f"linear_sum_assignment {n} x {n}", ms, "scipy", ref_ms))
    return rows


NOTES = """Both sides run the same algorithm (shortest augmenting paths) in float64; fastops reads
float32 costs directly and solves the images of a batch in parallel (at::parallel_for), scipy one
per call from Python. A CUDA input is solved on the host: its time includes the copies."""


if __name__ == "__main__":
    bench_main("hungarian", __doc__, run, NOTES)
