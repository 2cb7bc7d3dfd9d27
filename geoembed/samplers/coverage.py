"""Where a tile may go in one scene: coarse valid-area maps and the AOI, as proposal weights.

Top-left positions of ``T x T`` windows form an ``hr x wr`` grid (``hr = height - T + 1``).
That grid is cut into square *cells* (at most :data:`COVERAGE_CELLS` along the longer side);
a cell gets its area as weight when some window starting in it may be valid (from a
decimated read of the scene's mask) and, for anchors, when its windows' centres may fall in
the AOI (the AOI rasterised on the cell grid, dilated by one cell). Positions are then drawn
uniformly over the weighted cells; the exact checks (nodata fraction of the pixels read, the
centre inside the AOI) are done by the sampler.

This module does not import torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine

from geoembed.errors import RasterError
from geoembed.io.scenes import Scene
from geoembed.io.tiles import PixelValidity

COVERAGE_CELLS = 256  # coverage map: at most this many cells along a scene's longer side
_EPS = 1e-9


@dataclass
class SceneCoverage:
    """Proposal weights for the top-left positions of windows in one scene.

    Attributes:
        hr, wr: number of top-left rows and columns (``height - T + 1``, ``width - T + 1``).
        cell: cell side in pixels (of top-left space); ``gw`` cells per row.
        cum_any, cum_anchor: cumulative cell weights for any tile and for anchors (None:
            uniform over the whole grid).
        area_any, area_anchor: total weights (valid area in top-left positions).
        aoi: the AOI in the scene's CRS (prepared shapely geometry) or None.
        transform: the scene's transform; ``half``: half the tile side (window centres).
    """

    hr: int
    wr: int
    cell: int
    gw: int
    cum_any: np.ndarray | None
    cum_anchor: np.ndarray | None
    area_any: float
    area_anchor: float
    aoi: Any = None
    transform: Affine = Affine.identity()
    half: float = 0.0

    def draw(self, rng: np.random.Generator, k: int, anchor: bool
             ) -> tuple[np.ndarray, np.ndarray]:
        """``k`` top-left positions, uniform over the proposal cells (anchor or any tile)."""
        cum = self.cum_anchor if anchor else self.cum_any
        if cum is None:
            return rng.integers(0, self.hr, k), rng.integers(0, self.wr, k)
        u = rng.random(k) * cum[-1]
        cell = np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)
        i, j = np.divmod(cell, self.gw)
        h = np.minimum(self.cell, self.hr - i * self.cell)
        w = np.minimum(self.cell, self.wr - j * self.cell)
        rows = i * self.cell + np.minimum((rng.random(k) * h).astype(np.int64), h - 1)
        cols = j * self.cell + np.minimum((rng.random(k) * w).astype(np.int64), w - 1)
        return rows, cols

    def in_aoi(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Whether the centres of the windows at ``rows, cols`` fall in the AOI."""
        if self.aoi is None:
            return np.ones(len(rows), dtype=bool)
        x, y = self.transform @ (cols + self.half, rows + self.half)
        return shapely.intersects_xy(self.aoi, x, y)


