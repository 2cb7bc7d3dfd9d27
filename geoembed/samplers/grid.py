"""Sliding-window grids over a scene and a background reader that streams them row by row.

Used by whole-scene inference (``geoembed embed``, ``geoembed segment``): a grid row is
read as one strip (one window read per row, aligned reads instead of one read per tile) in
a background thread while the caller computes on the previous row, so peak memory depends
on the scene's width, not its size.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geoembed.errors import InputError, RasterError
from geoembed.io.scenes import Scene


def grid_offsets(length: int, tile: int, stride: int, cover_end: bool = False) -> list[int]:
    """Offsets 0, stride, 2*stride... of windows of size ``tile`` that fit in ``length``.

    With ``cover_end`` a last window ending exactly at ``length`` is added when the regular
    offsets leave pixels uncovered (for segmentation, which must cover every pixel).
    """
    if tile > length:
        raise RasterError(f"tile size {tile} px is larger than the scene ({length} px)")
    if stride < 1:
        raise InputError("stride must be at least 1 pixel")
    offsets = list(range(0, length - tile + 1, stride))
    if cover_end and offsets[-1] + tile < length:
        offsets.append(length - tile)
    return offsets


@dataclass(frozen=True)
class WindowGrid:
    """A grid of ``tile`` x ``tile`` windows with their top-left offsets."""

    tile: int
    stride: int
    row_offsets: tuple[int, ...]
    col_offsets: tuple[int, ...]

    @classmethod
    def for_scene(cls, scene: Scene, tile: int, stride: int, cover_end: bool = False
                  ) -> WindowGrid:
        if stride > tile and cover_end:
            raise InputError(f"stride {stride} is larger than the tile ({tile}): pixels would be "
                             "skipped")
        return cls(tile, stride,
                   tuple(grid_offsets(scene.height, tile, stride, cover_end)),
                   tuple(grid_offsets(scene.width, tile, stride, cover_end)))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of windows."""
        return (len(self.row_offsets), len(self.col_offsets))

    @property
    def n_windows(self) -> int:
        return len(self.row_offsets) * len(self.col_offsets)

    def window(self, i: int, j: int) -> Window:
        return Window(self.col_offsets[j], self.row_offsets[i], self.tile, self.tile)


@dataclass
class GridRow:
    """One row of windows: pixels ``(n_cols, C, tile, tile)``, validity ``(n_cols, tile, tile)``."""

    index: int
    tiles: np.ndarray
    valid: np.ndarray


def _cut_row(strip: np.ndarray, cols: np.ndarray, tile: int) -> np.ndarray:
    """Windows of ``tile`` columns starting at ``cols`` from a ``(..., tile, W)`` strip."""
    idx = cols[:, None] + np.arange(tile)[None, :]          # (n, tile)
    out = strip[..., idx]                                    # (..., tile, n, tile)
    return np.moveaxis(out, -2, 0)                           # (n, ..., tile, tile)


def read_grid_row(scene: Scene, grid: WindowGrid, i: int) -> GridRow:
    """Read row ``i`` of the grid with one strip read."""
    row = grid.row_offsets[i]
    col0, col1 = grid.col_offsets[0], grid.col_offsets[-1] + grid.tile
    window = Window(col0, row, col1 - col0, grid.tile)
    data, valid = scene.read_with_mask(window)
    cols = np.asarray(grid.col_offsets) - col0
    return GridRow(i, _cut_row(data, cols, grid.tile), _cut_row(valid, cols, grid.tile))


def iter_grid_rows(scene: Scene, grid: WindowGrid, *, prefetch: int = 2,
                   rows: range | None = None) -> Iterator[GridRow]:
    """Yield the grid's rows in order, read ``prefetch`` rows ahead in a background thread.

    The reader uses its own dataset handle (GDAL handles are not shared across threads).
    An exception in the reader is raised in the caller.
    """
    rows = range(grid.shape[0]) if rows is None else rows
    reader_scene = copy.copy(scene)
    reader_scene._ds = None
    reader_scene._pid = None
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for i in rows:
                if stop.is_set():
                    return
                q.put(read_grid_row(reader_scene, grid, i))
            q.put(done)
        except BaseException as exc:  # re-raised in the consumer
            q.put(exc)
        finally:
            reader_scene._ds is not None and reader_scene._ds.close()

    thread = threading.Thread(target=work, name="geoembed-grid-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
