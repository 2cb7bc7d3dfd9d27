"""PCA previews: an RGB picture of an embedding raster's first three principal components."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.image import imsave
from rasterio.windows import Window
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from geoembed.errors import InputError, RasterError
from geoembed.io.embeddings import STRIP_BYTES, read_embeddings
from geoembed.io.gdal_env import gdal_cache_limit
from geoembed.io.outputs import atomic_output, check_output
from geoembed.io.scenes import open_dataset


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
    if max_size < 1:
        raise InputError("max_size must be at least 1 pixel")
    out = check_output(out, overwrite)
    with open_dataset(path) as ds, gdal_cache_limit(2 * STRIP_BYTES):
        h, w = _preview_shape(ds.width, ds.height, max_size)
        strips = _DecimatedStrips(ds, h, w)
        sample = _sample_pixels(strips, n_samples, np.random.default_rng(seed), quiet)
        if len(sample) == 0:
            raise RasterError(f"{path}: no valid pixel to preview (all nodata)")
        k = min(3, ds.count, len(sample))
        pca = PCA(n_components=k, random_state=seed).fit(sample)
        rgba = _project(strips, pca, sample, quiet)
    _save_png(rgba, out)
    return PreviewResult(out, w, h, [float(v) for v in pca.explained_variance_ratio_],
                         len(sample))


class _DecimatedStrips:
    """Output-row strips of bounded size, each read decimated from its source rows (GDAL uses
    a COG's overviews)."""

    def __init__(self, ds: Any, h: int, w: int) -> None:
        self.ds, self.h, self.w = ds, h, w
        rows_per = max(1, STRIP_BYTES // max(1, w * ds.count * 4))
        self.spans = [(r, min(h, r + rows_per)) for r in range(0, h, rows_per)]

    def read(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        fy = self.ds.height / self.h
        src0, src1 = round(r0 * fy), round(r1 * fy)
        win = Window(0, src0, self.ds.width, max(1, src1 - src0))
        return read_embeddings(self.ds, win, out_shape=(r1 - r0, self.w))


def _sample_pixels(strips: _DecimatedStrips, n_samples: int, rng: np.random.Generator,
                   quiet: bool) -> np.ndarray:
    """About ``n_samples`` valid embedding vectors, drawn evenly over the strips."""
    samples = [np.zeros((0, strips.ds.count), dtype=np.float32)]
    for r0, r1 in tqdm(strips.spans, desc="preview: sample", disable=quiet, leave=False):
        emb, valid = strips.read(r0, r1)
        px = emb[:, valid].T
        take = min(len(px), max(1, int(n_samples * (r1 - r0) / strips.h)))
        if len(px):
            samples.append(px[rng.choice(len(px), take, replace=False)])
    return np.concatenate(samples)


def _project(strips: _DecimatedStrips, pca: PCA, sample: np.ndarray, quiet: bool
             ) -> np.ndarray:
    """RGBA picture: components stretched between their 2nd and 98th percentiles."""
    k = pca.n_components_
    lo, hi = np.percentile(pca.transform(sample), [2, 98], axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    rgba = np.zeros((strips.h, strips.w, 4), dtype=np.uint8)
    for r0, r1 in tqdm(strips.spans, desc="preview: project", disable=quiet, leave=False):
        emb, valid = strips.read(r0, r1)
        rgb = np.clip((pca.transform(emb[:, valid].T) - lo) / span * 255.0, 0, 255)
        vals = np.zeros((valid.sum(), 3), dtype=np.uint8)
        vals[:, :k] = rgb.round().astype(np.uint8)
        block = rgba[r0:r1]
        block[valid, :3] = vals
        block[valid, 3] = 255
    return rgba


def _save_png(rgba: np.ndarray, out: Path) -> None:
    with atomic_output(out, overwrite=True) as tmp:
        imsave(tmp, rgba, format="png")
