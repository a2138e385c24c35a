"""Selective search object proposals (Uijlings et al., "Selective Search for Object Recognition",
IJCV 2013): ``selective_search``.

Kernel: ``csrc/selective_search/``. Per strategy (colour space x threshold k x similarity set):
Felzenszwalb-Huttenlocher graph segmentation (Gaussian smoothing of ``sigma``, the 8-neighbour
graph, union-find with the k / |C| threshold, then components under ``min_size`` pixels merged),
then the hierarchical grouping: the most similar adjacent pair of regions is merged until one is
left, each region of the hierarchy giving its bounding box. Similarities (each in [0, 1], a set's
terms summed): colour (histogram intersection of 25 bins per channel, L1-normalised), texture
(8 orientations of the sigma = 1 Gaussian derivative per channel, steered exactly from the x and y
derivatives and half-wave rectified, 10 bins each), size and fill; a merged region's histograms
are the size-weighted average of its parts'.

Modes (the paper's Table 5): ``"fast"``: HSV and Lab, k in {50, 100}, similarity sets
colour+texture+size+fill and texture+size+fill (8 strategies); ``"quality"``: HSV, Lab, rgI, H
and I, k in {50, 100, 150, 300}, those two sets plus fill and size alone (80 strategies).
Channels are on the 0..255 scale (float images are scaled by 255), hue on [0, 255] around the
circle, Lab as OpenCV's 8-bit Lab.

Ranking (the paper's section 3.3): in each hierarchy the last region created (the whole image) has
position 1, the one before it 2, and so on; a region's rank value is its position times a uniform
random number drawn from (``seed``, strategy, position), so the output is deterministic and the
same for every thread count. All regions are sorted by that value and repeated boxes dropped after
ranking (a box found by several strategies keeps its best rank).

The strategies run in parallel on the CPU. A CUDA image is copied to the host and its boxes
returned on its device (the grouping is sequential per strategy). Not differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._fake import register_fake
from ._jit import script_as, trace_or_type_error
from .errors import as_torch_error

__all__ = ["selective_search"]

# ---- op registration: fake kernel, autograd ------------------------------------------------------


@register_fake("fastops::selective_search")
def _selective_search_fake(image, mode, ks, sigma, min_size, max_proposals, seed):
    torch._check(
        image.dim() == 3 and image.shape[0] == 3,
        lambda: f"selective_search: image must have shape [3, H, W], got {tuple(image.shape)}",
    )
    n = torch.library.get_ctx().new_dynamic_size()  # the number of distinct boxes depends on the pixels
    if max_proposals >= 0:
        torch._check(n <= max_proposals)
    return image.new_empty((n, 4), dtype=torch.float32)


def _setup_context(ctx, inputs, output):
    ctx.mark_non_differentiable(output)


def _backward(ctx, grad):
    raise RuntimeError("fastops.selective_search is not differentiable: its boxes are pixel coordinates")


torch.library.register_autograd("fastops::selective_search", _backward, setup_context=_setup_context)


# ---- public API ----------------------------------------------------------------------------------


def _selective_search_script(
    image: Tensor,
    mode: str = "fast",
    max_proposals: int | None = None,
    seed: int = 0,
    ks: list[float] | None = None,
    sigma: float = 0.8,
    min_size: int | None = None,
) -> Tensor:
    thresholds: list[float] = []
    if ks is not None:
        thresholds = ks
    return torch.ops.fastops.selective_search(
        image,
        mode,
        thresholds,
        sigma,
        -1 if min_size is None else min_size,
        -1 if max_proposals is None else max_proposals,
        seed,
    )


@script_as(_selective_search_script)
def selective_search(
    image: Tensor,
    mode: str = "fast",
    max_proposals: int | None = None,
    seed: int = 0,
    ks: Sequence[float] | None = None,
    sigma: float = 0.8,
    min_size: int | None = None,
) -> Tensor:
    """Class-independent object proposals of one image by selective search (Uijlings et al. 2013).

    Args:
        image: ``[3, H, W]`` RGB, uint8 (0..255) or float16/bfloat16/float32/float64 in [0, 1]; any
            strides, CPU or CUDA. An image with no pixels gives no boxes.
        mode: ``"fast"`` or ``"quality"`` (the paper's strategy sets; see the module docstring).
        max_proposals: keep at most this many of the best ranked boxes (None: all).
        seed: seed of the ranking's random numbers (same seed, same output).
        ks: the graph segmentation's thresholds k, replacing the mode's (larger k, larger regions).
        sigma: the Gaussian smoothing before segmentation (0: none; at most 100).
        min_size: the smallest region of a segmentation, in pixels (None: each k, as the paper).

    Returns:
        float32 ``[N, 4]`` on ``image``'s device: distinct boxes ``(x1, y1, x2, y2)`` in pixel
        edges (integers: a region covering pixel columns a..b has x1 = a, x2 = b + 1), best ranked
        first.
    """
    if not isinstance(image, Tensor):
        args = (image, mode, max_proposals, seed, ks, sigma, min_size)
        return trace_or_type_error(selective_search, args, "image", image)
    if not isinstance(mode, str):
        raise TypeError(f'mode must be a str ("fast" or "quality"), got {type(mode).__name__}')
    try:
        return torch.ops.fastops.selective_search(
            image,
            mode,
            [] if ks is None else [float(k) for k in ks],
            float(sigma),
            -1 if min_size is None else int(min_size),
            -1 if max_proposals is None else int(max_proposals),
            int(seed),
        )
    except (ValueError, TypeError) as e:
        raise as_torch_error(e) from None
