"""Per-class metrics from a confusion matrix: the one definition used by evaluate and segment.

:func:`class_metrics` turns a confusion matrix (rows = true classes, columns = predicted
classes) into accuracy, macro-F1 and mean IoU over the classes present in the truth, and
per-class precision / recall / F1 / IoU / support (a ratio with a zero denominator is 0, as
scikit-learn's ``zero_division=0``). :func:`scores` (cross-validated predictions) and
:class:`ConfusionAccumulator` (a map scored chunk by chunk against a reference raster) both
report from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

PER_CLASS_KEYS = ("precision", "recall", "f1", "iou", "support")


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one confusion matrix; arrays are indexed by class code."""

    accuracy: float
    macro_f1: float
    mean_iou: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    iou: np.ndarray
    support: np.ndarray

    def per_class(self, class_names: Sequence[Any],
                  keys: Sequence[str] = PER_CLASS_KEYS) -> dict[str, dict[str, float | int]]:
        """``{name: {key: value}}`` for ``keys`` (a subset of :data:`PER_CLASS_KEYS`)."""
        out = {}
        for i, name in enumerate(class_names):
            row: dict[str, float | int] = {}
            for key in keys:
                v = getattr(self, key)[i]
                row[key] = int(v) if key == "support" else float(v)
            out[name] = row
        return out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def class_metrics(matrix: np.ndarray | Sequence[Sequence[int]]) -> ClassMetrics:
    """Accuracy, macro-F1 / mean IoU over present classes, per-class metrics.

    Args:
        matrix: ``(K, K)`` counts, rows = true class, columns = predicted class.

    Returns:
        :class:`ClassMetrics`; accuracy, macro-F1 and mean IoU are NaN for an empty matrix.
    """
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    total = m.sum()
    support = m.sum(axis=1)
    precision = _ratio(tp, m.sum(axis=0))
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    iou = _ratio(tp, m.sum(axis=0) + support - tp)
    present = support > 0
    return ClassMetrics(
        accuracy=float(tp.sum() / total) if total else float("nan"),
        macro_f1=float(f1[present].mean()) if present.any() else float("nan"),
        mean_iou=float(iou[present].mean()) if present.any() else float("nan"),
        precision=precision, recall=recall, f1=f1, iou=iou, support=support.astype(np.int64))


def scores(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    ``y_true``/``y_pred`` are codes 0..K-1 indexing ``class_names``; rows of the confusion
    matrix are true classes, columns predicted ones, both in ``class_names`` order.
    """
    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(class_names))))
    met = class_metrics(cm)
    return {
        "accuracy": met.accuracy,
        "macro_f1": met.macro_f1,
        "per_class": met.per_class([str(c) for c in class_names],
                                   ("precision", "recall", "f1", "support")),
        "class_order": [str(c) for c in class_names],
        "confusion_matrix": cm.tolist(),
    }


class ConfusionAccumulator:
    """Confusion matrix of class codes, accumulated chunk by chunk (sklearn's)."""

    def __init__(self, n_classes: int) -> None:
        self.n = n_classes
        self.matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.n_unmapped = 0

    def add(self, truth: np.ndarray, pred: np.ndarray) -> None:
        if truth.size:
            self.matrix += confusion_matrix(truth, pred, labels=list(range(self.n)))

    def report(self, class_names: Sequence[str]) -> dict[str, Any]:
        """Accuracy, per-class precision / recall / F1 / IoU / support, macro means."""
        met = class_metrics(self.matrix)
        return {
            "pixels": int(self.matrix.sum()),
            "accuracy": met.accuracy,
            "classes": met.per_class(class_names),
            "macro_f1": met.macro_f1,
            "mean_iou": met.mean_iou,
            "confusion_matrix": self.matrix.tolist(),
            "unmapped_pixels": int(self.n_unmapped),
        }


__all__ = ["ClassMetrics", "ConfusionAccumulator", "class_metrics", "scores"]
