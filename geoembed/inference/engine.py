"""The sliding-window engine shared by ``geoembed embed`` and ``geoembed segment``.

Data flow: scene -> window grid (:class:`~geoembed.samplers.grid.WindowGrid`) -> strips
read row by row in a background thread (:func:`~geoembed.inference.strips.iter_grid_rows`)
-> batches of accepted windows, spanning grid rows (:func:`predict_rows`) -> the model
(:class:`TorchWindowModel`: normalisation on the device, autocast, one batch in flight while
the previous one is collected) -> per-row results in row order -> an output grid written
block by block with :class:`~geoembed.io.geotiff.RasterWriter` by one of
:mod:`geoembed.inference.stitch`'s assemblers:

* one output pixel per window (``WindowPixelStrips``, embeddings), or
* per-pixel outputs of overlapping windows averaged with a smooth weight
  (``BlendBand``, segmentation), kept for a band of ``tile`` rows only.

Memory depends on the scene's width, not its size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from geoembed.devices import autocast_context
from geoembed.inference.strips import GridRow, iter_grid_rows
from geoembed.io.gdal_env import gdal_cache_limit
from geoembed.io.scenes import BandStats, Scene
from geoembed.samplers.grid import WindowGrid

# numpy dtypes torch.from_numpy accepts and converts to float exactly; others go via float32
_TORCH_DTYPES = {"uint8", "int8", "int16", "int32", "float32", "float64"}


class WindowModel(Protocol):
    """A model over raw windows: ``launch`` starts a batch, ``collect`` returns its outputs."""

    def launch(self, tiles: np.ndarray, valid: np.ndarray | None) -> Any:
        """Start on raw ``(n, C, t, t)`` windows (``valid``: ``(n, t, t)``, None = all)."""

    def collect(self, handle: Any) -> np.ndarray:
        """The ``(n, ...)`` float32 outputs of a launched batch."""


class Normalizer:
    """Turns ``(B, C, t, t)`` raw windows + validity into the model's input, on the device."""

    def __init__(self, stats: BandStats, device: torch.device) -> None:
        self.device = device
        offset, scale, self.clip = stats.scaling()
        self.mean = torch.from_numpy(offset).to(device).view(1, -1, 1, 1)
        self.std = torch.from_numpy(scale).to(device).view(1, -1, 1, 1)

    def __call__(self, tiles: np.ndarray, valid: np.ndarray | None) -> torch.Tensor:
        floating = np.issubdtype(tiles.dtype, np.floating)
        if tiles.dtype.name not in _TORCH_DTYPES:
            tiles = tiles.astype(np.float32)
        source = torch.from_numpy(np.ascontiguousarray(tiles))
        cuda = self.device.type == "cuda"
        x = source.pin_memory() if cuda else source
        x = x.to(self.device, non_blocking=cuda).to(torch.float32)
        # same arithmetic as io.scenes.normalize: (x - offset) / scale in float32, in place
        # unless x is still the caller's array (float32 on the CPU), which must not change
        x = x.sub(self.mean) if x.data_ptr() == source.data_ptr() else x.sub_(self.mean)
        x = x.div_(self.std)
        if self.clip is not None:
            x = x.clamp_(-self.clip, self.clip)
        if valid is not None:
            v = torch.from_numpy(np.ascontiguousarray(valid)).to(self.device, non_blocking=cuda)
            x.masked_fill_(~v[:, None], 0.0)
        if floating:  # integer pixels cannot give NaN or inf
            x = torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


class TorchWindowModel:
    """A torch module as a :class:`WindowModel`: normalise on the device, run under autocast.

    ``launch`` returns the output tensor without waiting for it (CUDA runs asynchronously),
    so the engine can prepare the next batch while the device computes this one.
    """

    def __init__(self, model: nn.Module, stats: BandStats, device: torch.device,
                 amp: bool = True) -> None:
        self.model = model.to(device).eval()
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.device = device
        self.amp = amp
        self.normalize = Normalizer(stats, device)

    def launch(self, tiles: np.ndarray, valid: np.ndarray | None) -> torch.Tensor:
        x = self.normalize(tiles, valid)
        with torch.inference_mode(), autocast_context(self.device, self.amp):
            return self.model(x)

    def collect(self, handle: torch.Tensor) -> np.ndarray:
        return handle.float().cpu().numpy()


@dataclass
class RowResult:
    """The outputs of one grid row, in order.

    Attributes:
        index: the grid row.
        outputs: ``(n_cols, *out_shape)`` float32, NaN for windows that were not accepted.
        accepted: ``(n_cols,)`` windows that went through the model.
        valid: ``(n_cols, tile, tile)`` validity of every window's pixels.
    """

    index: int
    outputs: np.ndarray
    accepted: np.ndarray
    valid: np.ndarray


@dataclass
class _Chunk:
    """Accepted windows of one grid row waiting for a batch."""

    row: int
    cols: np.ndarray
    tiles: np.ndarray
    valid: np.ndarray | None  # None: every pixel valid

    def valid_mask(self) -> np.ndarray:
        """``(n, t, t)`` validity, all True when ``valid`` is None."""
        if self.valid is not None:
            return self.valid
        return np.ones((len(self.cols), *self.tiles.shape[-2:]), dtype=bool)

    def split(self, k: int) -> tuple[_Chunk, _Chunk]:
        v = self.valid
        return (_Chunk(self.row, self.cols[:k], self.tiles[:k], None if v is None else v[:k]),
                _Chunk(self.row, self.cols[k:], self.tiles[k:], None if v is None else v[k:]))


