"""``geoembed tile``: sample Tile2Vec triplets from scenes into a triplet store.

The sampler (:class:`~geoembed.samplers.triplets.TripletSampler`) decides where tiles go and
reads their pixels block by block; they are streamed into the store's ``triplets.npy`` at their
offsets (memory does not grow with N or with scene size), then the footprints and
``meta.json`` are written, all in a temporary directory renamed into place at the end
(:mod:`geoembed.io.store` describes the format). This module does not import torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from tqdm.auto import tqdm

from geoembed import __version__
from geoembed.errors import CRSError, InputError
from geoembed.io.blocks import GDAL_CACHE_BYTES
from geoembed.io.footprints import write_footprints
from geoembed.io.outputs import atomic_output
from geoembed.io.scenes import BandStats, Scene, band_statistics, open_scenes
from geoembed.io.store import (
    FOOTPRINTS,
    FORMAT,
    META,
    TRIPLETS,
    TileFileWriter,
    TripletStore,
    crs_string,
    open_store,
    scene_meta,
)
from geoembed.samplers.config import TileConfig
from geoembed.samplers.triplets import ROLES, TripletSampler


def _memory_bytes(mib: float) -> int:
    if not mib > 0:
        raise InputError(f"--memory must be a positive number of MiB, got {mib}")
    return int(mib * 2**20)


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
        # GDAL's block cache (5 % of the RAM by default) would keep the blocks that the
        # coverage maps and band statistics decode, more with every scene (84 MB at 32
        # scenes of 2048^2); the sampler's reads do not need it (io.blocks)
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
            opened = open_scenes(scenes, cfg.bands, allow_no_crs=allow_no_crs)
            crss = [s.crs for s in opened]
            if any(c is None for c in crss) and any(c is not None for c in crss):
                raise CRSError("some scenes have a CRS and others do not; assign a CRS to "
                               "every scene")
            sampler = TripletSampler(opened, cfg.tile_size, cfg.neighborhood,
                                     max_nodata=cfg.max_nodata, aoi=cfg.aoi,
                                     distant_other_scene_prob=cfg.distant_other_scene_prob,
                                     memory=_memory_bytes(cfg.memory))
            stats = band_statistics(opened, n_windows=32, window_size=128, seed=cfg.seed,
                                    max_pixels=262_144)
            for s in opened:  # each is reopened for its pass and closed after it
                s.close()
            _write_triplets(tmp, sampler, int(cfg.n_triplets), cfg.seed, quiet)
        meta = _meta(opened, sampler, int(cfg.n_triplets), stats, cfg.seed, cfg.aoi)
        (tmp / META).write_text(json.dumps(meta, indent=1))
    return open_store(out)


def _write_triplets(tmp: Path, sampler: TripletSampler, n: int, seed: int, quiet: bool) -> None:
    """Stream pixels into ``triplets.npy``, then write ``footprints.gpkg``.

    Pixels arrive in scene order (the sampler reads by block rows), so they are written at their
    offsets in the file (buffered, sorted and coalesced); positions go to a temporary file
    and the footprints are written after the pixels.
    """
    pos_path = tmp / ".positions.npy"
    positions = np.lib.format.open_memmap(pos_path, mode="w+", dtype=np.int64,
                                          shape=(n, 3, 3))
    with TileFileWriter.create(tmp / TRIPLETS, sampler.dtype, (n, *sampler.tile_shape)
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
        "scenes": [scene_meta(s) for s in scenes],
        "seed": seed,
        "max_nodata": sampler.max_nodata,
        "distant_other_scene_prob": sampler.distant_other_scene_prob,
        "aoi": aoi_meta,
        "footprints_crs": crs_string(scenes[0].crs),
        "roles": list(ROLES),
    }
