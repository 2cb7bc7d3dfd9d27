"""Torch datasets for weakly supervised U-Nets: image-level, single-pixel and dense labels.

Every dataset reads windows from :class:`~geoembed.io.scenes.Scene` objects on demand (no
whole-scene load; a Scene reopens its handle in each DataLoader worker), standardises them
with the training band statistics (:func:`~geoembed.io.scenes.normalize`, nodata -> 0), and
augments with random flips and 90-degree rotations drawn from torch's RNG, which
:func:`geoembed.trainers.fit.fit` seeds per epoch (a resumed run repeats exactly).

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


def random_dihedral(*arrays: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Apply one random flip / 90-degree rotation (of 8) to every array's last two axes."""
    k = int(torch.randint(0, 8, ()).item())
    out = []
    for a in arrays:
        if k & 4:
            a = a.flip(-1)
        a = torch.rot90(a, k & 3, dims=(-2, -1))
        out.append(a.contiguous())
    return tuple(out)


def _read_normalized(scene: Scene, window: Window, stats: BandStats,
                     out_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Standardised pixels ``(C, s, s)`` and validity ``(s, s)``; resampled to ``out_size``."""
    if out_size is None or (int(window.height), int(window.width)) == (out_size, out_size):
        data, valid = scene.read_with_mask(window)
    else:
        data = scene.dataset.read(list(scene.bands), window=window,
                                  out_shape=(scene.count, out_size, out_size),
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


class _PointIndex:
    """Labelled points of one scene bucketed by ``tile``-sized cells, for window queries."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, codes: np.ndarray, cell: int) -> None:
        self.rows, self.cols, self.codes, self.cell = rows, cols, codes, cell
        keys = (rows // cell) * 1_000_003 + cols // cell
        order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[order]
        self.order = order

    def query(self, r0: int, c0: int, size: int) -> np.ndarray:
        """Indexes of the points inside the window ``[r0, r0+size) x [c0, c0+size)``."""
        found = []
        for br in range(r0 // self.cell, (r0 + size - 1) // self.cell + 1):
            for bc in range(c0 // self.cell, (c0 + size - 1) // self.cell + 1):
                key = br * 1_000_003 + bc
                lo = np.searchsorted(self.sorted_keys, key, "left")
                hi = np.searchsorted(self.sorted_keys, key, "right")
                found.append(self.order[lo:hi])
        idx = np.concatenate(found) if found else np.zeros(0, np.int64)
        r, c = self.rows[idx], self.cols[idx]
        inside = (r >= r0) & (r < r0 + size) & (c >= c0) & (c < c0 + size)
        return idx[inside]


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
            self._index[int(s)] = (sel, _PointIndex(self.rows[sel], self.cols[sel],
                                                    self.codes[sel], self.tile))

    def __len__(self) -> int:
        return len(self.rows)

    def window_for(self, i: int, dr: int, dc: int) -> Window:
        """The tile holding point ``i`` at offset ``(dr, dc)`` inside it, clipped to the scene."""
        scene = self.scenes[self.scene_index[i]]
        t = self.tile
        r0 = int(np.clip(self.rows[i] - dr, 0, scene.height - t))
        c0 = int(np.clip(self.cols[i] - dc, 0, scene.width - t))
        return Window(c0, r0, t, t)

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
        if self.jitter:
            half = t // 2
            dr, dc = (int(v) - half for v in torch.randint(0, 2 * half + 1, (2,)))
            r0 = int(np.clip(r0 + dr, 0, src.scene.height - t))
            c0 = int(np.clip(c0 + dc, 0, src.scene.width - t))
        window = Window(c0, r0, t, t)
        x, _ = _read_normalized(src.scene, window, self.stats)
        xt, yt = torch.from_numpy(x), torch.from_numpy(src.read_target(window))
        if self.augment:
            xt, yt = random_dihedral(xt, yt)
        return xt, yt


def dense_candidates(source: DenseSource, tile: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Grid tiles (stride = tile, last ones flush with the scene's edge) that hold labels.

    Reads the label raster strip by strip. Returns ``(offsets (n, 2) [row, col],
    labelled_fraction (n,), value_counts {value: pixels})`` over labelled valid pixels.
    """
    from geoembed.samplers.grid import grid_offsets

    scene = source.scene
    rows = grid_offsets(scene.height, tile, tile, cover_end=True)
    cols = grid_offsets(scene.width, tile, tile, cover_end=True)
    offsets, fractions = [], []
    counts: dict = {}
    counted_to = 0
    for r in rows:
        strip = Window(0, r, scene.width, tile)
        raw = source.labels.read(strip)
        has_label = source.labels.read_valid(strip, data=raw) & scene.read_valid(strip)
        skip = max(counted_to - r, 0)  # rows already counted by the previous strip
        counted_to = r + tile
        values, n = np.unique(raw[0][skip:][has_label[skip:]], return_counts=True)
        for v, k in zip(values.tolist(), n.tolist(), strict=True):
            counts[v] = counts.get(v, 0) + k
        for c in cols:
            frac = float(has_label[:, c:c + tile].mean())
            if frac > 0:
                offsets.append((r, c))
                fractions.append(frac)
    return (np.asarray(offsets, dtype=np.int64).reshape(-1, 2),
            np.asarray(fractions, dtype=np.float64), counts)
