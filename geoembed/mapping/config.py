"""The options of :func:`geoembed.mapping.map.map`, shared by the CLI and Python (stdlib only).

:class:`MapConfig` holds every option of ``geoembed map`` with its default and checks it.
Feature-set names are ``evaluate``'s (:data:`geoembed.evaluation.config.FEATURE_SETS`) where
they make sense for a map; ``embedding`` stands for every ``--checkpoint`` / ``--embeddings``
source and is implied when one is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geoembed.errors import InputError
from geoembed.evaluation.config import check_cv_groups

MAP_FEATURES = ("embedding", "bands", "tile-stats", "random-features", "pca", "embedding+bands")
MAP_CLASSIFIERS = ("logreg", "rf", "hgb")
#: feature sets that cost one tile-sized window per output pixel
WINDOW_FEATURES = ("tile-stats", "random-features", "pca")
#: without --stride/--resolution, window features on a scene with more pixels than this
#: map at stride tile // 5 (see :func:`geoembed.mapping.grid.choose_stride`)
FULL_GRID_MAX_PIXELS = 512 * 512
DEFAULT_TILE = 50
DEFAULT_RANDOM_FEATURES = 1024


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))
    bad = [n for n in names if n not in MAP_FEATURES]
    if bad:
        raise InputError(f"unknown feature set(s) {', '.join(bad)} for a map; choose from "
                         f"{', '.join(MAP_FEATURES)}")
    return names


def _paths(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str | os.PathLike):
        return (value,)
    return tuple(value)


@dataclass
class MapConfig:
    """Every option of a map (see :func:`~geoembed.mapping.map.map` for their meaning)."""

    labels: str | os.PathLike | Any | None = None
    label_column: str | None = None
    labels_raster: str | os.PathLike | None = None
    max_labels: int | None = None
    polygon_samples: int | None = None
    checkpoint: str | os.PathLike | None = None
    embeddings: Sequence[str | os.PathLike] | str | os.PathLike | None = None
    features: str | Sequence[str] | None = None
    classifier: str = "logreg"
    stride: int | None = None
    resolution: float | None = None
    tile_size: int | None = None
    bands: Sequence[int] | None = None
    n_random_features: int = DEFAULT_RANDOM_FEATURES
    pca_tiles: int = 1000
    folds: int = 5
    block_size: int | None = None
    cv_groups: str = "auto"
    batch_size: int = 256
    probabilities: str | os.PathLike | None = None
    confidence: str | os.PathLike | None = None
    reference: str | os.PathLike | None = None
    seed: int = 0
    device: str = "auto"
    allow_no_crs: bool = False
    overwrite: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        self.embeddings = _paths(self.embeddings)
        self.features = _names(self.features)
        check_cv_groups(self.cv_groups)
        if self.classifier not in MAP_CLASSIFIERS:
            raise InputError(f"unknown classifier {self.classifier!r}; choose from "
                             f"{', '.join(MAP_CLASSIFIERS)}")
        if self.stride is not None and self.resolution is not None:
            raise InputError("give --stride or --resolution, not both")
        if self.resolution is not None and not self.resolution > 0:
            raise InputError("--resolution must be positive")
        for value, minimum, option in (
                (self.stride, 1, "--stride"), (self.tile_size, 1, "--tile-size"),
                (self.n_random_features, 1, "--n-random-features"),
                (self.pca_tiles, 2, "--pca-tiles"), (self.folds, 2, "--folds"),
                (self.block_size, 1, "--block-size"), (self.batch_size, 1, "--batch-size"),
                (self.max_labels, 2, "--max-labels"),
                (self.polygon_samples, 1, "--polygon-samples")):
            if value is not None and value < minimum:
                raise InputError(f"{option} must be at least {minimum}")
        if self.n_random_features % 2:
            raise InputError("--n-random-features must be an even number of at least 2")

    @property
    def has_sources(self) -> bool:
        """Whether a checkpoint or an embedding raster is given."""
        return self.checkpoint is not None or bool(self.embeddings)

    def feature_names(self) -> list[str]:
        """The feature sets, in order: ``embedding`` first when implied, ``embedding+bands``
        expanded; ``bands`` when nothing at all is given."""
        names: list[str] = []
        for n in self.features:
            names.extend(("embedding", "bands") if n == "embedding+bands" else (n,))
        if self.has_sources and "embedding" not in names:
            names.insert(0, "embedding")
        if "embedding" in names and not self.has_sources:
            raise InputError("feature set embedding needs --checkpoint or --embeddings")
        return list(dict.fromkeys(names)) or ["bands"]

    def window_based(self) -> bool:
        """Whether a feature costs one tile-sized window per output pixel."""
        names = self.feature_names()
        return any(n in WINDOW_FEATURES for n in names) or (
            "embedding" in names and self.checkpoint is not None)


__all__ = ["DEFAULT_RANDOM_FEATURES", "DEFAULT_TILE", "FULL_GRID_MAX_PIXELS", "MAP_CLASSIFIERS",
           "MAP_FEATURES", "WINDOW_FEATURES", "MapConfig"]
