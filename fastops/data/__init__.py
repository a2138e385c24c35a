"""Datasets, transforms and samplers (layout in docs/ARCHITECTURE.md, "Data"): built-in synthetic
datasets, COCO and VOC readers, transforms that keep images, boxes and masks consistent, and the
samplers for imbalanced data. Never imports ``fastops.models``."""
