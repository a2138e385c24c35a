"""DETR's builders: ``detr_resnet50`` (DETR's configuration: ResNet-50's last stage, 100 queries,
a 256-wide transformer of 6 encoder and 6 decoder layers with 8 heads, feed-forward 2048, dropout
0.1) and ``detr_small`` (a narrow configuration that trains on small images on a CPU).

Weights come from a local path or a state_dict: ``weights`` a whole DETR, of this library or with
the names of facebookresearch/detr's checkpoints (``convert_detr_state_dict``);
``weights_backbone`` a ResNet-50 classifier checkpoint (torchvision's names). With either, the
backbone's batch norms are frozen and its last 3 stages train (DETR's rule); without them the
backbone is torchvision's untrained configuration (``nn.BatchNorm2d``, every stage trains).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ...nn import FrozenBatchNorm2d
from ..backbones import resnet50, small_resnet
from ..weights import Weights, load_weights, read_state_dict
from .detr import DETR
from .detr_transformer import DETRTransformer

__all__ = ["convert_detr_state_dict", "detr_resnet50", "detr_small"]

_DETR_BACKBONE = "backbone.0.body."  # facebookresearch/detr's Joiner(Backbone(IntermediateLayerGetter))


def convert_detr_state_dict(state: Mapping[str, Tensor], model: DETR) -> dict[str, Tensor]:
    """A state_dict with facebookresearch/detr's names made ``model``'s: the backbone's
    ``backbone.0.body.*`` become ``backbone.*`` (the transformer's, the heads', ``input_proj`` and
    ``query_embed`` names are DETR's already), and the criterion's no-object weights, which DETR
    keeps outside the model, are ``model``'s own. Other state_dicts come back unchanged."""
    if not any(k.startswith(_DETR_BACKBONE) for k in state):
        return dict(state)
    out = {("backbone." + k[len(_DETR_BACKBONE) :] if k.startswith(_DETR_BACKBONE) else k): v for k, v in state.items()}
    out.setdefault("criterion.empty_weight", model.criterion.empty_weight)
    return out


def detr_resnet50(
    num_classes: int = 91,
    *,
    weights: Weights | None = None,
    weights_backbone: Weights | None = None,
    trainable_backbone_layers: int | None = None,
    num_queries: int = 100,
    hidden_dim: int = 256,
    nheads: int = 8,
    num_encoder_layers: int = 6,
    num_decoder_layers: int = 6,
    dim_feedforward: int = 2048,
    dropout: float = 0.1,
    normalize_before: bool = False,
    **kwargs,
) -> DETR:
    """DETR with a ResNet-50 backbone (labels in [0, num_classes); COCO: 91). Other keyword
    arguments go to ``DETR`` (``aux_loss``, ``criterion``, the transform's sizes...)."""
    trained = weights is not None or weights_backbone is not None
    if trainable_backbone_layers is None:
        trainable_backbone_layers = 3 if trained else 5
    backbone = resnet50(
        weights=weights_backbone,
        return_layers={"layer4": "0"},
        norm_layer=FrozenBatchNorm2d if trained else nn.BatchNorm2d,
        trainable_layers=trainable_backbone_layers,
    )
    transformer = DETRTransformer(
        hidden_dim, nheads, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout, normalize_before
    )
    model = DETR(backbone, num_classes, transformer=transformer, num_queries=num_queries, **kwargs)
    if weights is not None:
        load_weights(model, convert_detr_state_dict(read_state_dict(weights), model))
    return model


def detr_small(
    num_classes: int,
    *,
    num_queries: int = 20,
    hidden_dim: int = 64,
    nheads: int = 4,
    num_encoder_layers: int = 2,
    num_decoder_layers: int = 2,
    dim_feedforward: int = 128,
    dropout: float = 0.0,
    normalize_before: bool = False,
    **kwargs,
) -> DETR:
    """A small DETR for small images on a CPU: ``small_resnet`` up to layer3 (64 channels, stride
    16), a 64-wide transformer of 2 + 2 layers with 4 heads and no dropout (short schedules on
    little data), 20 queries, images resized to a short side of 128 (labels in [0, num_classes)).
    Other keyword arguments go to ``DETR``."""
    backbone = small_resnet(return_layers={"layer3": "0"})
    transformer = DETRTransformer(
        hidden_dim, nheads, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout, normalize_before
    )
    kwargs = {"min_size": 128, "max_size": 256, **kwargs}
    return DETR(backbone, num_classes, transformer=transformer, num_queries=num_queries, **kwargs)
