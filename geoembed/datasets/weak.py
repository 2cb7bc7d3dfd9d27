"""Torch datasets for weakly supervised U-Nets: image-level, single-pixel and dense labels.

Every dataset reads windows from :class:`~geoembed.io.scenes.Scene` objects on demand (no
whole-scene load; a Scene reopens its handle in each DataLoader worker), standardises them
with the training band statistics (:func:`~geoembed.io.scenes.normalize`, nodata -> 0), and
augments an image and its target with the same random flip / 90-degree rotation
(:func:`geoembed.transforms.random_dihedral`, torch's RNG, which
:func:`geoembed.trainers.fit.fit` seeds per epoch: a resumed run repeats exactly). Where
tiles go is decided in :mod:`geoembed.samplers.weak`.

Items:
    * :class:`ImageTiles`: ``(x (C,t,t) float32, valid (t,t) bool, label int64)``.
    * :class:`PointTiles`, :class:`DenseTiles`: ``(x (C,t,t) float32, target (t,t) int64)``
      with :data:`~geoembed.losses.IGNORE_INDEX` where a pixel has no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rasterio.enums import Resampling
from rasterio.windows import Window
from torch.utils.data import Dataset

from geoembed.io.scenes import BandStats, Scene, normalize
from geoembed.losses import IGNORE_INDEX
from geoembed.samplers.weak import PointIndex, clipped_window
from geoembed.transforms import random_dihedral


def _read_normalized(scene: Scene, window: Window, stats: BandStats,
                     out_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Standardised pixels ``(C, s, s)`` and validity ``(s, s)``; resampled to ``out_size``."""
    if out_size is None or (int(window.height), int(window.width)) == (out_size, out_size):
        data, valid = scene.read_with_mask(window)
    else:
        data = scene.read(window, out_shape=(out_size, out_size),
                          resampling=Resampling.bilinear)
        valid = scene.read_valid(window, out_shape=(out_size, out_size))
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.all(np.isfinite(data), axis=0)
    return normalize(data, stats, valid), valid


class ImageTiles(Dataset):
    """One training image per labelled polygon: its bounding window at ``tile`` x ``tile``.

    Windows whose size differs from the tile are resampled (bilinear) to it.

    Args:
        scenes: the scenes the windows refer to.
        scene_index: ``(N,)`` scene of each window.
        windows: ``N`` windows (whole pixels, inside their scene).
        labels: ``(N,)`` int64 class codes.
        tile: training tile size.
        stats: band statistics for standardisation.
        augment: random flips / rotations.
    """

    def __init__(self, scenes: Sequence[Scene], scene_index: np.ndarray,
                 windows: Sequence[Window], labels: np.ndarray, tile: int, stats: BandStats,
                 *, augment: bool = True) -> None:
        self.scenes = list(scenes)
        self.scene_index = np.asarray(scene_index, dtype=np.int64)
        self.windows = list(windows)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.tile = int(tile)
        self.stats = stats
        self.augment = augment

    def __len__(self) -> int:
        return len(self.windows)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Standardised image ``(C, t, t)`` and validity ``(t, t)`` of item ``i`` (no augment)."""
        return _read_normalized(self.scenes[self.scene_index[i]], self.windows[i], self.stats,
                                self.tile)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, valid = self.read(i)
        xt, vt = torch.from_numpy(x), torch.from_numpy(valid)
        if self.augment:
            xt, vt = random_dihedral(xt, vt)
        return xt, vt, torch.tensor(self.labels[i])


class PointTiles(Dataset):
    """Single-pixel labels: item ``i`` is a tile in which labelled point ``i`` falls at a
    random position (drawn anew each epoch), clipped to the scene.

    The target holds every labelled point inside the tile; other pixels are
    :data:`~geoembed.losses.IGNORE_INDEX`.
    """

    def __init__(self, scenes: Sequence[Scene], scene_index: np.ndarray, rows: np.ndarray,
                 cols: np.ndarray, codes: np.ndarray, tile: int, stats: BandStats, *,
                 augment: bool = True) -> None:
        self.scenes = list(scenes)
        self.scene_index = np.asarray(scene_index, dtype=np.int64)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.cols = np.asarray(cols, dtype=np.int64)
        self.codes = np.asarray(codes, dtype=np.int64)
        self.tile = int(tile)
        self.stats = stats
        self.augment = augment
        self._index = {}
        for s in np.unique(self.scene_index):
            sel = np.flatnonzero(self.scene_index == s)
            self._index[int(s)] = (sel, PointIndex(self.rows[sel], self.cols[sel],
                                                    self.codes[sel], self.tile))

    def __len__(self) -> int:
        return len(self.rows)

    def window_for(self, i: int, dr: int, dc: int) -> Window:
        """The tile holding point ``i`` at offset ``(dr, dc)`` inside it, clipped to the scene."""
        scene = self.scenes[self.scene_index[i]]
        return clipped_window(int(self.rows[i]), int(self.cols[i]), dr, dc, self.tile,
                              scene.height, scene.width)

    def target_for(self, i: int, window: Window) -> np.ndarray:
        """``(t, t)`` int64 target of the labelled points of item ``i``'s scene in ``window``."""
        sel, index = self._index[int(self.scene_index[i])]
        r0, c0, t = int(window.row_off), int(window.col_off), self.tile
        hit = index.query(r0, c0, t)
        target = np.full((t, t), IGNORE_INDEX, dtype=np.int64)
        target[index.rows[hit] - r0, index.cols[hit] - c0] = index.codes[hit]
        return target

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        dr, dc = (int(v) for v in torch.randint(0, self.tile, (2,)))
        window = self.window_for(i, dr, dc)
        x, _ = _read_normalized(self.scenes[self.scene_index[i]], window, self.stats)
        xt, yt = torch.from_numpy(x), torch.from_numpy(self.target_for(i, window))
        if self.augment:
            xt, yt = random_dihedral(xt, yt)
        return xt, yt


