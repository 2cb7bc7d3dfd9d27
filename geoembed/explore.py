"""Use embedding GeoTIFFs: read and dequantise them, sample them at points, similarity maps,
PCA previews.

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
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window
from tqdm.auto import tqdm

from geoembed.errors import CRSError, InputError, RasterError
from geoembed.raster import RasterWriter, check_output, replace_path, temporary_sibling

INT8_NODATA = -128
DEQUANTIZATION = "x = sign(q) * (q / 127.5) ** 2 for int8 q != -128 (nodata)"
# reads of at most this many bytes at a time when streaming over a raster
_STRIP_BYTES = 64 << 20


def gdal_cache_limit(working_bytes: int, floor: int = 64 << 20) -> Any:
    """A ``rasterio.Env`` bounding GDAL's block cache while streaming over a raster.

    GDAL keeps every block it decodes until its cache (by default 5 % of the RAM) is full,
    so a streaming pass over a scene would otherwise grow the process by the scene's size.
    ``working_bytes`` is what the pass needs cached at once (about a row of blocks).
    """
    return rasterio.Env(GDAL_CACHEMAX=int(max(floor, working_bytes)))


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
    ds = _open(path)
    with ds:
        return EmbeddingInfo(str(path), ds.width, ds.height, ds.count, ds.dtypes[0], ds.crs,
                             ds.transform, ds.nodata, ds.dtypes[0] == "int8")


def _open(path: str | os.PathLike) -> Any:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise RasterError(f"{path}: not a raster GDAL can read ({str(exc).splitlines()[0]})"
                          ) from None


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
        with _open(path) as ds:
            return read_embeddings(ds, window, out_shape=out_shape)
    ds = path
    kwargs: dict[str, Any] = {"window": window}
    if out_shape is not None:
        kwargs["out_shape"] = (ds.count, *out_shape)
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
    from pyproj import Transformer
    from rasterio.crs import CRS

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
    with _open(path) as ds:
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
            if ds.width * ds.height * ds.count * itemsize <= _STRIP_BYTES:
                emb, _ = read_embeddings(ds)
                out[idx] = emb[:, rows[idx], cols[idx]].T
            else:  # one small read per point
                for k in idx:
                    emb, _ = read_embeddings(ds, Window(int(cols[k]), int(rows[k]), 1, 1))
                    out[k] = emb[:, 0, 0]
    valid = np.all(np.isfinite(out), axis=1)
    return out, valid


def read_points_file(path: str | os.PathLike, crs: Any = None
                     ) -> tuple[np.ndarray, np.ndarray, Any]:
    """Points from a vector file (GeoPackage, GeoJSON, Shapefile...) or a CSV.

    A CSV needs ``x`` and ``y`` (or ``lon``/``lat``, ``longitude``/``latitude``) columns in
    ``crs``. A vector file carries its own CRS (``crs`` is used only when it has none).

    Returns:
        ``(xs, ys, crs)``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() in (".csv", ".txt"):
        import csv

        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise InputError(f"{path}: no points in the file")
        cols = {c.lower().strip(): c for c in rows[0]}
        for cx, cy in (("x", "y"), ("lon", "lat"), ("longitude", "latitude")):
            if cx in cols and cy in cols:
                try:
                    xs = np.array([float(r[cols[cx]]) for r in rows])
                    ys = np.array([float(r[cols[cy]]) for r in rows])
                except ValueError as exc:
                    raise InputError(f"{path}: bad coordinate ({exc})") from None
                return xs, ys, crs
        raise InputError(f"{path}: the CSV needs x,y (or lon,lat) columns; it has "
                         f"{list(rows[0])}")
    import geopandas as gpd

    try:
        gdf = gpd.read_file(path)
    except Exception as exc:
        raise InputError(f"{path}: not a vector file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120]})") from None
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if gdf.empty:
        raise InputError(f"{path}: no points in the file")
    if not (gdf.geom_type == "Point").all():
        raise InputError(f"{path}: only point geometries can be used as references "
                         f"(found {sorted(set(gdf.geom_type))})")
    return gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy(), gdf.crs or crs


