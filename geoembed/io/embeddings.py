"""The embedding raster format: read and dequantise embedding GeoTIFFs, sample them at points.

Embedding rasters are ``(z_dim, H, W)`` GeoTIFFs as written by ``geoembed embed`` (or any
raster with the same conventions, like Google's Satellite Embedding exports):

* float rasters hold the embeddings as they are; NaN (or the declared nodata) is nodata;
* int8 rasters hold unit vectors quantised as
  ``q = clip(round(sign(x) * sqrt(|x|) * 127.5), -127, 127)`` with nodata ``-128``, and are
  read back with ``x = sign(q) * (q / 127.5) ** 2`` (:func:`dequantize`).

:func:`read_embeddings` returns float32 embeddings and a validity mask whatever the storage,
so downstream code (evaluation, clustering, similarity) never sees the quantisation.
No torch here: this module is cheap to import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.windows import Window

from geoembed.errors import CRSError, InputError
from geoembed.io.scenes import open_dataset, read_errors

INT8_NODATA = -128


DEQUANTIZATION = "x = sign(q) * (q / 127.5) ** 2 for int8 q != -128 (nodata)"


# reads of at most this many bytes at a time when streaming over a raster
STRIP_BYTES = 64 << 20


def band_names(z_dim: int) -> list[str]:
    """Band descriptions ``emb_000``, ``emb_001``... of an embedding raster."""
    return [f"emb_{k:03d}" for k in range(z_dim)]


def quantize(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Unit-normalise vectors along ``axis`` and quantise them to int8.

    ``q = clip(round(sign(x) * sqrt(|x|) * 127.5), -127, 127)``; vectors with a NaN (nodata)
    become ``-128`` in every component; zero vectors stay zero.
    """
    x = np.asarray(x, dtype=np.float32)
    bad = np.any(~np.isfinite(x), axis=axis, keepdims=True)
    norm = np.sqrt(np.sum(np.where(bad, 0.0, x) ** 2, axis=axis, keepdims=True))
    unit = np.where(bad, 0.0, x) / np.where(norm > 0, norm, 1.0)
    q = np.clip(np.round(np.sign(unit) * np.sqrt(np.abs(unit)) * 127.5), -127, 127)
    q = np.where(bad, INT8_NODATA, q)
    return q.astype(np.int8)


def dequantize(q: np.ndarray, nodata: float | None = INT8_NODATA) -> np.ndarray:
    """int8 codes -> float32 values ``sign(q) * (q / 127.5) ** 2``; nodata codes -> NaN."""
    qf = np.asarray(q).astype(np.float32)
    out = np.sign(qf) * (qf / np.float32(127.5)) ** 2
    if nodata is not None:
        out[np.asarray(q) == nodata] = np.nan
    return out


@dataclass(frozen=True)
class EmbeddingInfo:
    """What :func:`embedding_info` learns about an embedding raster."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: Any
    transform: Any
    nodata: float | None
    quantized: bool


def embedding_info(path: str | os.PathLike) -> EmbeddingInfo:
    """Open an embedding raster's header (int8 rasters are quantised ones).

    Raises:
        InputError: no such file.
        RasterError: not a raster.
    """
    ds = open_dataset(path)
    with ds:
        return EmbeddingInfo(str(path), ds.width, ds.height, ds.count, ds.dtypes[0], ds.crs,
                             ds.transform, ds.nodata, ds.dtypes[0] == "int8")



def _to_float(data: np.ndarray, dtype: str, nodata: float | None,
              masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw band data ``(Z, ...)`` -> float32 embeddings and a validity mask ``(...)``."""
    if dtype == "int8":
        emb = dequantize(data, INT8_NODATA if nodata is None else nodata)
    else:
        emb = data.astype(np.float32, copy=False)
        if nodata is not None and not np.isnan(nodata):
            emb = np.where(data == nodata, np.float32(np.nan), emb)
    valid = np.all(np.isfinite(emb), axis=0)
    if masks is not None:
        valid &= np.all(masks > 0, axis=0)
    emb[:, ~valid] = np.nan
    return emb, valid


