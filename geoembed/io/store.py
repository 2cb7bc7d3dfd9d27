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

The store is written streaming (pixels go straight to the file at their offset, memory does
not grow with N or with scene size) into a temporary directory renamed into place at the end.
This module does not import torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from tqdm.auto import tqdm

from geoembed import __version__
from geoembed.errors import CRSError, InputError
from geoembed.io.footprints import write_footprints
from geoembed.io.outputs import atomic_output
from geoembed.io.scenes import BandStats, Scene, band_statistics, open_scenes
from geoembed.samplers.config import TileConfig
from geoembed.samplers.triplets import ROLES, TripletSampler

FORMAT = "geoembed-triplets"
TRIPLETS = "triplets.npy"
FOOTPRINTS = "footprints.gpkg"
META = "meta.json"
_GDAL_CACHE_BYTES = 32 * 2**20  # keeps GDAL's block cache (and so peak memory) small


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


def tile(scenes: Sequence[str | os.PathLike], out: str | os.PathLike,
         config: TileConfig | None = None, *, overwrite: bool = False, quiet: bool = False,
         allow_no_crs: bool = False, **options: Any) -> TripletStore:
    """Sample Tile2Vec triplets from scenes into a triplet store at ``out``.

    Args:
        scenes: raster paths (same band count after the ``bands`` selection).
        out: the store directory to write.
        config: what to sample; ``options`` (any :class:`TileConfig` field, e.g.
            ``n_triplets=1000, tile_size=32``) override its fields. Without ``config``,
            ``n_triplets`` is required.
        overwrite: replace an existing ``out``.
        quiet: no progress bar.
        allow_no_crs: accept rasters without a CRS.

    Returns:
        The opened :class:`TripletStore`.

    Raises:
        GeoembedError subclasses for bad input (nothing is written then).
    """
    if config is None and "n_triplets" not in options:
        raise TypeError("tile() needs n_triplets= (or config=TileConfig(...))")
    cfg = replace(config or TileConfig(), **options)
    with atomic_output(out, overwrite, directory=True) as tmp:
        if int(cfg.n_triplets) < 1:
            raise InputError(f"the number of triplets must be at least 1, got {cfg.n_triplets}")
        opened = open_scenes(scenes, cfg.bands, allow_no_crs=allow_no_crs)
        crss = [s.crs for s in opened]
        if any(c is None for c in crss) and any(c is not None for c in crss):
            raise CRSError("some scenes have a CRS and others do not; assign a CRS to every scene")
        sampler = TripletSampler(opened, cfg.tile_size, cfg.neighborhood,
                                 max_nodata=cfg.max_nodata, aoi=cfg.aoi,
                                 distant_other_scene_prob=cfg.distant_other_scene_prob)
        stats = band_statistics(opened, n_windows=32, window_size=128, seed=cfg.seed,
                                max_pixels=262_144)
        with rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_BYTES):
            _write_triplets(tmp, sampler, int(cfg.n_triplets), cfg.seed, quiet)
        meta = _meta(opened, sampler, int(cfg.n_triplets), stats, cfg.seed, cfg.aoi)
        (tmp / META).write_text(json.dumps(meta, indent=1))
    return open_store(out)


def _write_triplets(tmp: Path, sampler: TripletSampler, n: int, seed: int, quiet: bool) -> None:
    """Stream pixels into ``triplets.npy``, then write ``footprints.gpkg``.

    Pixels arrive in scene order (the sampler reads strips), so they are written at their
    offsets in the file (buffered, sorted and coalesced); positions go to a temporary file
    and the footprints are written after the pixels.
    """
    pos_path = tmp / ".positions.npy"
    positions = np.lib.format.open_memmap(pos_path, mode="w+", dtype=np.int64,
                                          shape=(n, 3, 3))
    with _ScatterWriter.create(tmp / TRIPLETS, sampler.dtype, (n, *sampler.tile_shape)
                               ) as writer, \
            tqdm(total=n, unit="triplet", disable=quiet, desc="sampling") as bar:
        def sink(t: np.ndarray, r: np.ndarray, tiles: np.ndarray) -> None:
            writer.add(t * 3 + r, tiles)
            bar.update(max(0, min(n, writer.count // 3) - bar.n))

        for start, pos, _ in sampler.iter_groups(n, seed, sink=sink):
            positions[start:start + len(pos)] = pos
        bar.update(n - bar.n)
    positions.flush()
    write_footprints(tmp / FOOTPRINTS, sampler.scenes, sampler.tile_size, positions,
                     sampler.scenes[0].crs, ROLES)
    del positions
    pos_path.unlink()


class _ScatterWriter:
    """Write tiles to their slots of the file; consecutive slots in one write.

    The sampler hands over tiles sorted by (triplet, role), so an anchor and its neighbor
    cut from the same strip usually go out in one write.
    """

    def __init__(self, fd: int, header: int, tile_bytes: int) -> None:
        self.fd, self.header, self.tile_bytes = fd, header, tile_bytes
        self.count = 0

    @classmethod
    def create(cls, path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> _ScatterWriter:
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

    def __enter__(self) -> _ScatterWriter:
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


def _scene_meta(s: Scene) -> dict[str, Any]:
    nodata = s.nodata
    if nodata is not None and isinstance(nodata, float) and not math.isfinite(nodata):
        nodata = str(nodata)  # JSON has no NaN
    return {
        "path": str(Path(s.path).resolve()),
        "crs": crs_string(s.crs),
        "transform": [float(v) for v in tuple(s.transform)[:6]],
        "width": int(s.width),
        "height": int(s.height),
        "nodata": nodata,
        "descriptions": list(s.descriptions),
    }


def _meta(scenes: list[Scene], sampler: TripletSampler, n: int, stats: BandStats, seed: int,
          aoi: Any) -> dict[str, Any]:
    if aoi is None or isinstance(aoi, (str, os.PathLike)):
        aoi_meta = None if aoi is None else str(Path(aoi).resolve())
    else:
        aoi_meta = "<in-memory GeoDataFrame>"
    return {
        "format": FORMAT,
        "geoembed_version": __version__,
        "n_triplets": n,
        "tile_size": sampler.tile_size,
        "neighborhood": sampler.neighborhood,
        "bands": [int(b) for b in scenes[0].bands],
        "band_count": scenes[0].count,
        "dtype": np.dtype(sampler.dtype).name,
        "band_stats": stats.to_dict(),
        "scenes": [_scene_meta(s) for s in scenes],
        "seed": seed,
        "max_nodata": sampler.max_nodata,
        "distant_other_scene_prob": sampler.distant_other_scene_prob,
        "aoi": aoi_meta,
        "footprints_crs": crs_string(scenes[0].crs),
        "roles": list(ROLES),
    }