def merge_points(groups: Sequence[tuple[Sequence[float], Sequence[float], Any]]
                 ) -> tuple[np.ndarray, np.ndarray, Any]:
    """Points given in several CRSs (``[(xs, ys, crs), ...]``) -> all in the first's CRS."""
    groups = [g for g in groups if len(g[0])]
    if not groups:
        return np.zeros(0), np.zeros(0), None
    crs = groups[0][2]
    xs, ys = [], []
    for gx, gy, gcrs in groups:
        gx, gy = np.asarray(gx, dtype=float), np.asarray(gy, dtype=float)
        if gcrs is not None and crs is not None and str(gcrs) != str(crs):
            gx, gy = transform_points(gx, gy, gcrs, crs)
        xs.append(gx)
        ys.append(gy)
    return np.concatenate(xs), np.concatenate(ys), crs


def reference_embedding(path: str | os.PathLike, xs: Sequence[float], ys: Sequence[float],
                        crs: Any = None) -> np.ndarray:
    """Unit-length mean of the unit-normalised embeddings at the points.

    Raises:
        InputError: no point, a point outside the raster or on nodata (the message names it).
    """
    xs, ys = np.asarray(xs, dtype=float).ravel(), np.asarray(ys, dtype=float).ravel()
    if xs.size == 0:
        raise InputError("give at least one reference point (--point X Y or --points FILE)")
    emb, valid = sample_embeddings(path, xs, ys, crs)
    if not valid.all():
        k = int(np.flatnonzero(~valid)[0])
        with _open(path) as ds:
            rx, ry = transform_points(xs[k:k + 1], ys[k:k + 1], crs, ds.crs) \
                if crs is not None else (xs[k:k + 1], ys[k:k + 1])
            with np.errstate(invalid="ignore"):
                col, row = ~ds.transform @ (rx[0], ry[0])
            outside = not (0 <= col < ds.width and 0 <= row < ds.height)  # NaN/inf: outside
            hint = ""
            if outside and crs is not None and ds.crs is not None:
                c2, r2 = ~ds.transform @ (xs[k], ys[k])
                if 0 <= c2 < ds.width and 0 <= r2 < ds.height:
                    hint = f"; the coordinates look like the raster's CRS: pass --crs {ds.crs}"
        where = "outside the raster" if outside else "on nodata"
        raise InputError(f"point {k + 1} ({xs[k]:g}, {ys[k]:g}) is {where}{hint}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InputError("a reference point has an all-zero embedding")
    ref = (emb / norms).mean(axis=0)
    n = np.linalg.norm(ref)
    if n == 0:
        raise InputError("the reference embeddings cancel out (their mean is zero)")
    return (ref / n).astype(np.float32)


def _strips(ds: Any, bytes_per_row: int, align: int) -> list[Window]:
    rows = max(1, _STRIP_BYTES // max(1, bytes_per_row))
    rows = max(align, rows // align * align) if align > 0 else rows
    return [Window(0, r, ds.width, min(rows, ds.height - r)) for r in range(0, ds.height, rows)]


def similarity_map(path: str | os.PathLike, xs: Sequence[float], ys: Sequence[float],
                   out: str | os.PathLike, *, crs: Any = None, overwrite: bool = False,
                   quiet: bool = False, blocksize: int = 256) -> tuple[Path, np.ndarray]:
    """Cosine similarity of every pixel's embedding to the reference at the given points.

    The reference is the unit-length mean of the unit-normalised embeddings at the points
    (:func:`reference_embedding`). Written as a one-band float32 COG (nodata NaN where the
    embedding is nodata or zero), streaming over strips of rows.

    Returns:
        ``(output path, reference vector)``.
    """
    out = check_output(out, overwrite)
    ref = reference_embedding(path, xs, ys, crs)
    with _open(path) as ds:
        if ds.count != len(ref):  # pragma: no cover - same file
            raise RasterError("band count changed while reading")
        tags = {"geoembed_product": "similarity", "embeddings": Path(path).name,
                "reference_points": len(np.atleast_1d(xs)),
                "reference_crs": str(crs) if crs is not None else str(ds.crs)}
        row_bytes = ds.width * ds.count * 4
        cache = gdal_cache_limit(4 * ds.width * ds.count * 4 * max(ds.block_shapes[0][0], 256))
        with cache, RasterWriter(out, width=ds.width, height=ds.height, count=1, dtype="float32",
                          crs=ds.crs, transform=ds.transform, nodata=np.nan,
                          descriptions=["cosine_similarity"], tags=tags, overwrite=overwrite,
                          cog=True, blocksize=blocksize) as writer, \
                tqdm(total=ds.height, unit="row", desc="similarity", disable=quiet,
                     leave=False) as bar:
            align = writer.dataset.block_shapes[0][0]
            for w in _strips(ds, row_bytes, align):
                emb, valid = read_embeddings(ds, w)
                norm = np.sqrt(np.einsum("zhw,zhw->hw", np.nan_to_num(emb), np.nan_to_num(emb)))
                dot = np.einsum("z,zhw->hw", ref, np.nan_to_num(emb))
                ok = valid & (norm > 0)
                sim = np.where(ok, dot / np.where(ok, norm, 1.0), np.nan).astype(np.float32)
                writer.write(sim, w)
                bar.update(int(w.height))
    return out, ref


@dataclass
class PreviewResult:
    """What :func:`preview` wrote."""

    path: Path
    width: int
    height: int
    explained_variance_ratio: list[float]
    n_sampled: int


def _preview_shape(width: int, height: int, max_size: int) -> tuple[int, int]:
    scale = min(1.0, max_size / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale))


def preview(path: str | os.PathLike, out: str | os.PathLike, *, max_size: int = 1024,
            n_samples: int = 100_000, seed: int = 0, overwrite: bool = False,
            quiet: bool = False) -> PreviewResult:
    """RGB PNG of the first three principal components of an embedding raster.

    The raster is read decimated to at most ``max_size`` pixels on its longer side (GDAL
    uses the COG's overviews), in strips. PCA (scikit-learn) is fitted on a random sample of
    at most ``n_samples`` valid pixels; each component is stretched between its 2nd and 98th
    percentiles to 0..255. Nodata pixels are black and fully transparent (RGBA PNG).
    """
    from sklearn.decomposition import PCA

    if max_size < 1:
        raise InputError("max_size must be at least 1 pixel")
    out = check_output(out, overwrite)
    rng = np.random.default_rng(seed)
    with _open(path) as ds, gdal_cache_limit(2 * _STRIP_BYTES):
        h, w = _preview_shape(ds.width, ds.height, max_size)
        fy = ds.height / h
        # output-row strips of bounded size, each read decimated from its source rows
        rows_per = max(1, _STRIP_BYTES // max(1, w * ds.count * 4))
        strips = [(r, min(h, r + rows_per)) for r in range(0, h, rows_per)]

        def read(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
            src0, src1 = round(r0 * fy), round(r1 * fy)
            win = Window(0, src0, ds.width, max(1, src1 - src0))
            return read_embeddings(ds, win, out_shape=(r1 - r0, w))

        n_valid_total = 0
        samples = []
        for r0, r1 in tqdm(strips, desc="preview: sample", disable=quiet, leave=False):
            emb, valid = read(r0, r1)
            px = emb[:, valid].T
            n_valid_total += len(px)
            take = min(len(px), max(1, int(n_samples * (r1 - r0) / h)))
            if len(px):
                samples.append(px[rng.choice(len(px), take, replace=False)])
        if not samples:
            raise RasterError(f"{path}: no valid pixel to preview (all nodata)")
        sample = np.concatenate(samples)
        k = min(3, ds.count, len(sample))
        pca = PCA(n_components=k, random_state=seed).fit(sample)
        lo, hi = np.percentile(pca.transform(sample), [2, 98], axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        rgba = np.zeros((h, w, 4), dtype=np.uint8)
        for r0, r1 in tqdm(strips, desc="preview: project", disable=quiet, leave=False):
            emb, valid = read(r0, r1)
            pcs = pca.transform(emb[:, valid].T)
            rgb = np.clip((pcs - lo) / span * 255.0, 0, 255).round().astype(np.uint8)
            block = rgba[r0:r1]
            vals = np.zeros((valid.sum(), 3), dtype=np.uint8)
            vals[:, :k] = rgb
            block[valid, :3] = vals
            block[valid, 3] = 255
    _save_png(rgba, out)
    return PreviewResult(out, w, h, [float(v) for v in pca.explained_variance_ratio_],
                         len(sample))


def _save_png(rgba: np.ndarray, out: Path) -> None:
    from matplotlib.image import imsave

    tmp = temporary_sibling(out)
    try:
        imsave(tmp, rgba, format="png")
        replace_path(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