def read_embeddings(path: str | os.PathLike | Any, window: Window | None = None, *,
                    out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read an embedding raster (or a window of it) as float32, dequantised when int8.

    Args:
        path: the GeoTIFF, or an open rasterio dataset.
        window: the pixel window to read (default: everything).
        out_shape: ``(h, w)`` to read decimated (GDAL uses the overviews when present).

    Returns:
        ``(embeddings (Z, h, w) float32 with NaN at nodata, valid (h, w) bool)``.
    """
    if isinstance(path, str | os.PathLike):
        with open_dataset(path) as ds:
            return read_embeddings(ds, window, out_shape=out_shape)
    ds = path
    kwargs: dict[str, Any] = {"window": window}
    if out_shape is not None:
        kwargs["out_shape"] = (ds.count, *out_shape)
    with read_errors(ds.name, window):
        data = ds.read(**kwargs)
    return _to_float(data, ds.dtypes[0], ds.nodata)


def transform_points(xs: np.ndarray, ys: np.ndarray, src_crs: Any, dst_crs: Any
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Reproject point coordinates (``src_crs`` None: they are in ``dst_crs`` already)."""
    if src_crs is None:
        return xs, ys
    if dst_crs is None:
        raise CRSError("the embedding raster has no CRS, so points given in a CRS cannot be "
                       "placed on it; give them in its own coordinates")

    try:
        src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    except rasterio.errors.CRSError as exc:
        raise CRSError(f"unknown CRS {src_crs!r} ({exc})") from None
    if src == dst:
        return xs, ys
    # points that cannot be transformed (outside the projection's domain) come out infinite
    tr = Transformer.from_crs(src.to_wkt(), dst.to_wkt(), always_xy=True)
    tx, ty = tr.transform(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))
    return np.asarray(tx, dtype=float), np.asarray(ty, dtype=float)


def sample_embeddings(path: str | os.PathLike, xs: Sequence[float], ys: Sequence[float],
                      crs: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings at points (the output pixel whose footprint contains each point).

    Args:
        path: the embedding GeoTIFF.
        xs, ys: point coordinates.
        crs: the points' CRS (anything rasterio's ``CRS.from_user_input`` takes); ``None``
            means the raster's own CRS. Points are reprojected to the raster's CRS.

    Returns:
        ``(embeddings (N, Z) float32, valid (N,) bool)``: invalid where the point is outside
        the raster or on nodata (those rows are NaN).
    """
    xs = np.asarray(xs, dtype=float).ravel()
    ys = np.asarray(ys, dtype=float).ravel()
    if xs.shape != ys.shape:
        raise InputError("xs and ys must have the same length")
    with open_dataset(path) as ds:
        if crs is not None:
            xs, ys = transform_points(xs, ys, crs, ds.crs)
        with np.errstate(invalid="ignore"):  # untransformable points are inf
            fcols, frows = ~ds.transform @ (xs, ys)
        fcols = np.nan_to_num(np.asarray(fcols, dtype=float), nan=-1.0, posinf=-1.0,
                              neginf=-1.0)
        frows = np.nan_to_num(np.asarray(frows, dtype=float), nan=-1.0, posinf=-1.0,
                              neginf=-1.0)
        inside = (fcols >= 0) & (fcols < ds.width) & (frows >= 0) & (frows < ds.height)
        cols = np.where(inside, np.floor(fcols), 0).astype(int)
        rows = np.where(inside, np.floor(frows), 0).astype(int)
        out = np.full((len(xs), ds.count), np.nan, dtype=np.float32)
        idx = np.flatnonzero(inside)
        if idx.size:
            itemsize = np.dtype(ds.dtypes[0]).itemsize
            if ds.width * ds.height * ds.count * itemsize <= STRIP_BYTES:
                emb, _ = read_embeddings(ds)
                out[idx] = emb[:, rows[idx], cols[idx]].T
            else:  # too large to read whole: rasterio samples the points, block-cached
                pts = [(xs[k], ys[k]) for k in idx]
                with read_errors(ds.name):
                    raw = np.stack(list(ds.sample(pts, masked=True)), axis=1)  # (Z, n)
                masks = ~np.ma.getmaskarray(raw)
                out[idx] = _to_float(np.ma.getdata(raw), ds.dtypes[0], ds.nodata, masks)[0].T
    valid = np.all(np.isfinite(out), axis=1)
    return out, valid


def strip_windows(ds: Any, bytes_per_row: int, align: int) -> list[Window]:
    rows = max(1, STRIP_BYTES // max(1, bytes_per_row))
    rows = max(align, rows // align * align) if align > 0 else rows
    return [Window(0, r, ds.width, min(rows, ds.height - r)) for r in range(0, ds.height, rows)]
