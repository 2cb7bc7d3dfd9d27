"""Cross-validation folds: square spatial blocks (whole blocks per fold) or random folds.

- ``spatial``: labels are grouped in square blocks of ``block_size`` pixels (block id from
  ``row // block_size`` and ``col // block_size``); whole blocks go to one fold, so a test
  label never has a training label from its own block. Folds come from scikit-learn's
  ``StratifiedGroupKFold`` (a ``GroupKFold`` that also keeps class proportions similar across
  folds, so a rare class is less likely to be missing from every training fold).
- ``random``: ``StratifiedKFold`` with shuffling. Nearby labels then leak into each other.

Spatial groups (``--cv-groups``, :func:`cv_groups`): ``blocks`` as above; ``polygons`` merges
the blocks with the input features the labels came from (connected components over "same
block" and "same polygon", :func:`merge_groups`), so the pixels of one polygon never sit in
both a training and a test fold even when the polygon spans several blocks; ``auto`` is
``polygons`` for vector labels with polygons, else ``blocks``.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from geoembed.errors import InputError, LabelError
from geoembed.evaluation.config import CV_SCHEMES, check_cv_groups


def spatial_blocks(rows: np.ndarray, cols: np.ndarray, block_size: int) -> np.ndarray:
    """Block id of each pixel: square blocks of ``block_size`` pixels, numbered row-major."""
    if block_size < 1:
        raise InputError("--block-size must be at least 1 pixel")
    br = np.asarray(rows, np.int64) // block_size
    bc = np.asarray(cols, np.int64) // block_size
    return br * (int(bc.max(initial=0)) + 1) + bc


def merge_groups(blocks: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Groups 0..g-1 joining labels that share a block or a feature: the connected
    components of the graph linking each label's block to its feature."""
    if len(blocks) == 0:
        return np.zeros(0, np.int64)
    ib = np.unique(blocks, return_inverse=True)[1].ravel()
    jf = np.unique(features, return_inverse=True)[1].ravel() + int(ib.max()) + 1
    n = int(jf.max()) + 1
    graph = coo_matrix((np.ones(len(ib)), (ib, jf)), shape=(n, n))
    component = connected_components(graph, directed=False)[1][ib]
    return np.unique(component, return_inverse=True)[1].ravel().astype(np.int64)


def resolve_cv_groups(how: str, geometry: str) -> str:
    """``blocks`` or ``polygons`` for ``--cv-groups how`` and labels of ``geometry``
    (:attr:`~geoembed.io.labels.PixelLabels.geometry`).

    Raises:
        InputError: ``polygons`` with a label raster (no features to group by).
    """
    check_cv_groups(how)
    if how == "polygons" and geometry == "raster":
        raise InputError("--cv-groups polygons needs vector labels (--labels); a label raster "
                         "has no polygons: use --cv-groups blocks")
    if how == "auto":
        return "polygons" if "polygons" in geometry.split("+") else "blocks"
    return how


def cv_groups(rows: np.ndarray, cols: np.ndarray, block_size: int, how: str = "blocks",
              feature: np.ndarray | None = None) -> np.ndarray:
    """Spatial CV group of each label: its block (``blocks``), or, for ``polygons``, its
    block merged with every block its input ``feature`` reaches (:func:`merge_groups`)."""
    blocks = spatial_blocks(rows, cols, block_size)
    if how == "blocks":
        return blocks
    if how != "polygons" or feature is None or len(feature) != len(blocks):
        raise InputError(f"CV groups {how!r} need one input feature per label")
    return merge_groups(blocks, feature)


def _splitter(y: np.ndarray, scheme: str, n_folds: int, seed: int, groups: np.ndarray | None,
              notes: list[str], grouping: str = "blocks") -> tuple[object, int]:
    """The scikit-learn splitter of ``scheme`` and the number of folds it makes."""
    if scheme == "random":
        return StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed), n_folds
    if scheme != "spatial":
        raise InputError(f"unknown CV scheme {scheme!r}; choose from {', '.join(CV_SCHEMES)}")
    if groups is None:
        raise InputError("spatial folds need groups (block ids)")
    n_groups = len(np.unique(groups))
    blocks = grouping == "blocks"
    if n_groups < 2:
        where = "spatial block" if blocks else "group of polygons and the blocks they touch"
        extra = "" if blocks else ", --cv-groups blocks"
        raise LabelError(f"all labels fall in one {where}; use a smaller "
                         f"--block-size (or --cv random{extra})")
    if n_groups < n_folds:
        what = "blocks" if blocks else "groups of polygons and blocks"
        notes.append(f"spatial CV: only {n_groups} {what} hold labels, so {n_groups} "
                     f"folds are used instead of {n_folds}")
        n_folds = n_groups
    return StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed), n_folds


def make_folds(y: np.ndarray, scheme: str, n_folds: int, *, seed: int = 0,
               groups: np.ndarray | None = None, grouping: str = "blocks"
               ) -> tuple[np.ndarray, int, list[str]]:
    """Fold number (0..k-1) of every label, the number of folds used, and warnings.

    ``spatial`` needs ``groups`` (block ids, or :func:`cv_groups` of ``grouping``, which
    names them in the notes); when there are fewer groups than folds the folds are reduced
    to the number of groups.
    """
    if n_folds < 2:
        raise InputError("--folds must be at least 2")
    notes: list[str] = []
    splitter, n_folds = _splitter(y, scheme, n_folds, seed, groups, notes, grouping)
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


__all__ = ["CV_SCHEMES", "cv_groups", "make_folds", "merge_groups", "resolve_cv_groups",
           "spatial_blocks"]
