"""A map's features at any scene pixels: one code path for the training labels and the map.

:meth:`PixelFeatures.compute` takes scene pixels (rows, cols) in any order and returns one
feature row per pixel and whether it is valid. Pixels are grouped in square cells of
:data:`CELL` scene pixels; each cell reads one scene region (its pixels plus half a tile
around them; parts outside the scene are zeros marked invalid, as in
:func:`geoembed.evaluation.features.read_tile`), cuts the tile centred on each pixel
(centre index ``tile // 2``) and computes, in order:

- ``embedding``: the checkpoint's encoder on the tile, then each embedding raster's value
  (:class:`~geoembed.mapping.sources.RasterSource`), concatenated;
- ``bands``: the pixel's band values;
- ``tile-stats``: per-band mean and std of the tile's valid pixels (normalised);
- ``random-features``: MOSAIKS-style random convolutional features of the tile;
- ``pca``: the tile's principal components (fitted on unlabelled random tiles).

A pixel is invalid where the scene is nodata at it or any embedding raster is nodata /
missing there. Memory per cell is bounded by the cell's region and ``batch_size`` tiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.windows import Window

from geoembed.evaluation.features import tile_statistics
from geoembed.io.scenes import BandStats, Scene, normalize
from geoembed.mapping.sources import RasterSource

CELL = 256


def read_region(scene: Scene, row0: int, col0: int, height: int, width: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(C, h, w)`` and validity of a region that may reach outside the scene."""
    rr0, rr1 = max(row0, 0), min(row0 + height, scene.height)
    cc0, cc1 = max(col0, 0), min(col0 + width, scene.width)
    data = np.zeros((scene.count, height, width), dtype=scene.dtype)
    valid = np.zeros((height, width), dtype=bool)
    if rr1 > rr0 and cc1 > cc0:
        part, ok = scene.read_with_mask(Window(cc0, rr0, cc1 - cc0, rr1 - rr0))
        data[:, rr0 - row0:rr1 - row0, cc0 - col0:cc1 - col0] = part
        valid[rr0 - row0:rr1 - row0, cc0 - col0:cc1 - col0] = ok
    return data, valid


