"""Weak labels -> training datasets: image-level (polygons), single-pixel (points) and dense
(label rasters), with the class encoding and counts of what was kept and dropped.

Where tiles and points go is decided in :mod:`geoembed.samplers.weak`; the datasets that
read them are in :mod:`geoembed.datasets.weak`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geoembed.datasets.weak import DenseSource, DenseTiles, ImageTiles, PointTiles
from geoembed.errors import InputError, LabelError
from geoembed.io.georef import xy_to_rowcol
from geoembed.io.labels import (
    check_same_grid,
    pixel_validity,
    read_vector,
    require_column,
    to_crs,
    value_key,
    vector_pixel_labels,
)
from geoembed.io.scenes import BandStats, Scene, open_scene
from geoembed.samplers.weak import dense_candidates, place_polygons, random_subset

#: A training image needs at least this fraction of valid (not nodata) pixels.
MIN_VALID_FRACTION = 0.5
#: Most classes a uint8 class map can hold (255 is nodata).
MAX_CLASSES = 255


# ---------------------------------------------------------------------------------------------
# Class encoding
# ---------------------------------------------------------------------------------------------

@dataclass
class ClassEncoding:
    """How label values become class codes ``0..K-1`` (the values of the output class map)."""

    names: list[str]
    values: list[list[str]]          # label values (keys) of each class
    positive: list[str] | None = None

    @property
    def n_classes(self) -> int:
        return len(self.names)

    def encode(self, raw: Sequence[Any]) -> np.ndarray:
        """Codes of label values; values of no class -> -1."""
        if self.positive is not None:
            return np.array([int(value_key(v) in self.positive) for v in raw], dtype=np.int64)
        lookup = {v: i for i, vals in enumerate(self.values) for v in vals}
        return np.array([lookup.get(value_key(v), -1) for v in raw], dtype=np.int64)


def _numbers_first(v: Any) -> tuple[bool, Any]:
    """Sort key: numbers in numeric order, then everything else as text."""
    is_number = isinstance(v, int | float | np.number)
    return (not is_number, v if is_number else str(v))


def class_encoding(values: Sequence[Any], positive: Sequence[Any] | str | None,
                   source: str = "labels") -> ClassEncoding:
    """Classes from the distinct label values; ``positive`` makes a one-vs-rest binary model.

    Raises:
        LabelError: fewer than two classes (or no / every label positive), too many classes.
    """
    keys = list(dict.fromkeys(value_key(v) for v in sorted(set(values), key=_numbers_first)))
    if positive is not None:
        pos = [value_key(p) for p in ([positive] if isinstance(positive, str | int | float)
                                      else positive)]
        is_pos = [k in pos for k in keys]
        if not any(is_pos):
            raise LabelError(f"{source}: no label equals --positive {','.join(pos)} "
                             f"(label values: {', '.join(keys[:20])})")
        if all(is_pos):
            raise LabelError(f"{source}: every label is positive (--positive "
                             f"{','.join(pos)}); a one-vs-rest model needs negatives too")
        name = ",".join(pos)
        return ClassEncoding([f"not {name}", name],
                             [[k for k in keys if k not in pos], [k for k in keys if k in pos]],
                             positive=pos)
    if len(keys) < 2:
        raise LabelError(f"{source}: only one class ({keys[0] if keys else 'none'!r}) among "
                         "the labels; at least two are needed")
    if len(keys) > MAX_CLASSES:
        raise LabelError(f"{source}: {len(keys)} classes; at most {MAX_CLASSES} fit a uint8 "
                         "class map")
    return ClassEncoding(list(keys), [[k] for k in keys])


def _encode_kept(raw: np.ndarray, positive: Any, source: str
                 ) -> tuple[ClassEncoding, np.ndarray]:
    """Class encoding and codes of the kept labels; a LabelError unless two classes remain."""
    enc = class_encoding(raw, positive, source)
    codes = enc.encode(raw)
    present = np.unique(codes[codes >= 0])
    if len(present) < 2:
        only = enc.names[int(present[0])] if len(present) else "none"
        raise LabelError(f"{source}: only one class ({only!r}) among the labels kept; at "
                         "least two are needed")
    return enc, codes


# ---------------------------------------------------------------------------------------------
# Label preparation
# ---------------------------------------------------------------------------------------------

@dataclass
class PreparedLabels:
    """A training dataset built from labels, with what was kept and dropped."""

    dataset: Any
    encoding: ClassEncoding
    codes: np.ndarray               # class code of each training item (image/pixel)
    n_input: int
    n_outside: int = 0
    n_nodata: int = 0
    n_unused: int = 0               # left out by max_labels
    extra: dict = field(default_factory=dict)

    @property
    def n_labels(self) -> int:
        return len(self.dataset)


def _labelled_features(labels: Any, column: str) -> tuple[Any, str]:
    """The label features with a value in ``column`` and a name for messages."""
    if isinstance(labels, str | os.PathLike):
        gdf, source = read_vector(labels), str(labels)
    elif hasattr(labels, "geometry"):
        if labels.crs is None:
            raise LabelError("labels: the GeoDataFrame has no CRS")
        gdf, source = labels, "labels"
    else:
        raise InputError("labels must be a vector file path or a GeoDataFrame for "
                         "--label-type image / pixel")
    require_column(gdf, column, source)
    gdf = gdf[gdf[column].notna()].reset_index(drop=True)
    if len(gdf) == 0:
        raise LabelError(f"{source}: every value of column {column!r} is empty")
    return gdf, source


def _no_label_inside(source: str, n_input: int, scenes: Sequence[Scene], what: str) -> LabelError:
    return LabelError(f"{source}: none of the {n_input} {what} "
                      f"{', '.join(s.name for s in scenes)}; check the CRS and extent of the "
                      "labels")


def prepare_image_labels(scenes: Sequence[Scene], labels: Any, column: str, *, tile: int,
                         stats: BandStats, positive: Any = None, max_labels: int | None = None,
                         seed: int = 0) -> PreparedLabels:
    """Image-level labels: one training image per polygon (its bounding window).

    A polygon belongs to the first scene that holds its whole window; windows that are not
    inside any scene or are less than half valid are dropped and counted.
    """
    gdf, source = _labelled_features(labels, column)
    n_input = len(gdf)
    assigned, windows = place_polygons(gdf, scenes, source)
    inside = np.flatnonzero(assigned >= 0)
    if len(inside) == 0:
        raise _no_label_inside(source, n_input, scenes, "label polygons lies inside")
    keep = np.array([j for j in inside if scenes[assigned[j]].read_valid(windows[j]).mean()
                     >= MIN_VALID_FRACTION], dtype=np.int64)
    n_nodata = len(inside) - len(keep)
    if len(keep) == 0:
        raise LabelError(f"{source}: every label polygon inside the scene is mostly nodata")
    keep = keep[random_subset(len(keep), max_labels, seed)]
    enc, codes = _encode_kept(gdf[column].to_numpy()[keep], positive, source)
    kept_windows = [windows[j] for j in keep]
    ds = ImageTiles(scenes, assigned[keep], kept_windows, codes, tile, stats)
    n_resampled = sum((w.height, w.width) != (tile, tile) for w in kept_windows)
    return PreparedLabels(ds, enc, codes, n_input=n_input, n_outside=n_input - len(inside),
                          n_nodata=n_nodata, n_unused=len(inside) - n_nodata - len(keep),
                          extra={"n_resampled": n_resampled})


def prepare_pixel_labels(scenes: Sequence[Scene], labels: Any, column: str, *, tile: int,
                         stats: BandStats, positive: Any = None, max_labels: int | None = None,
                         seed: int = 0) -> PreparedLabels:
    """Single-pixel labels: points (polygons contribute a point inside them).

    A point belongs to the first scene where it falls on a valid pixel.
    """
    gdf, source = _labelled_features(labels, column)
    n_input = len(gdf)
    remaining = np.arange(n_input)
    parts = []
    on_nodata = np.zeros(n_input, dtype=bool)
    for si, scene in enumerate(scenes):
        if len(remaining) == 0:
            break
        try:
            pl = vector_pixel_labels(gdf.iloc[remaining], scene, column)
        except LabelError:
            continue
        parts.append((np.full(len(pl), si), pl.rows, pl.cols, pl.labels))
        remaining = np.setdiff1d(remaining, remaining[pl.source_index])
        # points on nodata here might be valid in a later scene; remember them for counting
        on_nodata[remaining[_points_on_nodata(gdf.iloc[remaining], scene)]] = True
    if not parts:
        raise _no_label_inside(source, n_input, scenes, "labels falls on a valid pixel of")
    scene_index, rows, cols, raw = (np.concatenate(p) for p in zip(*parts, strict=True))
    n_nodata = int(on_nodata[remaining].sum())
    pick = random_subset(len(rows), max_labels, seed)
    enc, codes = _encode_kept(raw[pick], positive, source)
    ds = PointTiles(scenes, scene_index[pick], rows[pick], cols[pick], codes, tile, stats)
    return PreparedLabels(ds, enc, codes, n_input=n_input, n_outside=len(remaining) - n_nodata,
                          n_nodata=n_nodata, n_unused=len(rows) - len(pick))


def _points_on_nodata(gdf: Any, scene: Scene) -> np.ndarray:
    """Which features fall inside ``scene`` but on a nodata pixel (for drop counts)."""
    if len(gdf) == 0:
        return np.zeros(0, dtype=bool)
    gdf = gdf.reset_index(drop=True)  # positions: to_crs drops untransformable features
    local = to_crs(gdf, scene.crs) if scene.crs is not None else gdf
    pts = local.geometry.representative_point()
    rows, cols = xy_to_rowcol(scene.transform, pts.x.to_numpy(), pts.y.to_numpy())
    inside = (rows >= 0) & (rows < scene.height) & (cols >= 0) & (cols < scene.width)
    out = np.zeros(len(gdf), dtype=bool)
    out[local.index.to_numpy()[inside]] = ~pixel_validity(scene, rows[inside], cols[inside])
    return out


@dataclass
class _DenseCells:
    """The label-holding tile-grid cells of every scene's label raster."""

    sources: list[DenseSource]
    offsets: np.ndarray              # (n, 2) top-left row, col
    fractions: np.ndarray            # labelled fraction of each cell
    source_index: np.ndarray         # the source (scene) of each cell
    counts: dict                     # label value -> labelled valid pixels


