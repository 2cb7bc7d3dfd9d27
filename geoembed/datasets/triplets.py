"""Torch datasets of Tile2Vec triplets: over a triplet store, or sampled from scenes on the fly.

Every item is a float32 tensor ``(3, C, T, T)`` (anchor, neighbor, distant), standardised
with the band statistics by :func:`geoembed.io.scenes.normalize` (the same normalisation that
embedding a scene uses), and, when augmenting, each tile independently flipped / rotated
by :func:`geoembed.transforms.augment_tiles` (torch's global RNG, which
:func:`geoembed.trainers.fit.fit` seeds per epoch and DataLoader worker, so that a resumed run
draws the same augmentations as an uninterrupted one).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from geoembed.io.scenes import BandStats, Scene, normalize
from geoembed.io.store import open_store
from geoembed.samplers.triplets import TripletSampler
from geoembed.transforms import augment_tiles, radiometric_jitter


def _common_nodata(values: Sequence[Any]) -> float | None:
    """The one finite nodata value shared by every scene, else None (NaN needs no mask:
    :func:`normalize` zeroes non-finite values)."""
    found = set()
    for v in values:
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        if not np.isfinite(v):
            return None
        found.add(v)
    return found.pop() if len(found) == 1 else None


def _to_tensor(pixels: np.ndarray, stats: BandStats, augment: bool,
               nodata: float | None = None, jitter: float = 0.0) -> torch.Tensor:
    """Normalise ``(3, C, T, T)`` pixels (nodata pixels -> 0), jitter each tile's brightness
    and contrast (``jitter`` > 0) and flip / rotate each tile (``augment``)."""
    valid = None
    if nodata is not None:
        valid = (pixels != nodata).all(axis=1)  # like the sampler: valid in every band
        if valid.all():
            valid = None
    x = normalize(pixels, stats, valid)
    if jitter > 0:  # torch's RNG, like the flips
        x = radiometric_jitter(x, jitter, valid)
    if augment:  # codes from torch's RNG (seeded per epoch by fit); NumPy views, one copy
        x = augment_tiles(x)
    return torch.from_numpy(np.ascontiguousarray(x))


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


class TripletStoreDataset(Dataset):
    """Triplets of a triplet store, read from its memory-mapped array one item at a time.

    The array is never loaded whole: each item reads its ``(3, C, T, T)`` slice. The memory
    map is reopened in a process that did not create it (DataLoader workers under spawn).

    Args:
        store: a store directory or an opened :class:`geoembed.io.store.TripletStore`.
        augment: random flips and 90-degree rotations, independently per tile.
        indices: optional subset of triplet indexes (e.g. a held-out split).
        jitter: radiometric jitter strength (:func:`geoembed.transforms.radiometric_jitter`;
            0: none).
        normalization: ``meanstd`` or ``percentile`` (:meth:`BandStats.scaling`).
    """

    def __init__(self, store: Any, *, augment: bool = True,
                 indices: Sequence[int] | np.ndarray | None = None, jitter: float = 0.0,
                 normalization: str = "meanstd") -> None:
        if isinstance(store, (str, os.PathLike)):
            store = open_store(store)
        self.path = Path(store.path)
        self.tile_size: int = int(store.tile_size)
        self.bands: list[int] = [int(b) for b in store.bands]
        self.band_stats: BandStats = dataclasses.replace(store.band_stats, mode=normalization)
        self.jitter = float(jitter)
        self.meta: dict = dict(store.meta)
        self.n_triplets: int = int(store.n_triplets)
        self.augment = augment
        self.indices = (np.arange(self.n_triplets) if indices is None
                        else np.asarray(indices, dtype=np.int64))
        if len(self.indices) and (self.indices.min() < 0
                                  or self.indices.max() >= self.n_triplets):
            raise IndexError("triplet index out of range of the store")
        self._nodata = _common_nodata([sc.get("nodata") if isinstance(sc, dict) else None
                                       for sc in self.meta.get("scenes", [])] or [None])
        self._array: np.ndarray | None = store.triplets
        self._pid: int | None = os.getpid()

    @property
    def in_channels(self) -> int:
        return len(self.bands)

    def triplets(self) -> np.ndarray:
        """The store's memory-mapped ``(N, 3, C, T, T)`` array (opened in this process)."""
        if self._array is None or self._pid != os.getpid():
            self._array = open_store(self.path).triplets
            self._pid = os.getpid()
        return self._array

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_array"] = None
        state["_pid"] = None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def raw(self, i: int) -> np.ndarray:
        """Item ``i`` as stored: ``(3, C, T, T)`` in the store's dtype."""
        return np.asarray(self.triplets()[int(self.indices[i])])

    def __getitem__(self, i: int) -> torch.Tensor:
        return _to_tensor(self.raw(i), self.band_stats, self.augment, self._nodata, self.jitter)


class OnTheFlyTripletDataset(Dataset):
    """Fresh triplets sampled from scenes: item ``i`` of epoch ``e`` is drawn with
    ``numpy.random.default_rng([seed, e, i])`` by
    :class:`~geoembed.samplers.triplets.TripletSampler`.

    The same (seed, epoch, index) always gives the same triplet, in any process and in any
    order, so DataLoader workers, DDP ranks and resumed runs agree; :meth:`set_epoch`
    (called by :func:`geoembed.trainers.fit.fit`) moves to the next epoch's triplets.

    Args:
        scenes: opened scenes (same band count).
        n_triplets: triplets per epoch.
        tile_size: tile side in pixels.
        neighborhood: neighbor centre within this many pixels of the anchor centre.
        band_stats: normalisation statistics (e.g. :func:`geoembed.io.scenes.band_statistics`).
        seed: base seed of the draws.
        augment: random flips and 90-degree rotations, independently per tile.
        jitter: radiometric jitter strength (0: none).
        **sampler_kwargs: passed to :class:`~geoembed.samplers.triplets.TripletSampler`
            (``max_nodata``, ``distant_other_scene_prob``, ``aoi``).
    """

    def __init__(self, scenes: Sequence[Scene], n_triplets: int, tile_size: int,
                 neighborhood: int, *, band_stats: BandStats, seed: int = 0,
                 augment: bool = True, jitter: float = 0.0, **sampler_kwargs: Any) -> None:
        if n_triplets < 1:
            raise ValueError("n_triplets must be at least 1")
        self.scenes = list(scenes)
        self.sampler = TripletSampler(self.scenes, tile_size, neighborhood, **sampler_kwargs)
        self.n_triplets = int(n_triplets)
        self.tile_size = int(tile_size)
        self.neighborhood = int(neighborhood)
        self.band_stats = band_stats
        self.bands = list(self.scenes[0].bands)
        self.seed = int(seed)
        self.augment = augment
        self.jitter = float(jitter)
        self.epoch = 0
        self._nodata = _common_nodata([s.nodata for s in self.scenes])

    @property
    def in_channels(self) -> int:
        return len(self.bands)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s triplets from now on."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_triplets

    def raw(self, i: int) -> np.ndarray:
        """Item ``i`` of the current epoch before normalisation: ``(3, C, T, T)``."""
        if not 0 <= i < self.n_triplets:
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        _, pixels = self.sampler.draw(rng)
        return pixels

    def __getitem__(self, i: int) -> torch.Tensor:
        return _to_tensor(self.raw(i), self.band_stats, self.augment, self._nodata, self.jitter)
