"""The 2-D sine positional encoding of DETR (Carion et al. 2020; Vaswani et al. 2017's sines over
the row and the column): for each unpadded position, the count of unpadded positions up to it in
its column (y) and in its row (x), optionally divided by the column's or row's count and scaled to
[0, ``scale``], each written as ``num_pos_feats`` sines and cosines of geometrically spaced
frequencies. Padded positions count nothing, so an image's encoding does not depend on how much
padding its batch adds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["PositionEmbeddingSine"]


class PositionEmbeddingSine(nn.Module):
    """DETR's ``PositionEmbeddingSine``.

    Args:
        num_pos_feats: channels per axis (the output has 2 * num_pos_feats: y first, then x);
            channel k of an axis is sin(p / T^(2 floor(k / 2) / num_pos_feats)) for even k and
            cos(...) for odd k, T = ``temperature``.
        temperature: T.
        normalize: divide each position p (1-based count of unpadded positions up to it) by the
            count of its column (y) or row (x) plus 1e-6, times ``scale``.
        scale: the normalized range's end (default 2 pi); only with ``normalize``.

    ``forward(mask)``: mask bool Tensor[N, H, W], True at padding; returns Tensor[N, 2 *
    num_pos_feats, H, W] in ``dtype`` (float32 by default; the counts are float32, as DETR's).
    """

    def __init__(
        self,
        num_pos_feats: int = 64,
        temperature: float = 10000.0,
        normalize: bool = False,
        scale: float | None = None,
    ):
        super().__init__()
        if num_pos_feats <= 0 or num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be a positive even number, got {num_pos_feats}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if scale is not None and not normalize:
            raise ValueError("scale: only used with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = float(temperature)
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else float(scale)

    def forward(self, mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        if mask.dim() != 3 or mask.dtype != torch.bool:
            raise ValueError(f"mask: expected a bool Tensor[N, H, W], got {mask.dtype} of shape {tuple(mask.shape)}")
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).to(dtype)

    def extra_repr(self) -> str:
        return (
            f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
            f"normalize={self.normalize}, scale={self.scale}"
        )
