"""Cross-validation folds: square spatial blocks (whole blocks per fold) or random folds.

- ``spatial``: labels are grouped in square blocks of ``block_size`` pixels (block id from
  ``row // block_size`` and ``col // block_size``); whole blocks go to one fold, so a test
  label never has a training label from its own block. Folds come from scikit-learn's
  ``StratifiedGroupKFold`` (a ``GroupKFold`` that also keeps class proportions similar across
  folds, so a rare class is less likely to be missing from every training fold).
- ``random``: ``StratifiedKFold`` with shuffling. Nearby labels then leak into each other.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from geoembed.errors import InputError, LabelError
from geoembed.evaluation.config import CV_SCHEMES


def spatial_blocks(rows: np.ndarray, cols: np.ndarray, block_size: int) -> np.ndarray:
    """Block id of each pixel: square blocks of ``block_size`` pixels, numbered row-major."""
    if block_size < 1:
        raise InputError("--block-size must be at least 1 pixel")
    br = np.asarray(rows, np.int64) // block_size
    bc = np.asarray(cols, np.int64) // block_size
    return br * (int(bc.max(initial=0)) + 1) + bc


def _splitter(y: np.ndarray, scheme: str, n_folds: int, seed: int, groups: np.ndarray | None,
              notes: list[str]) -> tuple[object, int]:
    """The scikit-learn splitter of ``scheme`` and the number of folds it makes."""
    if scheme == "random":
        return StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed), n_folds
    if scheme != "spatial":
        raise InputError(f"unknown CV scheme {scheme!r}; choose from {', '.join(CV_SCHEMES)}")
    if groups is None:
        raise InputError("spatial folds need groups (block ids)")
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise LabelError("all labels fall in one spatial block; use a smaller "
                         "--block-size (or --cv random)")
    if n_groups < n_folds:
        notes.append(f"spatial CV: only {n_groups} blocks hold labels, so {n_groups} "
                     f"folds are used instead of {n_folds}")
        n_folds = n_groups
    return StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed), n_folds


def make_folds(y: np.ndarray, scheme: str, n_folds: int, *, seed: int = 0,
               groups: np.ndarray | None = None) -> tuple[np.ndarray, int, list[str]]:
    """Fold number (0..k-1) of every label, the number of folds used, and warnings.

    ``spatial`` needs ``groups`` (block ids); when there are fewer blocks than folds the
    folds are reduced to the number of blocks.
    """
    if n_folds < 2:
        raise InputError("--folds must be at least 2")
    notes: list[str] = []
    splitter, n_folds = _splitter(y, scheme, n_folds, seed, groups, notes)
    fold = np.full(len(y), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" (handled)
        for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            fold[test] = k
    used = np.unique(fold)
    if len(used) < n_folds:  # a splitter may leave a fold empty with very few groups
        fold = np.searchsorted(used, fold)
        n_folds = len(used)
    return fold, n_folds, notes


__all__ = ["CV_SCHEMES", "make_folds", "spatial_blocks"]