def cut_tiles(data: np.ndarray, valid: np.ndarray, top: np.ndarray, left: np.ndarray,
              tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Tiles ``(B, C, t, t)`` and validity ``(B, t, t)`` with top-left corners in a region."""
    rr = (top[:, None] + np.arange(tile))[:, :, None]
    cc = (left[:, None] + np.arange(tile))[:, None, :]
    return data[:, rr, cc].transpose(1, 0, 2, 3), valid[rr, cc]


@dataclass
class PixelFeatures:
    """What is needed to compute a map's feature sets (see the module docstring).

    Attributes:
        scene: the scene (with the checkpoint's bands when there is one).
        names: the feature sets, in order (``embedding``, ``bands``, ``tile-stats``,
            ``random-features``, ``pca``).
        tile: tile size for window features.
        stats: band statistics that normalise tiles (the checkpoint's when there is one).
        encoder: the checkpoint's encoder (torch module) or None; ``device`` its device.
        sources: embedding rasters (part of ``embedding``).
        random_features: a fitted ``RandomConvFeatures`` or None.
        pca: a fitted scikit-learn PCA or None.
        batch_size: tiles per batch.
        dims: columns of each feature set (``embedding``: encoder + rasters).
        encoder_dim: the encoder's embedding size (0 without a checkpoint).
    """

    scene: Scene
    names: list[str]
    tile: int
    stats: BandStats | dict | None = None
    encoder: Any = None
    device: Any = "cpu"
    sources: list[RasterSource] = field(default_factory=list)
    random_features: Any = None
    pca: Any = None
    batch_size: int = 256
    dims: dict[str, int] = field(default_factory=dict)
    encoder_dim: int = 0

    @property
    def needs_tiles(self) -> bool:
        return bool({"tile-stats", "random-features", "pca"} & set(self.names)) or (
            "embedding" in self.names and self.encoder is not None)

    @property
    def n_features(self) -> int:
        return sum(self.dims[n] for n in self.names)

    @property
    def needs_scene(self) -> bool:
        return self.needs_tiles or "bands" in self.names

    def compute(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features ``(n, D)`` float32 (NaN rows where invalid) and validity ``(n,)``.

        Pixels are taken cell by cell (one scene read per cell); their windows go to the
        window features in batches of ``batch_size`` that span cells, so a sparse grid
        (a coarse stride, scattered labels) still runs the encoder on full batches.
        """
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        n = len(rows)
        out = np.full((n, self.n_features), np.nan, dtype=np.float32)
        valid = np.zeros(n, dtype=bool)
        columns = self.columns()
        batcher = _WindowBatcher(self, out, columns)
        keys = (rows // CELL) * (self.scene.width // CELL + 2) + cols // CELL
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.diff(keys[order], prepend=-1))
        for idx in np.split(order, starts[1:]):
            if len(idx):
                valid[idx] = self._cell(idx, rows[idx], cols[idx], out, columns, batcher)
        batcher.flush()
        out[~valid] = np.nan
        return out, valid

    def columns(self) -> dict[str, slice]:
        """Columns of each part: ``embedding`` (the encoder), ``source<i>`` (the rasters,
        also part of ``embedding``) and the other feature sets, in :attr:`names` order."""
        parts: list[tuple[str, int]] = []
        for name in self.names:
            if name == "embedding":
                if self.encoder is not None:
                    parts.append(("embedding", self.encoder_dim))
                parts.extend((f"source{i}", s.count) for i, s in enumerate(self.sources))
            else:
                parts.append((name, self.dims[name]))
        out, pos = {}, 0
        for key, width in parts:
            out[key] = slice(pos, pos + width)
            pos += width
        return out

    def _cell(self, idx: np.ndarray, rows: np.ndarray, cols: np.ndarray, out: np.ndarray,
              columns: dict[str, slice], batcher: _WindowBatcher) -> np.ndarray:
        """Pixels ``idx`` of one cell: one scene read; per-pixel features into ``out``, the
        windows of valid pixels to ``batcher``. Returns their validity."""
        ok = np.ones(len(idx), dtype=bool)
        if "embedding" in self.names:
            for i, src in enumerate(self.sources):
                values, src_ok = src.sample(self.scene.transform, rows, cols)
                out[idx, columns[f"source{i}"]] = values
                ok &= src_ok
        if self.needs_scene:
            half = self.tile // 2 if self.needs_tiles else 0
            size = self.tile if self.needs_tiles else 1
            r0, c0 = int(rows.min()) - half, int(cols.min()) - half
            data, dvalid = read_region(self.scene, r0, c0, int(rows.max()) - half + size - r0,
                                       int(cols.max()) - half + size - c0)
            cr, cc = rows - r0, cols - c0  # the pixels in the region
            ok &= dvalid[cr, cc]
            if "bands" in self.names:
                out[idx, columns["bands"]] = data[:, cr, cc].T
            if self.needs_tiles:
                sel = np.flatnonzero(ok)
                batcher.add(idx[sel], data, dvalid, cr[sel] - half, cc[sel] - half)
        return ok

    def _window_names(self) -> list[str]:
        names = [n for n in self.names if n in ("tile-stats", "random-features", "pca")]
        if "embedding" in self.names and self.encoder is not None:
            names.insert(0, "embedding")
        return names

    def _window_batch(self, norm: np.ndarray, tvalid: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if "embedding" in self.names and self.encoder is not None:
            # torch only with a checkpoint: the baselines alone run without it
            from geoembed.evaluation.encoders import encode_batch

            out["embedding"] = encode_batch(self.encoder, norm, self.device)
        if "tile-stats" in self.names:
            out["tile-stats"] = tile_statistics(norm, tvalid)
        if "random-features" in self.names:
            out["random-features"] = self.random_features.transform(norm, tvalid)
        if "pca" in self.names:
            out["pca"] = self.pca.transform(norm.reshape(len(norm), -1))
        return out

    def describe(self) -> dict:
        """The feature columns for map.json: dimensions per feature set, the sources."""
        return {"names": list(self.names), "dims": dict(self.dims), "tile": self.tile,
                "checkpoint_embedding": self.encoder is not None,
                "embedding_rasters": [s.describe() for s in self.sources]}


class _WindowBatcher:
    """Windows of valid pixels, cut from their cells' regions into batches that span cells;
    each full batch is normalised and its window features written into ``out``."""

    def __init__(self, features: PixelFeatures, out: np.ndarray, columns: dict[str, slice]
                 ) -> None:
        self.features, self.out, self.columns = features, out, columns
        self.pieces: list[tuple[np.ndarray, ...]] = []  # (pixels, data, valid, tops, lefts)
        self.size = 0

    def add(self, pixels: np.ndarray, data: np.ndarray, dvalid: np.ndarray, top: np.ndarray,
            left: np.ndarray) -> None:
        if len(pixels):
            self.pieces.append((pixels, data, dvalid, top, left))
            self.size += len(pixels)
        while self.size >= self.features.batch_size:
            self._run(self.features.batch_size)

    def flush(self) -> None:
        while self.size:
            self._run(min(self.size, self.features.batch_size))

    def _run(self, k: int) -> None:
        f = self.features
        tiles, tvalid, pixels = [], [], []
        while k:
            px, data, dvalid, top, left = self.pieces[0]
            take = min(k, len(px))
            t, v = cut_tiles(data, dvalid, top[:take], left[:take], f.tile)
            tiles.append(t)
            tvalid.append(v)
            pixels.append(px[:take])
            if take == len(px):
                self.pieces.pop(0)
            else:
                self.pieces[0] = (px[take:], data, dvalid, top[take:], left[take:])
            k -= take
            self.size -= take
        valid = np.concatenate(tvalid)
        norm = normalize(np.concatenate(tiles), f.stats, valid)
        rows = np.concatenate(pixels)
        for name, value in f._window_batch(norm, valid).items():
            self.out[rows, self.columns[name]] = value


__all__ = ["CELL", "PixelFeatures", "cut_tiles", "read_region"]
