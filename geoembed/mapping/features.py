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
        """Features ``(n, D)`` float32 (NaN rows where invalid) and validity ``(n,)``."""
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        n = len(rows)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        keys = (rows // CELL) * (self.scene.width // CELL + 2) + cols // CELL
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.diff(keys[order], prepend=-1))
        for idx in np.split(order, starts[1:]):
            if len(idx):
                x, ok = self._cell(rows[idx], cols[idx])
                parts.append((idx, x, ok))
        out = np.full((n, self.n_features), np.nan, dtype=np.float32)
        valid = np.zeros(n, dtype=bool)
        for idx, x, ok in parts:
            out[idx] = x
            valid[idx] = ok
        return out, valid

    def _cell(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features of pixels that lie in one cell: one scene read, tiles in batches."""
        n = len(rows)
        ok = np.ones(n, dtype=bool)
        blocks: dict[str, list[np.ndarray]] = {}
        if self.needs_scene:
            half = self.tile // 2 if self.needs_tiles else 0
            size = self.tile if self.needs_tiles else 1
            r0, c0 = int(rows.min()) - half, int(cols.min()) - half
            data, dvalid = read_region(self.scene, r0, c0, int(rows.max()) - half + size - r0,
                                       int(cols.max()) - half + size - c0)
            cr, cc = rows - r0, cols - c0  # the pixels in the region
            ok &= dvalid[cr, cc]
            if "bands" in self.names:
                blocks["bands"] = [data[:, cr, cc].T]
            if self.needs_tiles:
                for name, values in self._tile_features(data, dvalid, cr - half, cc - half,
                                                        ok).items():
                    blocks.setdefault(name, []).extend(values)
        if "embedding" in self.names:
            for src in self.sources:
                values, src_ok = src.sample(self.scene.transform, rows, cols)
                blocks.setdefault("embedding", []).append(values)
                ok &= src_ok
        x = np.concatenate([b.astype(np.float32, copy=False)
                            for name in self.names for b in blocks[name]], axis=1)
        x[~ok] = np.nan
        return x, ok

    def _tile_features(self, data: np.ndarray, dvalid: np.ndarray, top: np.ndarray,
                       left: np.ndarray, ok: np.ndarray) -> dict[str, list[np.ndarray]]:
        """Window features of every pixel (rows of invalid pixels are zeros, skipped)."""
        n = len(top)
        feats: dict[str, np.ndarray] = {}
        todo = np.flatnonzero(ok)
        for start in range(0, len(todo), self.batch_size):
            sel = todo[start:start + self.batch_size]
            tiles, tvalid = cut_tiles(data, dvalid, top[sel], left[sel], self.tile)
            norm = normalize(tiles, self.stats, tvalid)
            for name, value in self._window_batch(norm, tvalid).items():
                if name not in feats:
                    feats[name] = np.zeros((n, value.shape[1]), dtype=np.float32)
                feats[name][sel] = value
        for name in self._window_names():
            if name not in feats:
                dim = self.encoder_dim if name == "embedding" else self.dims[name]
                feats[name] = np.zeros((n, dim), dtype=np.float32)
        return {k: [v] for k, v in feats.items()}

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


__all__ = ["CELL", "PixelFeatures", "cut_tiles", "read_region"]
