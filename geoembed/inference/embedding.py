"""Embed whole scenes into embedding GeoTIFFs (sliding window, streaming, bounded memory).

A window of the checkpoint's tile size slides over the scene with a stride (default: the
tile size). Output pixel ``(i, j)`` holds the embedding of the window whose top-left corner
is scene pixel ``(row i*stride, col j*stride)``; band ``k`` (named ``emb_{k:03d}``) is the
embedding's ``k``-th component. The output transform is::

    scene.transform @ Affine.translation((tile - stride) / 2, (tile - stride) / 2)
                    @ Affine.scale(stride)

so that the center of output pixel ``(i, j)`` is exactly the center of its window, in the
scene's CRS (see :func:`output_transform`).

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
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine
from rasterio.windows import Window
from torch import nn
from tqdm.auto import tqdm

from geoembed import __version__
from geoembed.devices import autocast_context, resolve_device
from geoembed.errors import CheckpointError, InputError, RasterError
from geoembed.io.checkpoint import file_sha256, load_checkpoint
from geoembed.io.embeddings import DEQUANTIZATION, INT8_NODATA, band_names, quantize
from geoembed.io.gdal_env import gdal_cache_limit
from geoembed.io.geotiff import RasterWriter
from geoembed.io.outputs import check_output
from geoembed.io.scenes import BandStats, Scene, open_scene
from geoembed.models import encoder_from_checkpoint
from geoembed.samplers.grid import WindowGrid, iter_grid_rows

KIND = "tile2vec"
DTYPES = ("float32", "int8")
DEFAULT_BATCH_SIZE = 256
DEFAULT_BLOCKSIZE = 128
OUTPUT_SUFFIX = "_embedding.tif"

# numpy dtypes torch.from_numpy accepts and converts to float exactly; others go via float32
_TORCH_DTYPES = {"uint8", "int8", "int16", "int32", "float32", "float64"}


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
                          z_dim=int(cfg["z_dim"]), in_channels=in_channels,
                          encoder_name=str(cfg["name"]), checkpoint=path,
                          sha256=file_sha256(path))


def output_transform(scene_transform: Affine, tile: int, stride: int) -> Affine:
    """Transform of the embedding raster: pixel (i, j) center = center of window (i, j).

    Window ``(i, j)`` spans scene pixels ``[j*s, j*s + t)`` x ``[i*s, i*s + t)``; its center
    is ``(j*s + t/2, i*s + t/2)``. The output pixel center ``(j + 1/2, i + 1/2)`` maps there
    through ``translation((t - s)/2) @ scale(s)``.
    """
    offset = (tile - stride) / 2.0
    return scene_transform @ Affine.translation(offset, offset) @ Affine.scale(stride)


def output_path_for(scene: str | os.PathLike, out: str | os.PathLike, n_scenes: int) -> Path:
    """Where a scene's embedding goes: ``out`` itself for one scene unless it is a
    directory; ``out/<scene stem>_embedding.tif`` otherwise."""
    out = Path(out)
    if n_scenes == 1 and not out.is_dir():
        return out
    return out / f"{Path(scene).stem}{OUTPUT_SUFFIX}"


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


def embed(
    checkpoint: str | os.PathLike,
    scenes: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    stride: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_nodata: float = 0.5,
    dtype: str = "float32",
    bands: Sequence[int] | None = None,
    device: str = "auto",
    amp: bool = True,
    prefetch: int = 2,
    overwrite: bool = False,
    quiet: bool = False,
    allow_no_crs: bool = False,
    blocksize: int = DEFAULT_BLOCKSIZE,
) -> list[Path]:
    """Embed whole scenes with a trained Tile2Vec encoder into embedding GeoTIFFs.

    Args:
        checkpoint: a ``tile2vec`` checkpoint (``geoembed train``'s ``checkpoint.pt``).
        scenes: one or more rasters with the bands the encoder was trained on.
        out: the output file for one scene; a directory for several (each scene's output
            is ``<scene stem>_embedding.tif`` there).
        stride: window step in scene pixels, 1..tile (default: the tile size).
        batch_size: windows per forward pass (batches span rows of windows).
        max_nodata: windows with a larger nodata fraction are nodata in the output.
        dtype: ``"float32"`` (raw embeddings) or ``"int8"`` (unit vectors, quantised; see
            the module docstring for the dequantisation formula).
        bands: 1-based bands to read instead of the checkpoint's selection.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        amp: bf16 autocast on CUDA.
        prefetch: grid rows read ahead by the background reader.
        overwrite: replace existing outputs.
        quiet: no progress bar.
        allow_no_crs: accept scenes without a CRS (outputs in pixel coordinates).
        blocksize: COG tile size of the outputs (a multiple of 16).

    Returns:
        The output paths, one per scene.

    Raises:
        CheckpointError, RasterError, InputError, OutputExistsError: bad input (nothing is
            written for a scene whose embedding fails; finished scenes are kept).
    """
    paths = [scenes] if isinstance(scenes, str | os.PathLike) else list(scenes)
    if not paths:
        raise InputError("no scene given")
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    if batch_size < 1:
        raise InputError("batch size must be at least 1")
    if not 0.0 <= max_nodata <= 1.0:
        raise InputError(f"max_nodata must be between 0 and 1, not {max_nodata}")
    if blocksize < 16 or blocksize % 16:
        raise InputError("blocksize must be a multiple of 16")
    out = Path(out)
    if len(paths) > 1:
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: give a directory as --out when embedding several scenes")
        stems = [Path(p).stem for p in paths]
        dupes = sorted({s for s in stems if stems.count(s) > 1})
        if dupes:
            raise InputError(f"several scenes are named {dupes}: their outputs would collide")
    em = load_embedding_model(checkpoint)
    stride = em.tile if stride is None else int(stride)
    if stride < 1:
        raise InputError("stride must be at least 1 pixel")
    if stride > em.tile:
        raise InputError(f"stride {stride} is larger than the tile ({em.tile} px): pixels "
                         "between windows would be skipped")
    opened = [open_scene_for(em, p, bands, allow_no_crs=allow_no_crs) for p in paths]
    targets = [output_path_for(p, out, len(paths)) for p in paths]
    for t in targets:
        check_output(t, overwrite)
    dev = resolve_device(device)
    model = em.model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    done = []
    for scene, target in zip(opened, targets, strict=True):
        try:
            done.append(_embed_scene(em, model, scene, target, stride=stride,
                                     batch_size=batch_size, max_nodata=max_nodata, dtype=dtype,
                                     device=dev, amp=amp, prefetch=prefetch,
                                     overwrite=overwrite, quiet=quiet, blocksize=blocksize))
        finally:
            scene.close()
    return done


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


class _Normalizer:
    """Turns ``(B, C, t, t)`` raw windows + validity into the model's input, on the device."""

    def __init__(self, stats: BandStats, device: torch.device) -> None:
        self.device = device
        self.mean = torch.tensor(stats.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(stats.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def __call__(self, tiles: np.ndarray, valid: np.ndarray | None) -> torch.Tensor:
        floating = np.issubdtype(tiles.dtype, np.floating)
        if tiles.dtype.name not in _TORCH_DTYPES:
            tiles = tiles.astype(np.float32)
        x = torch.from_numpy(np.ascontiguousarray(tiles))
        cuda = self.device.type == "cuda"
        if cuda:
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=cuda)
        # same arithmetic as raster.normalize: (x - mean) / std in float32, in place
        x = x.to(torch.float32).sub_(self.mean).div_(self.std)
        if valid is not None:
            v = torch.from_numpy(np.ascontiguousarray(valid)).to(self.device, non_blocking=cuda)
            x.masked_fill_(~v[:, None], 0.0)
        if floating:  # integer pixels cannot give NaN or inf
            x = torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


@dataclass
class _Chunk:
    """Accepted windows of one grid row waiting for a batch."""

    row: int
    cols: np.ndarray
    tiles: np.ndarray
    valid: np.ndarray | None  # None: every pixel valid


def _take(pending: deque[_Chunk], n: int) -> tuple[np.ndarray, np.ndarray | None,
                                                   list[tuple[int, np.ndarray]]]:
    """Pop ``n`` windows from the front of ``pending`` (splitting a chunk if needed)."""
    tiles, valids, where = [], [], []
    any_invalid = False
    while n > 0:
        c = pending[0]
        k = min(n, len(c.cols))
        if k == len(c.cols):
            pending.popleft()
            part = c
        else:
            part = _Chunk(c.row, c.cols[:k], c.tiles[:k],
                          None if c.valid is None else c.valid[:k])
            pending[0] = _Chunk(c.row, c.cols[k:], c.tiles[k:],
                                None if c.valid is None else c.valid[k:])
        tiles.append(part.tiles)
        valids.append(part.valid)
        any_invalid |= part.valid is not None
        where.append((part.row, part.cols))
        n -= k
    batch = tiles[0] if len(tiles) == 1 else np.concatenate(tiles)
    valid = None
    if any_invalid:
        valid = np.concatenate([
            v if v is not None else np.ones((len(t), *t.shape[-2:]), dtype=bool)
            for t, v in zip(tiles, valids, strict=True)
        ])
    return batch, valid, where


def _embed_scene(em: EmbeddingModel, model: nn.Module, scene: Scene, target: Path, *,
                 stride: int, batch_size: int, max_nodata: float, dtype: str,
                 device: torch.device, amp: bool, prefetch: int, overwrite: bool, quiet: bool,
                 blocksize: int) -> Path:
    grid = WindowGrid.for_scene(scene, em.tile, stride)
    n_rows, n_cols = grid.shape
    z = em.z_dim
    normalize = _Normalizer(em.band_stats, device)
    nodata: float = INT8_NODATA if dtype == "int8" else float("nan")
    writer = RasterWriter(
        target, width=n_cols, height=n_rows, count=z, dtype=dtype, crs=scene.crs,
        transform=output_transform(scene.transform, em.tile, stride), nodata=nodata,
        descriptions=band_names(z), tags=scene_tags(em, scene, stride, dtype, max_nodata),
        overwrite=overwrite, cog=True, blocksize=blocksize,
        overview_resampling="nearest" if dtype == "int8" else "average",
    )
    # a window is accepted when its count of valid pixels reaches this
    min_valid = math.ceil((1.0 - max_nodata) * em.tile * em.tile - 1e-9)
    pending: deque[_Chunk] = deque()
    n_pending = 0
    rows_out: dict[int, np.ndarray] = {}
    remaining: dict[int, int] = {}
    inflight: deque[tuple[torch.Tensor, list[tuple[int, np.ndarray]]]] = deque()
    state = {"next_row": 0, "strip_start": 0}

    # GDAL's block cache would otherwise keep the whole scene: bound it to a few block rows
    ds = scene.dataset
    scene_row = ds.width * ds.count * np.dtype(ds.dtypes[0]).itemsize
    out_row = n_cols * z * np.dtype(dtype).itemsize
    cache = gdal_cache_limit(2 * scene_row * (max(ds.block_shapes[0][0], 1) + em.tile)
                             + 2 * out_row * blocksize)
    with cache, writer, tqdm(total=grid.n_windows, unit="win", desc=f"embed {scene.name}",
                      disable=quiet, leave=False) as bar, torch.inference_mode():
        block_rows = max(1, writer.dataset.block_shapes[0][0])
        strip = np.empty((z, min(block_rows, n_rows), n_cols), dtype=dtype)

        def finish_one() -> None:
            y, where = inflight.popleft()
            y = y.float().cpu().numpy()
            k = 0
            for row, cols in where:
                rows_out[row][:, cols] = y[k:k + len(cols)].T
                remaining[row] -= len(cols)
                k += len(cols)
            bar.update(k)

        def launch(n: int) -> None:
            nonlocal n_pending
            tiles, valid, where = _take(pending, n)
            n_pending -= n
            x = normalize(tiles, valid)
            with autocast_context(device, amp):
                inflight.append((model(x), where))
            if len(inflight) > 1:  # let the device run this batch while we collect the last
                finish_one()

        def emit_rows() -> None:
            while state["next_row"] in remaining and remaining[state["next_row"]] == 0:
                i = state["next_row"]
                row = rows_out.pop(i)
                del remaining[i]
                fill = i - state["strip_start"]
                strip[:, fill] = quantize(row, axis=0) if dtype == "int8" else row
                state["next_row"] = i + 1
                if fill + 1 == strip.shape[1] or i + 1 == n_rows:
                    writer.write(strip[:, :fill + 1],
                                 Window(0, state["strip_start"], n_cols, fill + 1))
                    state["strip_start"] = i + 1

        for grow in iter_grid_rows(scene, grid, prefetch=prefetch):
            counts = grow.valid.sum(axis=(1, 2))
            accept = counts >= min_valid
            cols = np.flatnonzero(accept)
            rows_out[grow.index] = np.full((z, n_cols), np.nan, dtype=np.float32)
            remaining[grow.index] = len(cols)
            bar.update(n_cols - len(cols))
            if len(cols):
                full = len(cols) == n_cols
                tiles = grow.tiles if full else grow.tiles[cols]
                valid = grow.valid if full else grow.valid[cols]
                all_valid = bool(counts[cols].min() == em.tile * em.tile)
                pending.append(_Chunk(grow.index, cols, tiles, None if all_valid else valid))
                n_pending += len(cols)
            while n_pending >= batch_size:
                launch(batch_size)
            emit_rows()
        while n_pending:
            launch(min(batch_size, n_pending))
        while inflight:
            finish_one()
        emit_rows()
        if state["next_row"] != n_rows:  # pragma: no cover - a bug, not a user error
            raise RuntimeError(f"embedding stopped at row {state['next_row']} of {n_rows}")
    return target
