"""External embedding rasters as a map's features: any multi-band raster on any grid / CRS.

A :class:`RasterSource` gives the value of its raster at scene pixels: each scene pixel's
centre is transformed exactly (pyproj) into the raster's CRS and takes the value of the raster
pixel containing it (nearest neighbour). Training labels and map pixels go through this same
function, so a label and a map pixel on the same scene pixel get the same features. (A GDAL
warped VRT would do the same job for a regular grid, but its approximate transformer may move
a pixel by up to an eighth of a pixel depending on the window read, which could give a label
and the map pixel on it different values.)

Values: int8 rasters (geoembed's and Satellite-Embedding-style quantised unit vectors) are
dequantised with :func:`geoembed.io.embeddings.dequantize`; a raster with a GDAL scale/offset
is read as ``value * scale + offset``; other rasters as they are. Invalid: the raster's nodata
(``-128`` for int8 without a declared nodata), its masks, NaN, and points outside it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from pyproj import Transformer
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geoembed.errors import CRSError, RasterError, first_line
from geoembed.io.embeddings import INT8_NODATA, dequantize
from geoembed.io.georef import rowcol_to_xy
from geoembed.io.scenes import Scene, open_dataset, read_errors

#: largest raster window read at once when sampling (bigger ones are split)
READ_BYTES = 64 << 20


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class RasterSource:
    """One embedding raster read at scene pixels (see the module docstring).

    Raises:
        CRSError: the raster has no CRS (while the scene has one), or the scene cannot be
            transformed to it.
        RasterError: not a raster, or it does not overlap the scene.
    """

    def __init__(self, path: str | os.PathLike, scene: Scene,
                 what: str = "embedding raster") -> None:
        self.path = str(path)
        self.ds = open_dataset(path)
        ds = self.ds
        self.count = ds.count
        self.dtype = ds.dtypes[0]
        self.nodata = ds.nodata
        self.scales = np.asarray(ds.scales, dtype=np.float64)
        self.offsets = np.asarray(ds.offsets, dtype=np.float64)
        self.scaled = bool(np.any(self.scales != 1) or np.any(self.offsets != 0))
        self.rule = ("value * scale + offset (GDAL)" if self.scaled else
                     "int8 dequantised: sign(q) * (q / 127.5) ** 2" if self.dtype == "int8"
                     else "as stored")
        self.transformer: Any = None
        if ds.crs is None and scene.crs is not None:
            self.close()
            raise CRSError(f"{path}: the {what} has no CRS; it cannot be placed on the scene "
                           "(set its CRS, e.g. gdal_edit.py -a_srs)")
        if scene.crs is not None and ds.crs != scene.crs:
            try:
                self.transformer = Transformer.from_crs(scene.crs.to_wkt(), ds.crs.to_wkt(),
                                                        always_xy=True)
                left, bottom, right, top = scene.dataset.bounds
                bounds = transform_bounds(scene.crs, ds.crs, left, bottom, right, top,
                                          densify_pts=21)
            except Exception as exc:  # PROJ errors
                self.close()
                raise CRSError(f"{path}: cannot transform the scene from {scene.crs} to the "
                               f"{what}'s CRS {ds.crs} ({first_line(exc, 120)})") from None
        else:
            bounds = tuple(scene.dataset.bounds)
        if not np.all(np.isfinite(bounds)) or not _overlaps(tuple(bounds), tuple(ds.bounds)):
            self.close()
            raise RasterError(f"{path}: the {what} (CRS {ds.crs}, bounds "
                              f"{tuple(round(b, 1) for b in ds.bounds)}) does not overlap the "
                              f"scene {scene.name}")

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def describe(self) -> dict:
        ds = self.ds
        return {"path": self.path, "bands": self.count, "dtype": self.dtype,
                "crs": None if ds.crs is None else str(ds.crs),
                "resolution": list(ds.res), "values": self.rule}

    def values(self, raw: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw band values ``(n, D)`` -> float32 features and validity ``(n,)``."""
        if self.scaled:
            out = (raw * self.scales + self.offsets).astype(np.float32)
            if self.nodata is not None:
                valid = valid & ~np.any(raw == self.nodata, axis=1)
        elif self.dtype == "int8":
            out = dequantize(raw, INT8_NODATA if self.nodata is None else self.nodata)
        else:
            out = raw.astype(np.float32)
            if self.nodata is not None and not np.isnan(self.nodata):
                valid = valid & ~np.any(raw == self.nodata, axis=1)
        valid = valid & np.all(np.isfinite(out), axis=1)
        return out, valid

    def sample(self, transform: Any, rows: np.ndarray, cols: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(n, D)`` float32 (NaN where invalid) and validity at scene pixels.

        ``transform`` is the scene's; the pixels should be near each other (one read of the
        raster window around them).
        """
        n = len(rows)
        out = np.full((n, self.count), np.nan, dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        if n == 0:
            return out, ok
        x, y = rowcol_to_xy(transform, rows, cols)
        if self.transformer is not None:
            x, y = self.transformer.transform(x, y)
        ds = self.ds
        with np.errstate(invalid="ignore"):
            fc, fr = ~ds.transform @ (np.asarray(x, float), np.asarray(y, float))
        fc = np.nan_to_num(np.asarray(fc), nan=-1, posinf=-1, neginf=-1)
        fr = np.nan_to_num(np.asarray(fr), nan=-1, posinf=-1, neginf=-1)
        inside = (fc >= 0) & (fc < ds.width) & (fr >= 0) & (fr < ds.height)
        if not inside.any():
            return out, ok
        idx = np.flatnonzero(inside)
        out[idx], ok[idx] = self._read_at(np.floor(fr[idx]).astype(np.int64),
                                          np.floor(fc[idx]).astype(np.int64))
        return out, ok

    def _read_at(self, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values at raster pixels: one window read, split while it is over READ_BYTES."""
        c0, r0 = int(c.min()), int(r.min())
        win = Window(c0, r0, int(c.max()) - c0 + 1, int(r.max()) - r0 + 1)
        size = win.width * win.height * self.count * np.dtype(self.dtype).itemsize
        if size > READ_BYTES and len(r) > 1:
            axis = r if win.height >= win.width else c
            order = np.argsort(axis, kind="stable")
            halves = (order[:len(order) // 2], order[len(order) // 2:])
            out = np.empty((len(r), self.count), np.float32)
            ok = np.empty(len(r), bool)
            for h in halves:
                out[h], ok[h] = self._read_at(r[h], c[h])
            return out, ok
        with read_errors(self.path, win):
            data = self.ds.read(window=win)
            masks = self.ds.read_masks(window=win)
        raw = data[:, r - r0, c - c0].T
        values, valid = self.values(raw, np.all(masks[:, r - r0, c - c0] > 0, axis=0))
        values[~valid] = np.nan
        return values, valid

    def close(self) -> None:
        self.ds.close()


__all__ = ["RasterSource"]
