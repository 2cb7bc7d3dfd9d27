"""Pixel <-> map coordinates, on rasterio's transform helpers.

Rows and columns are integer pixel indexes; map coordinates are in the raster's CRS. A pixel's
map coordinate is its centre (``offset="center"``), and a map coordinate falls in the pixel
whose square contains it (floor), as in ``rasterio.transform.rowcol``.
"""

from __future__ import annotations

import math

import numpy as np
from affine import Affine
from rasterio.transform import rowcol, xy


def xy_to_rowcol(transform: Affine, xs: np.ndarray, ys: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (int64, possibly outside the raster) of map coordinates.

    rasterio's ``rowcol`` takes ~0.6 s per million points (vs 0.01 s for a bare affine
    product), which is negligible for labels; hot loops over pixels use array slicing instead.
    """
    xs = np.atleast_1d(np.asarray(xs, dtype=float))
    ys = np.atleast_1d(np.asarray(ys, dtype=float))
    if xs.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = rowcol(transform, xs, ys, op=math.floor)
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def rowcol_to_xy(transform: Affine, rows: np.ndarray, cols: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates of pixel centres."""
    rows = np.atleast_1d(np.asarray(rows))
    cols = np.atleast_1d(np.asarray(cols))
    if rows.size == 0:
        return np.zeros(0), np.zeros(0)
    xs, ys = xy(transform, rows, cols, offset="center")
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def window_grid_transform(transform: Affine, tile: int, stride: int) -> Affine:
    """Transform of a raster with one pixel per window of a ``tile``/``stride`` grid.

    Window ``(i, j)`` spans pixels ``[j*s, j*s + t)`` x ``[i*s, i*s + t)``; its centre
    ``(j*s + t/2, i*s + t/2)`` is where output pixel ``(i, j)``'s centre maps to, through
    ``translation((t - s)/2) @ scale(s)``.
    """
    offset = (tile - stride) / 2.0
    return transform @ Affine.translation(offset, offset) @ Affine.scale(stride)
