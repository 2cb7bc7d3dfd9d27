"""The on-disk triplet store written by ``geoembed tile``.

A store is a directory holding:

- ``triplets.npy``: one array ``(N, 3, C, T, T)`` in the scenes' dtype (anchor, neighbor,
  distant), loadable with ``np.load(path, mmap_mode="r")``;
- ``footprints.gpkg``: layer ``footprints``, one row per tile with columns ``triplet``,
  ``role`` (anchor / neighbor / distant), ``scene`` (index into ``meta["scenes"]``), ``row``,
  ``col`` (pixel offset of the window's top-left corner) and the window's footprint polygon.
  Footprints are in the first scene's CRS (``meta["footprints_crs"]``): footprints of scenes
  in another CRS are reprojected to it (vertex by vertex); see :mod:`geoembed.io.footprints`;
- ``meta.json``: tile size, neighborhood, bands, band statistics, scenes (path, CRS,
  transform, size, nodata - ``"nan"`` for NaN), seed, sampler options and the geoembed
  version. With ``max_nodata > 0`` tiles may hold nodata pixels (the scene's nodata value).

The store is written by :func:`geoembed.samplers.tiling.tile`, streaming (pixels go straight
to the file at their offset, memory does not grow with N or with scene size) into a temporary
directory renamed into place at the end. This module does not import torch.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoembed.errors import InputError
from geoembed.io.paths import is_remote
from geoembed.io.scenes import BandStats, Scene

FORMAT = "geoembed-triplets"
TRIPLETS = "triplets.npy"
FOOTPRINTS = "footprints.gpkg"
META = "meta.json"


@dataclass
class TripletStore:
    """An opened triplet store: ``triplets`` is a read-only memory map ``(N, 3, C, T, T)``."""

    path: Path
    triplets: np.ndarray
    meta: dict

    @property
    def n_triplets(self) -> int:
        return int(self.triplets.shape[0])

    @property
    def tile_size(self) -> int:
        return int(self.meta["tile_size"])

    @property
    def bands(self) -> list[int]:
        """1-based band indexes of the scenes that the store holds."""
        return list(self.meta["bands"])

    @property
    def band_count(self) -> int:
        return int(self.meta["band_count"])

    @property
    def band_stats(self) -> BandStats:
        return BandStats.from_dict(self.meta["band_stats"])

    @property
    def footprints_path(self) -> Path:
        return self.path / FOOTPRINTS

    def footprints(self) -> Any:
        """The footprints as a GeoDataFrame (one row per tile)."""
        import geopandas as gpd  # ~0.4 s to import: only for readers of the footprints

        return gpd.read_file(self.footprints_path, layer="footprints")

    def __len__(self) -> int:
        return self.n_triplets


def open_store(path: str | os.PathLike) -> TripletStore:
    """Open a triplet store, checking that its files agree with each other.

    Raises:
        InputError: a missing directory or file, a foreign or corrupt ``meta.json``, or a
            ``triplets.npy`` that is truncated or whose shape/dtype disagrees with the metadata.
    """
    path = Path(path)
    hint = "write one with `geoembed tile`"
    if not path.is_dir():
        raise InputError(f"{path}: no triplet store there ({hint})")
    meta_path = path / META
    if not meta_path.is_file():
        raise InputError(f"{path}: not a triplet store, {META} is missing ({hint})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{meta_path}: unreadable metadata ({exc}); rewrite the store") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{meta_path}: not a geoembed triplet store ({hint})")
    npy = path / TRIPLETS
    if not npy.is_file():
        raise InputError(f"{path}: {TRIPLETS} is missing; rewrite the store ({hint})")
    try:
        triplets = np.load(npy, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{npy}: truncated or corrupt ({str(exc).strip()}); rewrite the store ({hint})"
        ) from None
    try:
        expected = (int(meta["n_triplets"]), 3, int(meta["band_count"]), int(meta["tile_size"]),
                    int(meta["tile_size"]))
        dtype = np.dtype(meta["dtype"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{meta_path}: incomplete metadata ({exc}); rewrite the store") from None
    if triplets.shape != expected or triplets.dtype != dtype:
        raise InputError(
            f"{npy}: array {triplets.shape} {triplets.dtype} does not match {META} "
            f"({expected} {dtype}); rewrite the store"
        )
    return TripletStore(path=path, triplets=triplets, meta=meta)


class TileFileWriter:
    """Write tiles to their slots of ``triplets.npy``; consecutive slots in one write.

    The sampler hands over tiles sorted by (triplet, role), so an anchor and its neighbor
    cut from the same strip usually go out in one write.
    """

    def __init__(self, fd: int, header: int, tile_bytes: int) -> None:
        self.fd, self.header, self.tile_bytes = fd, header, tile_bytes
        self.count = 0

    @classmethod
    def create(cls, path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> TileFileWriter:
        """A new ``.npy`` file of ``shape`` (tiles are ``shape[2:]``), its blocks allocated."""
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        header = int(mm.offset)
        del mm
        tile_bytes = int(np.prod(shape[2:])) * np.dtype(dtype).itemsize
        fd = os.open(path, os.O_RDWR)
        if hasattr(os, "posix_fallocate"):
            try:  # allocate blocks up front: much faster scattered writes on some filesystems
                os.posix_fallocate(fd, 0, header + int(np.prod(shape[:2])) * tile_bytes)
            except OSError:
                pass
        return cls(fd, header, tile_bytes)

    def __enter__(self) -> TileFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def add(self, slots: np.ndarray, tiles: np.ndarray) -> None:
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) > 1 and (np.diff(slots) <= 0).any():  # not sorted: sort (last wins)
            order = np.lexsort((np.arange(len(slots)), slots))
            s = slots[order]
            order = order[np.append(s[1:] != s[:-1], True)]
            slots, tiles = slots[order], tiles[order]
        tiles = np.ascontiguousarray(tiles)
        starts = np.flatnonzero(np.diff(slots, prepend=-2) != 1)
        ends = np.append(starts[1:], len(slots))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            os.pwrite(self.fd, tiles[a:b], self.header + int(slots[a]) * self.tile_bytes)
        self.count += len(slots)


def crs_string(crs: Any) -> str | None:
    """``EPSG:xxxx`` when the CRS has an EPSG code, else its WKT (None without CRS)."""
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def scene_meta(s: Scene) -> dict[str, Any]:
    nodata = s.nodata
    if nodata is not None and isinstance(nodata, float) and not math.isfinite(nodata):
        nodata = str(nodata)  # JSON has no NaN
    return {
        "path": s.path if is_remote(s.path) else str(Path(s.path).resolve()),
        "crs": crs_string(s.crs),
        "transform": [float(v) for v in tuple(s.transform)[:6]],
        "width": int(s.width),
        "height": int(s.height),
        "nodata": nodata,
        "descriptions": list(s.descriptions),
    }