class _Batcher:
    """Accepted windows of consecutive rows, cut into batches of a fixed size."""

    def __init__(self) -> None:
        self.pending: deque[_Chunk] = deque()
        self.size = 0

    def add(self, chunk: _Chunk) -> None:
        self.pending.append(chunk)
        self.size += len(chunk.cols)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray | None, list[tuple[int, np.ndarray]]]:
        """``n`` windows from the front: pixels, validity (None: all valid), (row, cols)."""
        parts: list[_Chunk] = []
        while n > 0:
            chunk = self.pending.popleft()
            if len(chunk.cols) > n:
                chunk, rest = chunk.split(n)
                self.pending.appendleft(rest)
            parts.append(chunk)
            n -= len(chunk.cols)
            self.size -= len(chunk.cols)
        tiles = parts[0].tiles if len(parts) == 1 else np.concatenate([p.tiles for p in parts])
        valid = None
        if any(p.valid is not None for p in parts):
            valid = np.concatenate([p.valid_mask() for p in parts])
        return tiles, valid, [(p.row, p.cols) for p in parts]


class _Pipeline:
    """Grid rows in, batches through the model (one in flight), finished rows out in order."""

    def __init__(self, model: WindowModel, out_shape: tuple[int, ...], bar: tqdm | None) -> None:
        self.model, self.out_shape, self.bar = model, out_shape, bar
        self.batcher = _Batcher()
        self.rows: dict[int, RowResult] = {}
        self.remaining: dict[int, int] = {}
        self.inflight: deque[tuple[Any, list[tuple[int, np.ndarray]]]] = deque()
        self.next_row = 0

    def add_row(self, grow: GridRow, min_valid: int) -> None:
        """Queue a grid row's windows with at least ``min_valid`` valid pixels."""
        counts = grow.valid.sum(axis=(1, 2))
        accepted = counts >= min_valid
        cols = np.flatnonzero(accepted)
        outputs = np.full((len(accepted), *self.out_shape), np.nan, dtype=np.float32)
        self.rows[grow.index] = RowResult(grow.index, outputs, accepted, grow.valid)
        self.remaining[grow.index] = len(cols)
        self._progress(len(accepted) - len(cols))
        if len(cols):
            every = len(cols) == len(accepted)
            all_valid = bool(counts[cols].min() == grow.valid[0].size)
            valid = None if all_valid else (grow.valid if every else grow.valid[cols])
            self.batcher.add(_Chunk(grow.index, cols, grow.tiles if every else grow.tiles[cols],
                                    valid))

    def launch(self, n: int) -> None:
        tiles, valid, where = self.batcher.take(n)
        self.inflight.append((self.model.launch(tiles, valid), where))
        if len(self.inflight) > 1:  # let the device run this batch while we collect the last
            self.collect_one()

    def collect_one(self) -> None:
        handle, where = self.inflight.popleft()
        y = self.model.collect(handle)
        k = 0
        for row, cols in where:
            self.rows[row].outputs[cols] = y[k:k + len(cols)]
            self.remaining[row] -= len(cols)
            k += len(cols)
        self._progress(k)

    def finished(self) -> Iterator[RowResult]:
        """The rows, in order, whose windows are all done."""
        while self.remaining.get(self.next_row) == 0:
            del self.remaining[self.next_row]
            yield self.rows.pop(self.next_row)
            self.next_row += 1

    def _progress(self, n: int) -> None:
        if self.bar is not None and n:
            self.bar.update(n)


def predict_rows(scene: Scene, grid: WindowGrid, model: WindowModel, out_shape: tuple[int, ...],
                 *, batch_size: int, min_valid: int = 0, prefetch: int = 2,
                 bar: tqdm | None = None) -> Iterator[RowResult]:
    """Run ``model`` over every window of ``grid`` with at least ``min_valid`` valid pixels.

    Batches of ``batch_size`` windows span grid rows; one batch stays in flight while the
    previous one is collected. Rows are yielded in order as soon as all their windows are
    done; ``outputs`` has ``out_shape`` per window.
    """
    pipe = _Pipeline(model, out_shape, bar)
    for grow in iter_grid_rows(scene, grid, prefetch=prefetch):
        pipe.add_row(grow, min_valid)
        while pipe.batcher.size >= batch_size:
            pipe.launch(batch_size)
        yield from pipe.finished()
    while pipe.batcher.size:
        pipe.launch(min(batch_size, pipe.batcher.size))
    while pipe.inflight:
        pipe.collect_one()
    yield from pipe.finished()
    if pipe.next_row != grid.shape[0]:  # pragma: no cover - a bug, not a user error
        raise RuntimeError(f"inference stopped at grid row {pipe.next_row} of {grid.shape[0]}")


def streaming_cache(scene: Scene, tile: int, out_bytes: int) -> Any:
    """A ``rasterio.Env`` bounding GDAL's block cache to what one pass over ``scene`` needs.

    GDAL's block cache would otherwise keep the whole scene: a few block rows of the scene
    (plus a window's height) and ``out_bytes`` of output blocks are enough.
    """
    ds = scene.dataset
    scene_row = ds.width * ds.count * np.dtype(ds.dtypes[0]).itemsize
    return gdal_cache_limit(2 * scene_row * (max(ds.block_shapes[0][0], 1) + tile)
                            + 2 * out_bytes)


def progress(total: int, desc: str, quiet: bool) -> tqdm:
    """The progress bar of a pass over ``total`` windows."""
    return tqdm(total=total, unit="win", desc=desc, disable=quiet, leave=False)
