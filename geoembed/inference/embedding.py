"""Embed whole scenes into embedding GeoTIFFs (sliding window, streaming, bounded memory).

A window of the checkpoint's tile size slides over the scene with a stride (default: the
tile size). Output pixel ``(i, j)`` holds the embedding of the window whose top-left corner
is scene pixel ``(row i*stride, col j*stride)``; band ``k`` (named ``emb_{k:03d}``) is the
embedding's ``k``-th component. The output transform is::

    scene.transform @ Affine.translation((tile - stride) / 2, (tile - stride) / 2)
                    @ Affine.scale(stride)

so that the center of output pixel ``(i, j)`` is exactly the center of its window, in the
scene's CRS (:func:`geoembed.io.georef.window_grid_transform`).

The sliding-window loop is :mod:`geoembed.inference.engine`'s, with one output pixel per
window; options are an :class:`~geoembed.inference.config.EmbedConfig`.

Windows whose nodata fraction exceeds ``max_nodata`` are nodata in every band; nodata pixels
inside accepted windows are set to the band mean (0 after normalisation) before the model
sees them.

Formats:
    * ``float32`` (default): the encoder's raw output; nodata NaN; overviews are averages
      of the valid pixels (GDAL ignores NaN nodata when averaging, so an overview pixel is
      the mean embedding of its valid children and is NaN only when all are nodata).
    * ``int8``: each vector is unit-normalised and quantised like Google's Satellite
      Embedding dataset, ``q = clip(round(sign(x) * sqrt(|x|) * 127.5), -127, 127)``, with
      nodata ``-128``; dequantise with ``x = sign(q) * (q / 127.5) ** 2``
      (:func:`geoembed.io.embeddings.dequantize`). The maximum error on a component is about
      ``1 / 127.5``. Overviews use nearest-neighbour resampling (averaging the quantised
      codes would be wrong).

Both are tiled, compressed Cloud Optimized GeoTIFFs with overviews; their metadata tags
record the checkpoint's SHA-256, encoder, z_dim, tile size, stride, max_nodata, bands,
dtype, the dequantisation formula and the geoembed version.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from geoembed import __version__
from geoembed.devices import resolve_device
from geoembed.errors import CheckpointError, InputError, RasterError
from geoembed.inference.config import EmbedConfig, resolve_config
from geoembed.inference.engine import TorchWindowModel, predict_rows, progress, streaming_cache
from geoembed.inference.stitch import WindowPixelStrips
from geoembed.io.checkpoint import file_sha256, load_checkpoint
from geoembed.io.embeddings import DEQUANTIZATION, INT8_NODATA, band_names, quantize
from geoembed.io.georef import window_grid_transform
from geoembed.io.geotiff import RasterWriter
from geoembed.io.inputs import Shard
from geoembed.io.outputs import check_output
from geoembed.io.resume import OPTIONS_TAG, options_digest
from geoembed.io.scenes import BandStats, Scene, open_scene
from geoembed.io.sharded import as_inputs, output_targets, plan
from geoembed.io.sharded import output_path_for as sharded_output_path
from geoembed.models import encoder_from_checkpoint
from geoembed.models.encoders import embedding_size
from geoembed.samplers.grid import WindowGrid

__all__ = ["EmbedConfig", "EmbeddingModel", "embed", "load_embedding_model",
           "open_scene_for", "output_path_for", "scene_tags"]

KIND = "tile2vec"
OUTPUT_SUFFIX = "_embedding.tif"


@dataclass
class EmbeddingModel:
    """A trained encoder with what it needs to embed a scene (from a tile2vec checkpoint)."""

    model: nn.Module
    tile: int
    bands: tuple[int, ...] | None
    band_stats: BandStats
    z_dim: int
    in_channels: int
    encoder_name: str
    checkpoint: Path
    sha256: str


def load_embedding_model(checkpoint: str | os.PathLike) -> EmbeddingModel:
    """Load a ``tile2vec`` checkpoint's encoder (eval mode, on the CPU) and its metadata.

    Raises:
        CheckpointError: missing, unreadable, not geoembed's, another kind, or incomplete.
    """
    path = Path(checkpoint)
    ckpt = load_checkpoint(path, KIND)
    missing = [k for k in ("encoder", "state_dict", "band_stats", "tile_size") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {missing}; was it written by "
                              "`geoembed train`?")
    model = encoder_from_checkpoint(ckpt)
    cfg = ckpt["encoder"]
    try:
        stats = BandStats.from_dict(ckpt["band_stats"])
        tile = int(ckpt["tile_size"])
        bands = tuple(int(b) for b in ckpt["bands"]) if ckpt.get("bands") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad band statistics, bands or tile size "
                              f"({type(exc).__name__}: {exc})") from None
    in_channels = int(cfg["in_channels"])
    if len(stats.mean) != in_channels or (bands is not None and len(bands) != in_channels):
        raise CheckpointError(f"{path}: the checkpoint's bands/statistics do not match its "
                              f"encoder's {in_channels} input channels")
    if tile < 1:
        raise CheckpointError(f"{path}: bad tile size {tile}")
    return EmbeddingModel(model=model, tile=tile, bands=bands, band_stats=stats,
                          z_dim=embedding_size(model, int(cfg["z_dim"])), in_channels=in_channels,
                          encoder_name=str(cfg["name"]), checkpoint=path,
                          sha256=file_sha256(path))


def output_path_for(scene: str | os.PathLike, out: str | os.PathLike, n_scenes: int) -> Path:
    """Where a scene's embedding goes: ``out`` itself for one scene unless it is a
    directory; ``out/<scene stem>_embedding.tif`` otherwise."""
    return sharded_output_path(scene, out, n_scenes, OUTPUT_SUFFIX)


def open_scene_for(em: EmbeddingModel, path: str | os.PathLike,
                   bands: Sequence[int] | None = None, *, allow_no_crs: bool = False) -> Scene:
    """Open a scene with the checkpoint's band selection (or ``bands``) and check it fits."""
    whole = open_scene(path, None, allow_no_crs=allow_no_crs)
    use = tuple(bands) if bands else em.bands
    if use is not None and max(use) > whole.count:
        raise RasterError(
            f"{path}: the scene has {whole.count} band(s) but the checkpoint reads bands "
            f"{list(use)} ({em.in_channels} bands); embed a scene like the training scenes "
            "or pass --bands to pick the matching bands"
        )
    scene = open_scene(path, use, allow_no_crs=allow_no_crs)
    if scene.count != em.in_channels:
        raise RasterError(
            f"{path}: {scene.count} band(s) selected but the checkpoint's encoder takes "
            f"{em.in_channels}; pass --bands with {em.in_channels} band numbers"
        )
    if scene.width < em.tile or scene.height < em.tile:
        raise RasterError(f"{path}: the scene ({scene.width} x {scene.height} px) is smaller "
                          f"than one tile ({em.tile} px)")
    return scene


