"""Classify a scene block row by block row and write the map (and its probabilities).

For each block of output rows: the features at the blocks' centre pixels
(:meth:`~geoembed.mapping.features.PixelFeatures.compute`, the code path the training
features took), the fitted classifier's class probabilities, the most probable class; nodata
where a feature is invalid. Memory is bounded by one block row of features
(:data:`BLOCK_BYTES`), whatever the scene size.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window
from tqdm.auto import tqdm

from geoembed.io.classmap import ClassMapWriter, probability_writer
from geoembed.io.geotiff import RasterWriter
from geoembed.mapping.features import PixelFeatures
from geoembed.mapping.grid import OutputGrid

#: features of one block of output rows held at once (float32)
BLOCK_BYTES = 64 << 20
#: rows classified at once
PREDICT_ROWS = 65536


@dataclass
class MapResult:
    """What streaming the map produced: pixel counts and areas per class."""

    pixels: np.ndarray
    area_ha: np.ndarray | None
    nodata_pixels: int
    seconds: float


def block_rows(grid: OutputGrid, n_features: int, n_classes: int) -> int:
    """Output rows per block: as many as fit :data:`BLOCK_BYTES`, at least 1, at most 256."""
    per_row = grid.width * (n_features + n_classes + 2) * 4
    return int(max(1, min(256, BLOCK_BYTES // max(per_row, 1))))


def predict_proba(model: Any, x: np.ndarray) -> np.ndarray:
    """Class probabilities ``(n, K)`` float32 of a fitted scikit-learn classifier, in chunks."""
    out = [model.predict_proba(x[s:s + PREDICT_ROWS]) for s in range(0, len(x), PREDICT_ROWS)]
    return np.concatenate(out).astype(np.float32) if out else \
        np.zeros((0, len(model.classes_)), np.float32)


def _writers(stack: ExitStack, grid: OutputGrid, out: str | os.PathLike, names: list[str],
             probabilities: Any, confidence: Any, tags: dict, overwrite: bool
             ) -> tuple[Any, Any, Any]:
    common = {"width": grid.width, "height": grid.height, "crs": grid.crs,
              "transform": grid.transform}
    cmap = stack.enter_context(ClassMapWriter(out, names, tags=tags, overwrite=overwrite,
                                              **common))
    probs = conf = None
    if probabilities is not None:
        probs = stack.enter_context(probability_writer(probabilities, names, tags=tags,
                                                       overwrite=overwrite, **common))
    if confidence is not None:
        conf = stack.enter_context(RasterWriter(
            confidence, count=1, dtype="float32", nodata=float("nan"),
            descriptions=["confidence"], tags=tags, overwrite=overwrite, cog=True, **common))
    return cmap, probs, conf


def predict_map(features: PixelFeatures, grid: OutputGrid, model: Any, names: list[str],
                out: str | os.PathLike, *, probabilities: Any = None, confidence: Any = None,
                row_areas: np.ndarray | None = None, tags: dict | None = None,
                overwrite: bool = False, quiet: bool = False) -> MapResult:
    """Classify every output pixel and write the class map (and probability rasters).

    ``model`` is fitted on class codes ``0..K-1`` (``names`` in that order). Every output is
    written atomically: nothing appears unless the whole map is done.
    """
    k = len(names)
    pixels = np.zeros(k, np.int64)
    area = np.zeros(k) if row_areas is not None else None
    nodata = 0
    step = block_rows(grid, features.n_features, k)
    start = time.perf_counter()
    with ExitStack() as stack:
        cmap, probs, conf = _writers(stack, grid, out, names, probabilities, confidence,
                                     tags or {}, overwrite)
        bar = stack.enter_context(tqdm(total=grid.width * grid.height, desc="map", unit="px",
                                       disable=quiet, leave=False))
        for i0 in range(0, grid.height, step):
            i1 = min(i0 + step, grid.height)
            h, w = i1 - i0, grid.width
            rows, cols = grid.centre_pixels(i0, i1)
            x, ok = features.compute(rows, cols)
            p = np.full((len(x), k), np.nan, np.float32)
            p[ok] = predict_proba(model, x[ok])
            cls = np.full(len(x), -1, np.int64)
            cls[ok] = np.argmax(p[ok], axis=1)
            win = Window(0, i0, w, h)
            cmap.write(cls.reshape(h, w), win)
            if probs is not None:
                probs.write(p.T.reshape(k, h, w), win)
            if conf is not None:
                conf.write(_confidence(p, ok).reshape(1, h, w), win)
            counts = np.stack([np.bincount(c[c >= 0], minlength=k)
                               for c in cls.reshape(h, w)])
            pixels += counts.sum(axis=0)
            if area is not None:
                area += (counts * row_areas[i0:i1, None]).sum(axis=0)
            nodata += int((~ok).sum())
            bar.update(h * w)
    return MapResult(pixels=pixels, area_ha=area, nodata_pixels=nodata,
                     seconds=time.perf_counter() - start)


def _confidence(p: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Maximum probability per pixel; NaN where invalid."""
    out = np.full(len(p), np.nan, np.float32)
    out[ok] = p[ok].max(axis=1)
    return out


__all__ = ["BLOCK_BYTES", "MapResult", "block_rows", "predict_map", "predict_proba"]
