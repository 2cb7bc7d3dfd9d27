"""The output grid of a map: every ``stride``-th scene pixel, pixel areas in hectares.

Output pixel ``(i, j)`` is the ``stride`` x ``stride`` block of scene pixels starting at
``(i * stride, j * stride)``; the output transform is ``scene.transform @ scale(stride)``, so
output pixel centres are the block centres exactly. The block's features are computed at its
centre pixel, ``(i * stride + stride // 2, j * stride + stride // 2)`` (for an even stride the
block centre is a pixel corner; the pixel below-right of it is used, like a tile's centre
``tile // 2``). The grid covers the whole scene: the last row / column of blocks may reach past
the scene's edge; their features are computed at the centre of the part inside the scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from pyproj import CRS as ProjCRS

from geoembed.errors import CRSError, InputError
from geoembed.mapping.config import FULL_GRID_MAX_PIXELS


@dataclass(frozen=True)
class OutputGrid:
    """A map's grid over a scene of ``scene_height`` x ``scene_width`` pixels."""

    scene_width: int
    scene_height: int
    scene_transform: Affine
    crs: Any
    stride: int = 1

    @property
    def width(self) -> int:
        return -(-self.scene_width // self.stride)

    @property
    def height(self) -> int:
        return -(-self.scene_height // self.stride)

    @property
    def transform(self) -> Affine:
        """``scene.transform @ scale(stride)``: pixel centres are the block centres."""
        return self.scene_transform @ Affine.scale(self.stride)

    def _centres(self, index: np.ndarray, length: int) -> np.ndarray:
        start = index * self.stride
        size = np.minimum(self.stride, length - start)
        return start + size // 2

    def centre_pixels(self, row0: int, row1: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene pixels (rows, cols), row-major, whose features fill output rows row0..row1-1."""
        rows = self._centres(np.arange(row0, row1), self.scene_height)
        cols = self._centres(np.arange(self.width), self.scene_width)
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        return rr.ravel().astype(np.int64), cc.ravel().astype(np.int64)

    def describe(self) -> dict:
        """The grid for map.json."""
        return {"width": self.width, "height": self.height, "stride": self.stride,
                "transform": list(self.transform)[:6],
                "crs": None if self.crs is None else str(self.crs),
                "pixel_size": [abs(self.transform.a), abs(self.transform.e)]}


def pixel_size(transform: Affine) -> float:
    """The scene's pixel width in CRS units (square pixels expected)."""
    return math.hypot(transform.a, transform.d)


def choose_stride(cfg: Any, width: int, height: int, transform: Affine, tile: int
                  ) -> tuple[int, str]:
    """The output stride and why: ``--stride``, ``--resolution``, or the default.

    Default: the full grid (stride 1), except when window-based features are asked for on a
    scene of more than :data:`FULL_GRID_MAX_PIXELS` pixels: then ``max(1, tile // 5)`` (a
    tile's centre moves a fifth of a tile between output pixels; 25 times fewer windows at
    the 50 px default tile).
    """
    if cfg.stride is not None:
        return int(cfg.stride), "--stride"
    if cfg.resolution is not None:
        size = pixel_size(transform)
        stride = int(round(cfg.resolution / size))
        if stride < 1:
            raise InputError(f"--resolution {cfg.resolution} is finer than the scene's pixels "
                             f"({size:g}); give a resolution of at least {size:g}")
        why = f"--resolution {cfg.resolution:g}"
        if not math.isclose(stride * size, cfg.resolution, rel_tol=1e-6):
            why += f" rounded to {stride * size:g}, a whole number of scene pixels"
        return stride, why
    if cfg.window_based() and width * height > FULL_GRID_MAX_PIXELS:
        return max(1, tile // 5), (f"default for window-based features on a scene over "
                                   f"{FULL_GRID_MAX_PIXELS} pixels: tile {tile} // 5; "
                                   "pass --stride 1 for the full grid")
    return 1, "default: the full grid"


def row_areas_ha(grid: OutputGrid) -> np.ndarray | None:
    """Area in hectares of one output pixel in each output row (None without a CRS).

    Projected CRSs: the pixel's area from the transform in the CRS's linear unit. Geographic
    CRSs: the geodesic area of each row's pixel on the CRS's ellipsoid (north-up grids only).
    """
    if grid.crs is None:
        return None
    crs = ProjCRS.from_user_input(grid.crs.to_wkt() if hasattr(grid.crs, "to_wkt")
                                  else grid.crs)
    t = grid.transform
    if not crs.is_geographic:
        factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        area = abs(t.a * t.e - t.b * t.d) * factor ** 2 / 1e4
        return np.full(grid.height, area)
    if t.b != 0 or t.d != 0:
        raise CRSError("cannot compute areas on a rotated grid in a geographic CRS; "
                       "reproject the scene to a projected CRS")
    geod = crs.get_geod()
    lon0, lon1 = t.c, t.c + t.a
    out = np.empty(grid.height)
    for i in range(grid.height):
        lat0, lat1 = t.f + t.e * i, t.f + t.e * (i + 1)
        area, _ = geod.polygon_area_perimeter([lon0, lon1, lon1, lon0], [lat0, lat0, lat1, lat1])
        out[i] = abs(area) / 1e4
    return out


__all__ = ["OutputGrid", "choose_stride", "pixel_size", "row_areas_ha"]
