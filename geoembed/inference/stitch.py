"""Assembling per-window outputs into an output grid, row by row, with bounded memory.

* :class:`WindowPixelStrips`: one output pixel per window (embeddings); grid rows are
  buffered into strips of whole output blocks and written with a
  :class:`~geoembed.io.geotiff.RasterWriter`.
* :class:`BlendBand` / :func:`blend_rows`: per-pixel outputs of overlapping windows
  averaged with a ``sin^2`` weight (segmentation), so that predictions change continuously
  across window borders; only a band of ``tile`` rows is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geoembed.inference.engine import RowResult
from geoembed.io.geotiff import RasterWriter
from geoembed.samplers.grid import WindowGrid

#: Smallest blending weight (at a window's outermost pixels), relative to the centre's 1.
MIN_WEIGHT = 1e-3


class WindowPixelStrips:
    """One output pixel per window: grid rows buffered into strips of whole output blocks.

    ``add`` takes the rows in order as ``(count, n_cols)`` values; a strip is written to
    ``writer`` when it holds a block row (or the last grid row arrives).
    """

    def __init__(self, writer: RasterWriter, n_rows: int,
                 encode: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        ds = writer.dataset
        self.writer, self.n_rows, self.encode = writer, n_rows, encode
        block_rows = max(1, ds.block_shapes[0][0])
        self.strip = np.empty((ds.count, min(block_rows, n_rows), ds.width), dtype=ds.dtypes[0])
        self.start = 0  # grid row of the strip's first row
        self.next = 0

    def add(self, index: int, values: np.ndarray) -> None:
        if index != self.next:  # pragma: no cover - a bug, not a user error
            raise RuntimeError(f"grid row {index} arrived, {self.next} expected")
        fill = index - self.start
        self.strip[:, fill] = self.encode(values) if self.encode is not None else values
        self.next += 1
        if fill + 1 == self.strip.shape[1] or self.next == self.n_rows:
            self.writer.write(self.strip[:, :fill + 1],
                              Window(0, self.start, self.strip.shape[2], fill + 1))
            self.start = self.next


def blend_weights(tile: int) -> np.ndarray:
    """``(tile, tile)`` float32 weight: ``sin^2`` profile, strictly positive at the edges."""
    i = np.arange(tile, dtype=np.float64)
    w1 = np.sin(np.pi * (i + 0.5) / tile) ** 2
    w1 = np.maximum(w1, MIN_WEIGHT)
    return np.outer(w1, w1).astype(np.float32)


@dataclass
class Block:
    """Finished output rows ``[row, row + h)`` of the whole scene width."""

    row: int
    values: np.ndarray  # (n_out, h, W) blended outputs
    valid: np.ndarray   # (h, W) pixels that some window saw as valid

    @property
    def window(self) -> Window:
        return Window(0, self.row, self.values.shape[2], self.values.shape[1])


class BlendBand:
    """Per-pixel outputs of overlapping windows, averaged with :func:`blend_weights`.

    Only a band of ``tile`` rows is kept: windows are added grid row by grid row, and
    :meth:`pop` hands back the rows that no later window can reach.
    """

    def __init__(self, n_out: int, tile: int, width: int) -> None:
        self.weight = blend_weights(tile)
        self.tile = tile
        self.acc = np.zeros((n_out, tile, width), dtype=np.float32)
        self.wsum = np.zeros((tile, width), dtype=np.float32)
        self.valid = np.zeros((tile, width), dtype=bool)
        self.base = 0  # scene row of the band's first row

    def add(self, row: int, col_offsets: tuple[int, ...], outputs: np.ndarray,
            valid: np.ndarray) -> None:
        """Add a grid row of windows at scene row ``row`` (rows above it must be popped)."""
        if row != self.base:  # pragma: no cover - a bug, not a user error
            raise RuntimeError(f"windows at row {row} added to a band starting at {self.base}")
        t = self.tile
        for j, c in enumerate(col_offsets):
            self.acc[:, :, c:c + t] += outputs[j] * self.weight
            self.wsum[:, c:c + t] += self.weight
            self.valid[:, c:c + t] |= valid[j]

    def pop(self, until: int) -> Block | None:
        """The finished rows above scene row ``until``, removed from the band."""
        n = until - self.base
        if n <= 0:
            return None
        block = Block(self.base, self.acc[:, :n] / self.wsum[:n], self.valid[:n].copy())
        for a in (self.acc, self.wsum, self.valid):  # shift the band up by n rows
            a[..., :-n, :] = a[..., n:, :].copy()
            a[..., -n:, :] = 0
        self.base = until
        return block


def blend_rows(results: Iterator[RowResult], grid: WindowGrid, band: BlendBand, height: int
               ) -> Iterator[Block]:
    """Blend each grid row's per-pixel outputs; yield blocks of finished rows in order."""
    for res in results:
        row = grid.row_offsets[res.index]
        block = band.pop(row)  # rows above this window row are final
        if block is not None:
            yield block
        band.add(row, grid.col_offsets, res.outputs, res.valid)
    block = band.pop(height)
    if block is not None:
        yield block
