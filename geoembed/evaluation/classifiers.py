"""Classifiers on features: the linear probe, the random forest and gradient boosting,
out-of-fold predictions (scikit-learn's ``cross_val_predict``) and learning curves.

Features are standardised inside each fold (a ``StandardScaler`` in the pipeline, fitted on
the training part only). Every fit goes through :class:`ProbeClassifier` and
:func:`predict_out_of_fold`: the full cross-validation and each learning-curve subset are the
same call with different ``(train, test)`` splits.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import PredefinedSplit, train_test_split
from sklearn.model_selection import cross_val_predict as sk_cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from geoembed.errors import InputError
from geoembed.evaluation.config import CLASSIFIERS

Split = tuple[np.ndarray, np.ndarray]


def make_classifier(name: str, seed: int = 0) -> Pipeline:
    """StandardScaler + LogisticRegression (``logreg``), RandomForest (``rf``) or
    HistGradientBoosting (``hgb``) pipeline."""
    if name == "logreg":
        model: Any = LogisticRegression(max_iter=2000)
    elif name == "rf":
        model = RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)
    elif name == "hgb":
        model = HistGradientBoostingClassifier(random_state=seed)
    else:
        raise InputError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")
    return make_pipeline(StandardScaler(), model)


class ProbeClassifier(ClassifierMixin, BaseEstimator):
    """:func:`make_classifier`'s pipeline as one estimator for ``cross_val_predict``.

    A training part with a single class predicts that class everywhere (scikit-learn's
    classifiers refuse to fit one class; a small learning-curve subset can hold one).

    Args:
        name: ``"logreg"``, ``"rf"`` or ``"hgb"``.
        seed: the random forest's / gradient boosting's ``random_state``.
    """

    def __init__(self, name: str = "logreg", seed: int = 0) -> None:
        self.name = name
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> ProbeClassifier:
        self.classes_ = np.unique(y)
        self.model_ = None
        if len(self.classes_) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.model_ = make_classifier(self.name, self.seed).fit(x, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            return np.full(len(x), self.classes_[0], dtype=self.classes_.dtype)
        return self.model_.predict(x)


def predict_out_of_fold(x: np.ndarray, y: np.ndarray, splits: Iterable[Split] | Any,
                        classifier: str, seed: int = 0) -> np.ndarray:
    """Each label predicted by a model fitted on the training part of its split.

    ``splits`` is a scikit-learn CV splitter or ``(train, test)`` index pairs whose test
    parts partition the labels.
    """
    return sk_cross_val_predict(ProbeClassifier(classifier, seed), x, y, cv=splits)


def cross_val_predict(x: np.ndarray, y: np.ndarray, fold: np.ndarray, classifier: str,
                      seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions: each label predicted by a model fitted on the other folds."""
    return predict_out_of_fold(x, y, PredefinedSplit(fold), classifier, seed)


def _subset(train: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random indices of ``train``, stratified by class when possible."""
    if n >= len(train):
        return train
    try:
        sub, _ = train_test_split(train, train_size=n, stratify=y[train],
                                  random_state=int(rng.integers(2**31 - 1)))
        return np.asarray(sub)
    except ValueError:  # too few labels of some class, or n < number of classes
        return rng.choice(train, size=n, replace=False)


def _subset_splits(y: np.ndarray, fold: np.ndarray, n: int, rng: np.random.Generator
                   ) -> list[Split]:
    """Per fold: ``n`` random labels of its training part, and the whole test fold."""
    splits = []
    for k in np.unique(fold):
        test = fold == k
        splits.append((_subset(np.flatnonzero(~test), y, n, rng), np.flatnonzero(test)))
    return splits


def _curve_point(n_train: int, accs: Sequence[float], f1s: Sequence[float],
                 **extra: Any) -> dict:
    return {"n_train": n_train, **extra, "accuracy_mean": float(np.mean(accs)),
            "accuracy_std": float(np.std(accs)), "macro_f1_mean": float(np.mean(f1s)),
            "macro_f1_std": float(np.std(f1s)), "repeats": len(accs)}


def learning_curve(x: np.ndarray, y: np.ndarray, fold: np.ndarray, classifier: str,
                   sizes: Sequence[int | str], *, repeats: int = 5, seed: int = 0,
                   n_classes: int | None = None, full: dict | None = None) -> list[dict]:
    """Accuracy and macro-F1 against the number of training labels.

    For each size ``n`` (capped by the smallest training fold) and each repeat, every fold's
    model is fitted on ``n`` random labels of its training part and scores the whole test
    fold; the out-of-fold predictions of one repeat give one accuracy and macro-F1. Returns
    ``[{"n_train", "accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std",
    "repeats"}]``. ``"all"`` uses the full training folds once (``full`` reuses scores
    already computed).
    """
    folds = np.unique(fold)
    train_sizes = [int((fold != k).sum()) for k in folds]
    labels = list(range(n_classes if n_classes is not None else int(y.max()) + 1))

    def score(pred: np.ndarray) -> tuple[float, float]:
        return (accuracy_score(y, pred),
                f1_score(y, pred, labels=labels, average="macro", zero_division=0))

    out = []
    for n in sorted({int(s) for s in sizes if s != "all" and int(s) < min(train_sizes)}):
        runs = [score(predict_out_of_fold(
                    x, y, _subset_splits(y, fold, n, np.random.default_rng([seed, n, rep])),
                    classifier, seed + rep)) for rep in range(repeats)]
        out.append(_curve_point(n, [a for a, _ in runs], [f for _, f in runs]))
    if "all" in sizes or any(s != "all" and int(s) >= min(train_sizes) for s in sizes):
        if full is None:
            acc, f1 = score(cross_val_predict(x, y, fold, classifier, seed))
        else:
            acc, f1 = full["accuracy"], full["macro_f1"]
        out.append(_curve_point(int(round(np.mean(train_sizes))), [acc], [f1], all=True))
    return out


__all__ = ["CLASSIFIERS", "ProbeClassifier", "cross_val_predict", "learning_curve",
           "make_classifier", "predict_out_of_fold"]
