"""Similarity search: the cosine similarity of every embedding pixel to reference pixels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from geoembed.errors import InputError, RasterError
from geoembed.io.embeddings import (
    read_embeddings,
    sample_embeddings,
    strip_windows,
    transform_points,
)
from geoembed.io.gdal_env import gdal_cache_limit
from geoembed.io.geotiff import RasterWriter
from geoembed.io.outputs import check_output
from geoembed.io.scenes import open_dataset


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
        with open_dataset(path) as ds:
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
    with open_dataset(path) as ds:
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
            for w in strip_windows(ds, row_bytes, align):
                emb, valid = read_embeddings(ds, w)
                norm = np.sqrt(np.einsum("zhw,zhw->hw", np.nan_to_num(emb), np.nan_to_num(emb)))
                dot = np.einsum("z,zhw->hw", ref, np.nan_to_num(emb))
                ok = valid & (norm > 0)
                sim = np.where(ok, dot / np.where(ok, norm, 1.0), np.nan).astype(np.float32)
                writer.write(sim, w)
                bar.update(int(w.height))
    return out, ref
