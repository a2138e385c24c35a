"""Classifiers: the multi-label classifier (sigmoid outputs, weighted or focal losses, per-label
thresholds)."""

from .multilabel import MultiLabelClassifier, multilabel_classifier

__all__ = ["MultiLabelClassifier", "multilabel_classifier"]