@dataclass
class DenseSource:
    """A scene and its label raster on the same grid, with the value -> code lookup."""

    scene: Scene
    labels: Scene
    values: list
    codes: list[int]

    def encode(self, raw: np.ndarray, has_label: np.ndarray) -> np.ndarray:
        """Label-raster values -> int64 codes; unmapped or unlabelled -> IGNORE_INDEX."""
        out = np.full(raw.shape, IGNORE_INDEX, dtype=np.int64)
        for value, code in zip(self.values, self.codes, strict=True):
            out[(raw == value) & has_label] = code
        return out

    def read_target(self, window: Window) -> np.ndarray:
        """``(h, w)`` codes of ``window``: unlabelled and scene-nodata pixels are ignored."""
        raw = self.labels.read(window)
        has_label = self.labels.read_valid(window, data=raw)
        has_label &= self.scene.read_valid(window)
        return self.encode(raw[0], has_label)


class DenseTiles(Dataset):
    """Dense labels: tiles at ``windows`` (top-left row, col per item), optionally jittered by
    up to half a tile each epoch (clipped to the scene); the loss sees every labelled pixel.
    """

    def __init__(self, sources: Sequence[DenseSource], source_index: np.ndarray,
                 offsets: np.ndarray, tile: int, stats: BandStats, *, jitter: bool = True,
                 augment: bool = True) -> None:
        self.sources = list(sources)
        self.source_index = np.asarray(source_index, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        self.tile = int(tile)
        self.stats = stats
        self.jitter = jitter
        self.augment = augment

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        src = self.sources[self.source_index[i]]
        t = self.tile
        r0, c0 = (int(v) for v in self.offsets[i])
        dr = dc = 0
        if self.jitter:
            half = t // 2
            dr, dc = (half - int(v) for v in torch.randint(0, 2 * half + 1, (2,)))
        window = clipped_window(r0, c0, dr, dc, t, src.scene.height, src.scene.width)
        x, _ = _read_normalized(src.scene, window, self.stats)
        xt, yt = torch.from_numpy(x), torch.from_numpy(src.read_target(window))
        if self.augment:
            xt, yt = random_dihedral(xt, yt)
        return xt, yt
