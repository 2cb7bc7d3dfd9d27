"""Feature sets for labelled pixels: the encoder's embedding and the baselines it must beat.

Every feature set describes one labelled pixel:

- ``embedding``: the trained encoder's embedding of the tile centered on the label (or the
  value of an embedding GeoTIFF at the label).
- ``bands``: the pixel's band values.
- ``tile-stats``: per-band mean and standard deviation over the valid pixels of the same tile.
- ``random-encoder``: the same architecture, untrained (fixed seed), its BatchNorm statistics
  estimated on unlabelled tiles of the scene: "is training doing anything?"
- ``pca``: principal components of the flattened, normalised tile, fitted on unlabelled random
  tiles of the scene (the unsupervised baseline of the Tile2Vec paper); as many components as
  the embedding has dimensions, at most 64.
- ``random-features``: random convolutional features (MOSAIKS): filters from whitened random
  patches of the same unlabelled tiles, ReLU responses averaged over the tile's valid
  positions (:mod:`~geoembed.evaluation.random_features`). Computed only when asked for.
- ``embedding+bands``: both concatenated.

Tiles are read one window per label (never the whole scene). A tile that leaves the scene, or
covers nodata, is read with the missing pixels marked invalid; :func:`geoembed.io.scenes.normalize`
sets invalid pixels to 0, the band mean, which is what the encoder sees. ``tile-stats`` uses the
valid pixels only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.windows import Window
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from geoembed.errors import CRSError, RasterError, first_line
from geoembed.io.embeddings import embedding_info, sample_embeddings
from geoembed.io.georef import rowcol_to_xy
from geoembed.io.scenes import BandStats, Scene, normalize, open_dataset
from geoembed.io.tiles import read_windows

CHUNK_BYTES = 64 << 20
"""Label tiles read in one block-aware pass, in bytes of pixels."""
NEEDS_TILES = ("embedding", "tile-stats", "random-encoder", "pca", "random-features")


def tile_window(row: int, col: int, tile: int) -> Window:
    """The ``tile`` x ``tile`` window whose center pixel (index ``tile // 2``) is (row, col)."""
    return Window(col - tile // 2, row - tile // 2, tile, tile)


def read_tile(scene: Scene, row: int, col: int, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(C, t, t)`` and validity ``(t, t)`` of the tile centered on (row, col).

    Parts outside the scene are zeros marked invalid (only the inside part is read).
    """
    data, valid = read_windows(scene, [row - tile // 2], [col - tile // 2], tile)
    return data[0], valid[0]


def iter_label_tiles(scene: Scene, rows: np.ndarray, cols: np.ndarray, tile: int,
                     batch_size: int) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield ``(slice, tiles (B, C, t, t), valid (B, t, t))`` for consecutive label batches.

    Tiles are read in chunks of labels of about :data:`CHUNK_BYTES`, each chunk in one
    block-aware pass over the scene (:func:`geoembed.io.tiles.read_windows`).
    """
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    tile_bytes = scene.count * tile * tile * np.dtype(scene.dtype).itemsize
    chunk = max(batch_size, CHUNK_BYTES // tile_bytes // batch_size * batch_size)
    for c0 in range(0, len(rows), chunk):
        c1 = min(c0 + chunk, len(rows))
        data, valid = read_windows(scene, rows[c0:c1] - tile // 2, cols[c0:c1] - tile // 2, tile)
        for start in range(c0, c1, batch_size):
            stop = min(start + batch_size, c1)
            yield slice(start, stop), data[start - c0:stop - c0], valid[start - c0:stop - c0]


def tile_statistics(norm: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-band mean and std over valid pixels: ``(B, C, t, t)`` -> ``(B, 2C)``."""
    w = valid[:, None, :, :].astype(np.float64)
    n = np.maximum(w.sum(axis=(2, 3)), 1.0)
    mean = (norm * w).sum(axis=(2, 3)) / n
    var = ((norm - mean[:, :, None, None]) ** 2 * w).sum(axis=(2, 3)) / n
    return np.concatenate([mean, np.sqrt(var)], axis=1)


def random_tile_sample(scene: Scene, tile: int, n_tiles: int, stats: BandStats | dict, *,
                       seed: int = 0, min_valid: float = 0.5) -> np.ndarray:
    """Flattened normalised tiles ``(n, C*t*t)`` at random in-scene positions (mostly valid)."""
    if tile > min(scene.width, scene.height):
        raise RasterError(f"tile size {tile} px is larger than the scene "
                          f"({scene.width}x{scene.height})")
    rng = np.random.default_rng(seed)
    pos = np.array([(rng.integers(0, scene.height - tile + 1),
                     rng.integers(0, scene.width - tile + 1)) for _ in range(n_tiles * 4)],
                   dtype=np.int64).reshape(-1, 2)
    out: list[np.ndarray] = []
    for start in range(0, len(pos), n_tiles):  # the first n_tiles mostly valid positions
        data, valid = read_windows(scene, pos[start:start + n_tiles, 0],
                                   pos[start:start + n_tiles, 1], tile)
        ok = valid.mean(axis=(1, 2)) >= min_valid
        out.extend(normalize(d, stats, v).reshape(-1) for d, v in zip(data[ok], valid[ok],
                                                                       strict=True))
        if len(out) >= n_tiles:
            out = out[:n_tiles]
            break
    if len(out) < 2:
        raise RasterError(f"{scene.name}: fewer than 2 mostly valid {tile}x{tile} tiles found "
                          "for the PCA baseline")
    return np.stack(out)


def fit_tile_pca(sample: np.ndarray, *, n_components: int, seed: int = 0) -> Any:
    """PCA of flattened normalised tiles ``(n, C*t*t)`` (unlabelled random tiles of the scene)."""
    k = int(max(1, min(n_components, sample.shape[0] - 1, sample.shape[1])))
    return PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(sample)


@dataclass
class TileFeatureSpec:
    """What is needed to compute the tile-based feature sets.

    Attributes:
        tile: tile size in pixels.
        stats: band statistics used to normalise tiles (the checkpoint's when there is one).
        encoder: trained encoder (for ``embedding``), or None.
        random_encoder: untrained encoder (for ``random-encoder``), or None.
        pca: fitted sklearn PCA (for ``pca``), or None.
        random_features: fitted
            :class:`~geoembed.evaluation.random_features.RandomConvFeatures`, or None.
        device: torch device for the encoders.
        batch_size: labels per batch.
    """

    tile: int
    stats: BandStats | dict
    encoder: Any = None
    random_encoder: Any = None
    pca: Any = None
    random_features: Any = None
    device: Any = "cpu"
    batch_size: int = 64


def label_features(scene: Scene, rows: np.ndarray, cols: np.ndarray, names: Sequence[str],
                   spec: TileFeatureSpec, *, quiet: bool = True) -> dict[str, np.ndarray]:
    """Compute the requested feature sets (except ``embedding+bands``) for labelled pixels.

    Returns ``{name: (n, d) float array}``. ``embedding`` is computed only when
    ``spec.encoder`` is set (otherwise the caller samples an embedding GeoTIFF).
    """
    if spec.encoder is not None or spec.random_encoder is not None:
        # torch only when an encoder is used: the baselines alone run without it
        from geoembed.evaluation.encoders import encode_batch
    want = set(names)
    if "embedding" in want and spec.encoder is None:
        want.discard("embedding")
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in want}
    t = spec.tile
    n_batches = (len(rows) + spec.batch_size - 1) // spec.batch_size
    batches = iter_label_tiles(scene, rows, cols, t, spec.batch_size)
    for _, tiles, valid in tqdm(batches, total=n_batches, desc="features", unit="batch",
                                disable=quiet, leave=False):
        if "bands" in want:
            chunks["bands"].append(tiles[:, :, t // 2, t // 2].astype(np.float64))
        if not want & set(NEEDS_TILES):
            continue
        norm = normalize(tiles, spec.stats, valid)
        if "tile-stats" in want:
            chunks["tile-stats"].append(tile_statistics(norm, valid))
        if "pca" in want:
            chunks["pca"].append(spec.pca.transform(norm.reshape(len(norm), -1)))
        if "random-features" in want:
            chunks["random-features"].append(spec.random_features.transform(norm, valid))
        for name, model in (("embedding", spec.encoder), ("random-encoder", spec.random_encoder)):
            if name in want:
                chunks[name].append(encode_batch(model, norm, spec.device))
    return {n: np.concatenate(v).astype(np.float64) for n, v in chunks.items()}


# ----------------------------------------------------------------------------- embedding rasters

def sample_embedding_raster(path: str | os.PathLike, scene: Scene, rows: np.ndarray,
                            cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Sample an embedding GeoTIFF (float or int8, :mod:`~geoembed.io.embeddings`) at scene pixels.

    The centers of the scene pixels are transformed from the scene's CRS to the embedding
    raster's CRS; each takes the value of the embedding pixel that contains it.

    Returns:
        ``(values (n, D) float, covered (n,) bool, info)``: labels outside the embedding
        raster or on its nodata are not covered; info has ``bands`` (D), ``tags``, ``crs``.

    Raises:
        CRSError: the embedding raster has no CRS or the labels cannot be transformed to it.
        RasterError: the file is not a raster, or it covers none of the labels.
    """
    info = embedding_info(path)
    with open_dataset(path) as ds:
        tags, bounds = ds.tags(), tuple(round(b, 1) for b in ds.bounds)
    if info.crs is None and scene.crs is not None:
        raise CRSError(f"{path}: the embedding raster has no CRS; it cannot be matched to the "
                       "labels")
    x, y = rowcol_to_xy(scene.transform, rows, cols)
    try:
        values, covered = sample_embeddings(path, x, y, crs=scene.crs)
    except CRSError:
        raise
    except Exception as exc:  # PROJ / rasterio errors from the transformation
        raise CRSError(f"{path}: cannot transform the labels from {scene.crs} to the embedding "
                       f"raster's CRS {info.crs} ({first_line(exc, 120)})") from None
    if not covered.any():
        raise RasterError(f"{path}: the embedding raster (CRS {info.crs}, bounds {bounds}) "
                          f"covers none of the {len(rows)} labels; embed the scene the labels "
                          "are on")
    return values.astype(np.float64), covered, {"bands": info.count, "tags": tags,
                                                "crs": str(info.crs)}