def _dense_cells(scenes: Sequence[Scene], paths: Sequence[Any], tile: int) -> _DenseCells:
    sources, offsets, fractions, index = [], [], [], []
    counts: dict = {}
    for si, (scene, path) in enumerate(zip(scenes, paths, strict=True)):
        lab = open_scene(path, bands=[1], allow_no_crs=scene.crs is None)
        check_same_grid(scene, lab)
        off, frac, cnt = dense_candidates(scene, lab, tile)
        sources.append(DenseSource(scene, lab, [], []))
        offsets.append(off)
        fractions.append(frac)
        index.append(np.full(len(off), si))
        for v, n in cnt.items():
            counts[v] = counts.get(v, 0) + n
    return _DenseCells(sources, np.concatenate(offsets), np.concatenate(fractions),
                       np.concatenate(index), counts)


def prepare_dense_labels(scenes: Sequence[Scene], labels: Sequence[Any], *, tile: int,
                         stats: BandStats, positive: Any = None, max_labels: int | None = None,
                         seed: int = 0) -> PreparedLabels:
    """Dense labels: one label raster per scene on the scene's grid (its nodata = unlabelled).

    Training items are the tile-grid cells holding labels; without ``max_labels`` they are
    jittered by up to half a tile each epoch, with ``max_labels=N`` exactly N cells (chosen at
    random among those at least half labelled) are used as they are.
    """
    paths = [labels] if isinstance(labels, str | os.PathLike) else list(labels)
    if len(paths) != len(scenes):
        raise InputError(f"--label-type dense needs one label raster per scene: "
                         f"{len(paths)} label raster(s) for {len(scenes)} scene(s)")
    cells = _dense_cells(scenes, paths, tile)
    source = ", ".join(str(p) for p in paths)
    if not cells.counts:
        raise LabelError(f"{source}: no labelled pixel on a valid pixel of the scene(s)")
    values = list(cells.counts)
    enc = class_encoding(values, positive, source)
    for src in cells.sources:
        src.values, src.codes = values, enc.encode(values).tolist()
    code_counts = np.zeros(enc.n_classes, dtype=np.int64)
    np.add.at(code_counts, enc.encode(values), list(cells.counts.values()))
    if (code_counts > 0).sum() < 2:
        raise LabelError(f"{source}: only one class among the labelled pixels")
    pick = np.arange(len(cells.offsets))
    if max_labels is not None:
        pool = np.flatnonzero(cells.fractions >= 0.5)
        if len(pool) < min(max_labels, len(cells.offsets)):
            pool = pick
        pick = pool[random_subset(len(pool), max_labels, seed)]
    ds = DenseTiles(cells.sources, cells.source_index[pick], cells.offsets[pick], tile, stats,
                    jitter=max_labels is None)
    return PreparedLabels(ds, enc, np.zeros(0, dtype=np.int64), n_input=len(cells.offsets),
                          n_unused=len(cells.offsets) - len(pick),
                          extra={"pixel_counts": code_counts.tolist()})