def embed(checkpoint: str | os.PathLike,
          scenes: str | os.PathLike | Sequence[str | os.PathLike],
          out: str | os.PathLike, config: EmbedConfig | None = None, *,
          shard: Shard | None = None, log: Callable[[str], None] | None = None,
          **options: Any) -> list[Path]:
    """Embed whole scenes with a trained Tile2Vec encoder into embedding GeoTIFFs.

    Resumable: an output that is already there with this checkpoint's SHA-256 and the same
    options (tags ``checkpoint_sha256``, ``options_sha256``) is skipped; temporaries left by
    a killed run are removed. Into a directory, each run appends a line per output to its
    shard's manifest (:mod:`geoembed.io.manifest`).

    Args:
        checkpoint: a ``tile2vec`` checkpoint (``geoembed train``'s ``checkpoint.pt``).
        scenes: one or more rasters with the bands the encoder was trained on (all of
            them, in the order that defines the shards: :func:`geoembed.io.inputs.expand_inputs`
            sorts them).
        out: the output file for one scene; a directory for several (each scene's output
            is ``<scene stem>_embedding.tif`` there).
        config: the options (:class:`~geoembed.inference.config.EmbedConfig`: stride,
            batch_size, max_nodata, dtype, bands, device, amp, prefetch, overwrite, quiet,
            allow_no_crs, blocksize).
        shard: embed only this shard's scenes (index mod count); None: all.
        log: called with one line per event (shard, skipped outputs, removed temporaries).
        **options: fields of :class:`EmbedConfig`, overriding ``config``'s.

    Returns:
        The shard's output paths, one per scene (written or skipped).

    Raises:
        CheckpointError, RasterError, InputError, OutputExistsError: bad input (nothing is
            written for a scene whose embedding fails; finished scenes are kept).
    """
    cfg = resolve_config(EmbedConfig, config, options)
    paths = as_inputs(scenes)
    output_targets(paths, out, OUTPUT_SUFFIX)  # bad --out / names: before loading the model
    em = load_embedding_model(checkpoint)
    stride = em.tile if cfg.stride is None else int(cfg.stride)
    if stride > em.tile:
        raise InputError(f"stride {stride} is larger than the tile ({em.tile} px): pixels "
                         "between windows would be skipped")
    run = plan(paths, out, OUTPUT_SUFFIX, shard=shard, sha256=em.sha256,
               overwrite=cfg.overwrite, log=log)
    if not run.mine:
        return []
    digest = options_digest(_pixel_options(em, cfg, stride))
    todo, done = run.pending({"checkpoint_sha256": em.sha256, OPTIONS_TAG: digest},
                             cfg.overwrite)
    opened = {i: open_scene_for(em, paths[i], cfg.bands, allow_no_crs=cfg.allow_no_crs)
              for i in todo}
    try:
        for i in todo:
            check_output(run.targets[i], cfg.overwrite)
        model = TorchWindowModel(em.model, em.band_stats, resolve_device(cfg.device), cfg.amp) \
            if todo else None
        for i in todo:
            with run.record(i):
                done[i] = _embed_scene(em, model, opened[i], run.targets[i], stride, cfg,
                                       digest)
    finally:
        for scene in opened.values():
            scene.close()
    return [done[i] for i in run.mine]


