"""Necks: the feature pyramid and its extra levels."""

from .fpn import BackboneWithFPN, ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7

__all__ = ["BackboneWithFPN", "ExtraFPNBlock", "FeaturePyramidNetwork", "LastLevelMaxPool", "LastLevelP6P7"]