def scene_coverage(scene: Scene, tile_size: int, max_nodata: float, aoi: Any = None
                   ) -> SceneCoverage:
    """The proposal weights of ``scene`` for ``tile_size`` windows.

    Args:
        scene: an opened scene.
        tile_size: window side ``T`` in pixels.
        max_nodata: largest nodata fraction of a window.
        aoi: a shapely geometry in the scene's CRS restricting anchors' centres, or None.

    Raises:
        RasterError: no window of the scene can be valid.
    """
    t = tile_size
    hr, wr = scene.height - t + 1, scene.width - t + 1
    cell = max(1, math.ceil(max(hr, wr) / COVERAGE_CELLS))
    gh, gw = math.ceil(hr / cell), math.ceil(wr / cell)
    heights = np.minimum(cell, hr - np.arange(gh) * cell)
    widths = np.minimum(cell, wr - np.arange(gw) * cell)
    area = heights[:, None].astype(np.float64) * widths[None, :]
    kind = PixelValidity.of(scene).kind
    include = np.ones((gh, gw), dtype=bool)
    if kind != "none":
        include = valid_cells(scene, kind, t, max_nodata, cell, heights, widths)
        if not include.any():
            raise RasterError(
                f"{scene.path}: no valid {t} x {t} px window (the scene is nodata "
                f"everywhere, or its valid area is too small for the tile with "
                f"--max-nodata {max_nodata:g})"
            )
    w_any = np.where(include, area, 0.0).ravel()
    w_anchor = w_any
    if aoi is not None:
        # geopandas, scipy.ndimage and rasterio.features cost ~0.7 s to import: only with an AOI
        from geoembed.samplers.aoi import aoi_cells

        grid = scene.transform @ Affine.translation(t / 2, t / 2) @ Affine.scale(cell)
        cells = aoi_cells(aoi, grid, (gh, gw))
        w_anchor = np.where(include & cells, area, 0.0).ravel()
        shapely.prepare(aoi)
    uniform = kind == "none"
    return SceneCoverage(
        hr=hr, wr=wr, cell=cell, gw=gw,
        cum_any=None if uniform else np.cumsum(w_any),
        cum_anchor=None if (uniform and aoi is None) else np.cumsum(w_anchor),
        area_any=float(w_any.sum()), area_anchor=float(w_anchor.sum()),
        aoi=aoi, transform=scene.transform, half=t / 2,
    )


def valid_cells(scene: Scene, kind: str, tile_size: int, max_nodata: float, cell: int,
                heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Coverage cells (top-left space) whose windows may hold a valid window.

    Reads the scene's mask decimated to about one value per cell; a cell is kept when some
    valid mask value lies among those its windows cover (with one cell of margin), and none
    is kept when no window of the decimated mask has few enough nodata values.
    """
    t = tile_size
    mh = min(scene.height, math.ceil(scene.height / cell))
    mw = min(scene.width, math.ceil(scene.width / cell))
    data = None
    if kind == "finite":
        data = scene.read(out_shape=(mh, mw))
    valid = scene.read_valid(out_shape=(mh, mw), data=data)
    sy, sx = scene.height / mh, scene.width / mw
    # rough check that some window has few enough nodata pixels (exact when cell == 1)
    kh = t if sy == 1 else max(1, int(t / sy) - 1)
    kw = t if sx == 1 else max(1, int(t / sx) - 1)
    counts = box_sums(integral(~valid), kh, kw)
    if not (counts <= max_nodata * kh * kw + _EPS).any():
        return np.zeros((len(heights), len(widths)), dtype=bool)
    # any valid mask cell among those the cell's windows cover (dilated by one cell)
    r0 = np.arange(len(heights)) * cell
    c0 = np.arange(len(widths)) * cell
    mr0 = np.clip(np.floor(r0 / sy).astype(int) - 1, 0, mh)
    mr1 = np.clip(np.floor((r0 + heights - 1 + t - 1) / sy).astype(int) + 2, 0, mh)
    mc0 = np.clip(np.floor(c0 / sx).astype(int) - 1, 0, mw)
    mc1 = np.clip(np.floor((c0 + widths - 1 + t - 1) / sx).astype(int) + 2, 0, mw)
    ok = integral(valid)
    n = (ok[mr1[:, None], mc1[None, :]] - ok[mr0[:, None], mc1[None, :]]
         - ok[mr1[:, None], mc0[None, :]] + ok[mr0[:, None], mc0[None, :]])
    return n > 0


def integral(a: np.ndarray) -> np.ndarray:
    """Summed-area table of a 2-D array, with a zero first row and column (int64)."""
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(a, axis=0, dtype=np.int64), axis=1, out=out[1:, 1:])
    return out


def box_sums(table: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Sums over every ``kh x kw`` box of the array whose summed-area ``table`` is given."""
    return table[kh:, kw:] - table[:-kh, kw:] - table[kh:, :-kw] + table[:-kh, :-kw]
