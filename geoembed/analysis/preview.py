"""PCA previews: an RGB picture of an embedding raster's first three principal components."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window
from tqdm.auto import tqdm

from geoembed.errors import InputError, RasterError
from geoembed.io.embeddings import STRIP_BYTES, read_embeddings
from geoembed.io.gdal_env import gdal_cache_limit
from geoembed.io.outputs import check_output, replace_path, temporary_sibling
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
    from sklearn.decomposition import PCA

    if max_size < 1:
        raise InputError("max_size must be at least 1 pixel")
    out = check_output(out, overwrite)
    rng = np.random.default_rng(seed)
    with open_dataset(path) as ds, gdal_cache_limit(2 * STRIP_BYTES):
        h, w = _preview_shape(ds.width, ds.height, max_size)
        fy = ds.height / h
        # output-row strips of bounded size, each read decimated from its source rows
        rows_per = max(1, STRIP_BYTES // max(1, w * ds.count * 4))
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
