"""DETR's encoder-decoder transformer (Carion et al. 2020), built from ``torch.nn``'s
``MultiheadAttention``, ``Linear`` and ``LayerNorm`` with DETR's module names.

DETR adds the positional encodings to the queries and keys of every attention (the image's sine
encoding in the encoder and the decoder's cross-attention keys, the learned object queries in the
decoder's queries), never to the values or the residual stream; torch's
``nn.TransformerEncoderLayer`` / ``DecoderLayer`` take no positional input, so the layers here are
DETR's, written with torch's attention. Layers are post-norm by default (DETR's: the residual sum
is normalized) or pre-norm (``normalize_before``: each block's input is normalized, and the
encoder ends with a LayerNorm). The decoder's outputs pass through its final LayerNorm, and every
layer's output is returned (the auxiliary losses read them).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DETRTransformer", "TransformerDecoderLayer", "TransformerEncoderLayer"]


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


class TransformerEncoderLayer(nn.Module):
    """Self-attention over the image's positions (padding masked from the keys) and a ReLU MLP.
    Tensors are batch-first: src and pos [N, S, d_model], key_padding_mask bool [N, S] (True:
    padding)."""

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1, normalize_before=False
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def _attend(self, x: Tensor, pos: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        q = k = _with_pos(x, pos)
        return self.dropout1(self.self_attn(q, k, x, key_padding_mask=key_padding_mask, need_weights=False)[0])

    def _mlp(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x)))))

    def forward(self, src: Tensor, pos: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if self.normalize_before:
            src = src + self._attend(self.norm1(src), pos, key_padding_mask)
            return src + self._mlp(self.norm2(src))
        src = self.norm1(src + self._attend(src, pos, key_padding_mask))
        return self.norm2(src + self._mlp(src))


class TransformerDecoderLayer(nn.Module):
    """Self-attention among the object queries, cross-attention from them to the encoder's memory
    (padding masked from the keys), a ReLU MLP. Batch-first: tgt and query_pos [N, Q, d_model],
    memory and pos [N, S, d_model], memory_key_padding_mask bool [N, S]."""

    def __init__(
        self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1, normalize_before=False
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def _self_attend(self, x: Tensor, query_pos: Tensor) -> Tensor:
        q = k = x + query_pos
        return self.dropout1(self.self_attn(q, k, x, need_weights=False)[0])

    def _cross_attend(self, x: Tensor, query_pos: Tensor, memory: Tensor, pos: Tensor, mask: Tensor | None) -> Tensor:
        out = self.multihead_attn(
            x + query_pos, _with_pos(memory, pos), memory, key_padding_mask=mask, need_weights=False
        )[0]
        return self.dropout2(out)

    def _mlp(self, x: Tensor) -> Tensor:
        return self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(x)))))

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Tensor,
        query_pos: Tensor,
        memory_key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        mask = memory_key_padding_mask
        if self.normalize_before:
            tgt = tgt + self._self_attend(self.norm1(tgt), query_pos)
            tgt = tgt + self._cross_attend(self.norm2(tgt), query_pos, memory, pos, mask)
            return tgt + self._mlp(self.norm3(tgt))
        tgt = self.norm1(tgt + self._self_attend(tgt, query_pos))
        tgt = self.norm2(tgt + self._cross_attend(tgt, query_pos, memory, pos, mask))
        return self.norm3(tgt + self._mlp(tgt))


class _Stack(nn.Module):
    """``layers`` (DETR's ``encoder.layers`` / ``decoder.layers``) and an optional final ``norm``."""

    def __init__(self, layer: nn.Module, num_layers: int, norm: nn.Module | None):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm


class DETRTransformer(nn.Module):
    """DETR's ``Transformer`` (module docstring): ``encoder`` and ``decoder`` stacks, Xavier-uniform
    initialized matrices.

    ``forward(src, mask, query_embed, pos, all_layers=True)``: src [N, d_model, H, W] (the projected
    features), mask bool [N, H, W] (True: padding), query_embed [Q, d_model] (the learned object
    queries), pos [N, d_model, H, W]; returns the decoder's outputs [L, N, Q, d_model] after its
    final LayerNorm, one per decoder layer (L = num_decoder_layers), or only the last ([1, N, Q,
    d_model]) when ``all_layers`` is False. The decoder starts from zeros, as DETR's.
    """

    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        normalize_before: bool = False,
    ):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model ({d_model}) must be a multiple of nhead ({nhead})")
        if num_decoder_layers < 1 or num_encoder_layers < 0:
            raise ValueError(
                f"need at least one decoder layer and no negative count, got {num_encoder_layers} encoder "
                f"and {num_decoder_layers} decoder layers"
            )
        args = (d_model, nhead, dim_feedforward, dropout, normalize_before)
        encoder_norm = nn.LayerNorm(d_model) if normalize_before else None
        self.encoder = _Stack(TransformerEncoderLayer(*args), num_encoder_layers, encoder_norm)
        self.decoder = _Stack(TransformerDecoderLayer(*args), num_decoder_layers, nn.LayerNorm(d_model))
        self.d_model = d_model
        self.nhead = nhead
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, mask: Tensor, query_embed: Tensor, pos: Tensor, all_layers: bool = True) -> Tensor:
        n = src.shape[0]
        memory = src.flatten(2).transpose(1, 2)  # [N, HW, d]
        pos = pos.flatten(2).transpose(1, 2)
        mask = mask.flatten(1)
        for layer in self.encoder.layers:
            memory = layer(memory, pos, key_padding_mask=mask)
        if self.encoder.norm is not None:
            memory = self.encoder.norm(memory)
        query_pos = query_embed.unsqueeze(0).expand(n, -1, -1)
        tgt = torch.zeros_like(query_pos)
        outputs = []
        last = len(self.decoder.layers) - 1
        for i, layer in enumerate(self.decoder.layers):
            tgt = layer(tgt, memory, pos, query_pos, memory_key_padding_mask=mask)
            if all_layers or i == last:
                outputs.append(self.decoder.norm(tgt))
        return torch.stack(outputs)
