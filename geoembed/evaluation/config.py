"""The options of :func:`geoembed.evaluation.evaluate.evaluate`, shared by the CLI and Python.

:class:`EvaluateConfig` holds every option with its default and checks it; the CLI parses
its comma-separated options into tuples (``cli/evaluate.py``) and Python callers may pass
sequences (or, as before, comma-separated strings and the ``"both"`` / ``"none"`` aliases).
This module stays light (no scikit-learn, no torch) so that the CLI can import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from geoembed.errors import InputError
from geoembed.evaluation.sources import Source, resolve_sources

CLASSIFIERS = ("logreg", "rf", "hgb")
BOTH_CLASSIFIERS = ("logreg", "rf")  # what classifier="both" means
CV_SCHEMES = ("spatial", "random")
#: how spatial folds group labels: square blocks; blocks merged with the input features
#: (polygons), so a polygon's pixels share a fold; ``auto``: polygons for vector polygons
CV_GROUPS = ("blocks", "polygons", "auto")
FEATURE_SETS = ("embedding", "bands", "tile-stats", "random-encoder", "pca", "embedding+bands",
                "random-features")
OPT_IN_FEATURES = ("random-features",)  # computed only when asked for by name
DEFAULT_SIZES: tuple[int | str, ...] = (10, 20, 50, 100, 200, 500, "all")
DEFAULT_TILE = 50


def _items(value: str | Sequence[Any]) -> list[Any]:
    """A sequence as a list; a string as its comma-separated items (older Python callers)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [v.strip() if isinstance(v, str) else v for v in items
            if not (isinstance(v, str) and not v.strip())]


def check_names(value: str | Sequence[str], allowed: Sequence[str], what: str, *,
                both: bool = True) -> tuple[str, ...]:
    """Names checked against ``allowed`` (``"both"`` = all of them), duplicates dropped."""
    names = list(allowed) if both and value == "both" else _items(value)
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        extra = " or both" if both else ""
        raise InputError(f"unknown {what} {bad or value!r}; choose from "
                         f"{', '.join(allowed)}{extra}")
    return tuple(dict.fromkeys(names))


def check_size(item: int | str) -> int | str:
    """One learning-curve size: ``"all"`` or an integer of at least 2."""
    if str(item).strip().lower() == "all":
        return "all"
    try:
        n = int(str(item).strip())
    except ValueError:
        raise InputError(f"learning-curve size {item!r} is not a number or 'all'") from None
    if n < 2:
        raise InputError(f"learning-curve size {n} is too small (at least 2 labels)")
    return n


def check_sizes(value: str | Sequence[int | str] | None) -> tuple[int | str, ...]:
    """Learning-curve sizes: None = the defaults; ``"none"`` or empty = no learning curve."""
    if value is None:
        return DEFAULT_SIZES
    items = [v for v in _items(value) if str(v).strip().lower() != "none"]
    return tuple(dict.fromkeys(check_size(v) for v in items))


def check_cv_groups(value: str) -> str:
    """``value`` if it is one of :data:`CV_GROUPS`, else an InputError."""
    if value not in CV_GROUPS:
        raise InputError(f"unknown --cv-groups {value!r}; choose from {', '.join(CV_GROUPS)}")
    return value


def _at_least(value: int | None, minimum: int, option: str) -> None:
    if value is not None and value < minimum:
        raise InputError(f"{option} must be at least {minimum}")


@dataclass
class EvaluateConfig:
    """Every option of an evaluation (see :func:`~geoembed.evaluation.evaluate.evaluate`).

    List options are normalised to tuples when the config is made; a bad value raises
    :class:`~geoembed.errors.InputError`.
    """

    labels: str | os.PathLike | Any | None = None
    label_column: str | None = None
    labels_raster: str | os.PathLike | None = None
    max_labels: int | None = None
    polygon_samples: int | None = None
    checkpoint: str | os.PathLike | Sequence[Any] | Mapping[str, Any] | None = None
    embeddings: str | os.PathLike | Sequence[Any] | Mapping[str, Any] | None = None
    features: str | Sequence[str] | None = None
    classifier: str | Sequence[str] = "logreg"
    cv: str | Sequence[str] = "spatial"
    folds: int = 5
    block_size: int | None = None
    cv_groups: str = "auto"
    learning_curve_sizes: str | Sequence[int | str] | None = DEFAULT_SIZES
    repeats: int = 5
    tile_size: int | None = None
    bands: Sequence[int] | None = None
    pca_tiles: int = 1000
    n_random_features: int = 1024
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    allow_no_crs: bool = False
    overwrite: bool = False
    quiet: bool = False
    plots: bool = True

    def __post_init__(self) -> None:
        self.classifier = check_names(BOTH_CLASSIFIERS if self.classifier == "both"
                                      else self.classifier, CLASSIFIERS, "classifier")
        self.cv = check_names(self.cv, CV_SCHEMES, "CV scheme")
        check_cv_groups(self.cv_groups)
        self.learning_curve_sizes = check_sizes(self.learning_curve_sizes)
        if self.features is not None:
            self.features = check_names(self.features, FEATURE_SETS, "feature set(s)",
                                        both=False)
        for value, minimum, option in (
                (self.folds, 2, "--folds"), (self.repeats, 1, "--repeats"),
                (self.polygon_samples, 1, "--polygon-samples"),
                (self.max_labels, 2, "--max-labels"), (self.block_size, 1, "--block-size"),
                (self.tile_size, 1, "--tile-size"),
                (self.batch_size, 1, "--batch-size")):
            _at_least(value, minimum, option)
        self.sources()  # bad names raise now
        if self.n_random_features < 2 or self.n_random_features % 2:
            raise InputError("--n-random-features must be an even number of at least 2")

    def sources(self) -> list[Source]:
        """The named embedding sources of ``checkpoint`` and ``embeddings`` (checkpoints
        first; see :mod:`~geoembed.evaluation.sources`)."""
        reserved = [n for n in FEATURE_SETS if n != "embedding"]
        return resolve_sources(self.checkpoint, self.embeddings, reserved)

    def feature_names(self) -> list[str]:
        """The feature sets to compute: the requested ones, else every available one but the
        opt-in ones (:data:`OPT_IN_FEATURES`)."""
        sources = self.sources()
        has_ckpt = any(s.is_checkpoint for s in sources)
        has_emb = any(not s.is_checkpoint for s in sources)
        available = [n for n in FEATURE_SETS
                     if not (n in ("embedding", "embedding+bands") and not (has_ckpt or has_emb))
                     and not (n == "random-encoder" and not has_ckpt)]
        if self.features is None:
            return [n for n in available if n not in OPT_IN_FEATURES]
        missing = [n for n in self.features if n not in available]
        if missing:
            need = "--checkpoint" if "random-encoder" in missing and has_emb \
                else "--checkpoint or --embeddings"
            raise InputError(f"feature set(s) {', '.join(missing)} need {need}")
        return list(self.features)


__all__ = ["BOTH_CLASSIFIERS", "CLASSIFIERS", "CV_GROUPS", "CV_SCHEMES", "DEFAULT_SIZES",
           "DEFAULT_TILE", "FEATURE_SETS", "OPT_IN_FEATURES",
           "EvaluateConfig", "check_cv_groups", "check_names", "check_size", "check_sizes"]