def _pixel_options(em: EmbeddingModel, cfg: EmbedConfig, stride: int) -> dict[str, Any]:
    """What shapes an output's bytes besides the checkpoint (digested into a tag)."""
    return {"stride": stride, "tile": em.tile, "max_nodata": cfg.max_nodata,
            "dtype": cfg.dtype, "blocksize": cfg.blocksize,
            "bands": list(cfg.bands or em.bands or [])}


def scene_tags(em: EmbeddingModel, scene: Scene, stride: int, dtype: str,
               max_nodata: float) -> dict[str, Any]:
    """Metadata tags written into an embedding GeoTIFF."""
    return {
        "geoembed_version": __version__,
        "geoembed_product": "embedding",
        "checkpoint": em.checkpoint.name,
        "checkpoint_sha256": em.sha256,
        "encoder": em.encoder_name,
        "z_dim": em.z_dim,
        "tile_size": em.tile,
        "stride": stride,
        "max_nodata": max_nodata,
        "bands": ",".join(str(b) for b in scene.bands),
        "source": scene.name,
        "embedding_dtype": dtype,
        "unit_normalized": "yes" if dtype == "int8" else "no",
        "dequantization": DEQUANTIZATION if dtype == "int8" else "none (raw float32 embeddings)",
        "nodata": "-128" if dtype == "int8" else "nan",
    }


def _embed_scene(em: EmbeddingModel, model: TorchWindowModel, scene: Scene, target: Path,
                 stride: int, cfg: EmbedConfig, digest: str) -> Path:
    """Embed one scene: one output pixel per window, written strip by strip."""
    grid = WindowGrid.for_scene(scene, em.tile, stride)
    n_rows, n_cols = grid.shape
    int8 = cfg.dtype == "int8"
    writer = RasterWriter(
        target, width=n_cols, height=n_rows, count=em.z_dim, dtype=cfg.dtype, crs=scene.crs,
        transform=window_grid_transform(scene.transform, em.tile, stride),
        nodata=INT8_NODATA if int8 else float("nan"), descriptions=band_names(em.z_dim),
        tags={**scene_tags(em, scene, stride, cfg.dtype, cfg.max_nodata), OPTIONS_TAG: digest},
        overwrite=cfg.overwrite, cog=True, blocksize=cfg.blocksize,
        overview_resampling="nearest" if int8 else "average",
    )
    # a window is accepted when its count of valid pixels reaches this
    min_valid = math.ceil((1.0 - cfg.max_nodata) * em.tile * em.tile - 1e-9)
    out_row = n_cols * em.z_dim * np.dtype(cfg.dtype).itemsize
    encode = (lambda v: quantize(v, axis=0)) if int8 else None
    with streaming_cache(scene, em.tile, out_row * cfg.blocksize), writer, \
            progress(grid.n_windows, f"embed {scene.name}", cfg.quiet) as bar:
        strips = WindowPixelStrips(writer, n_rows, encode)
        for res in predict_rows(scene, grid, model, (em.z_dim,), batch_size=cfg.batch_size,
                                min_valid=min_valid, prefetch=cfg.prefetch, bar=bar):
            strips.add(res.index, res.outputs.T)
    return target
