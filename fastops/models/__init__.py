"""Complete models composed of ``fastops.nn`` parts (layout in docs/ARCHITECTURE.md, "Models").

Subpackages: ``backbones`` (feature extractors that report their output channels and strides),
``necks`` (FPN), ``components`` (anchors, box coder, matcher, sampler, image transform,
post-processing: each small and tested on its own), ``detection`` and ``segmentation`` (models
that only compose those parts), ``classification``, ``localization`` (one object per image).
Every model is built by a plain builder function and has one surface: ``forward`` (detectors:
losses in training mode, predictions in eval mode, as torchvision's; classifiers and the
localizer: their outputs), ``loss(...)`` and ``predict(...)`` working in either mode.
"""

from .fc_to_conv import convert_fc_to_conv

__all__ = ["convert_fc_to_conv"]
