"""Where weak-label training tiles go (coordinates only; pixels come from ``geoembed.io``).

* image labels: each polygon's whole-pixel bounding window in the first scene that holds it
  (:func:`polygon_window`, :func:`place_polygons`);
* single-pixel labels: a tile holding the point at a given offset, clipped to the scene
  (:func:`clipped_window`), and the labelled points inside a window (:class:`PointIndex`);
* dense labels: the tile-grid cells of a label raster that hold labels
  (:func:`dense_candidates`);
* a seeded random subset of N labels (:func:`random_subset`, ``--max-labels``).

Torch-free: random offsets are drawn by the datasets from torch's RNG (seeded per epoch by
the fit loop) and passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window, from_bounds

from geoembed.errors import InputError
from geoembed.io.labels import to_crs
from geoembed.io.scenes import Scene
from geoembed.samplers.grid import grid_offsets

#: Tolerance (pixels) when rounding a polygon's window out to whole pixels, so that
#: bounds on pixel edges, reprojected with rounding noise, do not grow by a pixel.
_EDGE_EPS = 1e-6


def polygon_window(bounds: Sequence[float], transform: Affine) -> Window:
    """The whole-pixel window covering ``(minx, miny, maxx, maxy)`` on a grid.

    :func:`rasterio.windows.from_bounds` gives the fractional window; its edges are rounded
    outwards (at least one pixel each way).
    """
    left, bottom, right, top = (float(v) for v in bounds)
    if transform.a < 0:  # from_bounds wants the bounds in the grid's orientation
        left, right = right, left
    if transform.e > 0:
        bottom, top = top, bottom
    w = from_bounds(left, bottom, right, top, transform=transform)
    c0 = math.floor(w.col_off + _EDGE_EPS)
    c1 = math.ceil(w.col_off + w.width - _EDGE_EPS)
    r0 = math.floor(w.row_off + _EDGE_EPS)
    r1 = math.ceil(w.row_off + w.height - _EDGE_EPS)
    return Window(c0, r0, max(c1 - c0, 1), max(r1 - r0, 1))


def place_polygons(gdf: Any, scenes: Sequence[Scene], source: str = "labels"
                   ) -> tuple[np.ndarray, list[Window | None]]:
    """Each polygon's window in the first scene that holds all of it.

    Returns:
        ``(scene_index (N,) int64, -1 when no scene holds it; windows (None there))``.
    """
    n = len(gdf)
    assigned = np.full(n, -1, dtype=np.int64)
    windows: list[Window | None] = [None] * n
    for si, scene in enumerate(scenes):
        todo = np.flatnonzero(assigned < 0)
        if len(todo) == 0:
            break
        local = gdf.iloc[todo]
        if scene.crs is not None:
            local = to_crs(local, scene.crs, source)
        pos = {k: j for j, k in zip(todo, gdf.index[todo], strict=True)}
        for idx, b in zip(local.index, local.geometry.bounds.to_numpy(), strict=True):
            w = polygon_window(b, scene.transform)
            if scene.window_in_bounds(w):
                assigned[pos[idx]], windows[pos[idx]] = si, w
    return assigned, windows


def clipped_window(row: int, col: int, dr: int, dc: int, tile: int, height: int,
                   width: int) -> Window:
    """The ``tile`` window with pixel ``(row, col)`` at ``(dr, dc)`` inside it, shifted to
    lie inside a ``height`` x ``width`` scene."""
    r0 = int(np.clip(row - dr, 0, height - tile))
    c0 = int(np.clip(col - dc, 0, width - tile))
    return Window(c0, r0, tile, tile)


class PointIndex:
    """Labelled points of one scene bucketed by ``cell``-sized squares, for window queries."""

    _STRIDE = 1_000_003  # bucket key = row bucket * stride + column bucket

    def __init__(self, rows: np.ndarray, cols: np.ndarray, codes: np.ndarray, cell: int) -> None:
        self.rows, self.cols, self.codes, self.cell = rows, cols, codes, cell
        keys = (rows // cell) * self._STRIDE + cols // cell
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]

    def query(self, r0: int, c0: int, size: int) -> np.ndarray:
        """Indexes of the points inside the window ``[r0, r0+size) x [c0, c0+size)``."""
        found = []
        for br in range(r0 // self.cell, (r0 + size - 1) // self.cell + 1):
            for bc in range(c0 // self.cell, (c0 + size - 1) // self.cell + 1):
                key = br * self._STRIDE + bc
                lo = np.searchsorted(self.sorted_keys, key, "left")
                hi = np.searchsorted(self.sorted_keys, key, "right")
                found.append(self.order[lo:hi])
        idx = np.concatenate(found) if found else np.zeros(0, np.int64)
        r, c = self.rows[idx], self.cols[idx]
        inside = (r >= r0) & (r < r0 + size) & (c >= c0) & (c < c0 + size)
        return idx[inside]


def dense_candidates(scene: Scene, labels: Scene, tile: int
                     ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Grid tiles (stride = tile, last ones flush with the scene's edge) that hold labels.

    Reads the label raster strip by strip; a pixel is labelled where the label raster is
    valid and the scene too.

    Returns:
        ``(offsets (n, 2) [row, col], labelled_fraction (n,), value_counts {value: pixels})``.
    """
    rows = grid_offsets(scene.height, tile, tile, cover_end=True)
    cols = grid_offsets(scene.width, tile, tile, cover_end=True)
    offsets, fractions = [], []
    counts: dict = {}
    counted_to = 0
    for r in rows:
        strip = Window(0, r, scene.width, tile)
        raw = labels.read(strip)
        has_label = labels.read_valid(strip, data=raw) & scene.read_valid(strip)
        skip = max(counted_to - r, 0)  # rows already counted by the previous strip
        counted_to = r + tile
        values, n = np.unique(raw[0][skip:][has_label[skip:]], return_counts=True)
        for v, k in zip(values.tolist(), n.tolist(), strict=True):
            counts[v] = counts.get(v, 0) + k
        for c in cols:
            frac = float(has_label[:, c:c + tile].mean())
            if frac > 0:
                offsets.append((r, c))
                fractions.append(frac)
    return (np.asarray(offsets, dtype=np.int64).reshape(-1, 2),
            np.asarray(fractions, dtype=np.float64), counts)


def random_subset(n: int, max_labels: int | None, seed: int) -> np.ndarray:
    """Sorted indexes of a seeded random subset of ``max_labels`` among ``n`` (all if None).

    Raises:
        InputError: ``max_labels`` below 1.
    """
    if max_labels is None or max_labels >= n:
        return np.arange(n)
    if max_labels < 1:
        raise InputError("--max-labels must be at least 1")
    return np.sort(np.random.default_rng(seed).choice(n, max_labels, replace=False))
