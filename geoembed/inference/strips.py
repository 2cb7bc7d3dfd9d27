"""Read a window grid row by row: one strip read per row, in a background thread (torch-free).

A grid row is read as one strip (an aligned read instead of one read per window) and cut
into its windows; a background thread reads ``prefetch`` rows ahead while the caller
computes on the previous row, so peak memory depends on the scene's width, not its size.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geoembed.io.scenes import Scene
from geoembed.samplers.grid import WindowGrid


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

    The reader uses its own dataset handle (GDAL handles are not shared across threads):
    a copy of the scene, which ``Scene.__getstate__`` leaves without one (it opens its own
    on first read). An exception in the reader is raised in the caller.
    """
    rows = range(grid.shape[0]) if rows is None else rows
    reader_scene = copy.copy(scene)
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
            reader_scene.close()

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
