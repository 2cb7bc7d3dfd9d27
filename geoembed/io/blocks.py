"""Block-aware reading of many small windows of one raster, within a memory budget.

GeoTIFFs are stored in blocks (512 x 512 tiles in a COG, 256 in many GeoTIFFs, full-width
strips in a striped file), each compressed on its own: a read decodes every block it
touches, whole. Reading 50-px windows one by one from 512-px blocks decodes a block once
per window that touches it (dozens of times). :func:`plan_passes` plans instead one pass
over a scene from its real layout (``dataset.block_shapes``):

- rows are cut into *bands* of whole block rows, as many as the memory budget allows (at
  least one block row); a window belongs to the band holding its bottom row;
- in each band only the blocks touched by some window are read, as runs of consecutive
  blocks (one rasterio read per run: GDAL decodes each block once), into a buffer that also
  keeps the last ``T - 1`` rows of the previous band, so a window crossing two bands is cut
  without reading its upper blocks again;
- when even one block row does not fit the budget (very wide scenes), columns are cut into
  groups of whole blocks overlapping by ``T - 1`` columns (only blocks on a group's edge
  are decoded twice).

Every block is thus decoded at most once per pass (and per column group), and the buffer is
about ``memory`` bytes whatever the scene's size. This module does not import torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

DEFAULT_MEMORY = 128 << 20
"""Default budget in bytes for the pixels held at once by a pass."""

GDAL_CACHE_BYTES = 16 << 20
"""GDAL's block cache while reading by passes: blocks are decoded once, not kept."""


@dataclass(frozen=True)
class BlockLayout:
    """How a raster is stored: its size and the shape of its blocks (strips or tiles)."""

    height: int
    width: int
    block_h: int
    block_w: int

    @classmethod
    def of(cls, dataset: object, band: int = 1) -> BlockLayout:
        """The layout of ``band`` (1-based) of an open rasterio dataset."""
        bh, bw = dataset.block_shapes[band - 1]
        return cls(dataset.height, dataset.width, int(bh), int(bw))


@dataclass(frozen=True)
class Read:
    """One read: scene pixels ``window`` go to buffer rows/columns from ``(row, col)``."""

    window: Window
    row: int
    col: int


@dataclass(frozen=True)
class Pass:
    """One buffer fill of a pass over a scene.

    Attributes:
        origin: scene ``(row, col)`` of the buffer's top-left pixel.
        shape: buffer ``(rows, cols)``.
        keep: buffer rows kept from the previous band (moved to the top before the reads).
        reads: what to read into the buffer.
        windows: indexes of the windows to cut from the buffer once read.
    """

    origin: tuple[int, int]
    shape: tuple[int, int]
    keep: int
    reads: tuple[Read, ...]
    windows: np.ndarray


def band_shape(layout: BlockLayout, bytes_per_px: int, tile: int, memory: int
               ) -> tuple[int, int]:
    """``(rows per band, columns per group)``: whole blocks, the buffer within ``memory``
    bytes (at least one block)."""
    carry = tile - 1
    rows_fit = memory // max(1, layout.width * bytes_per_px) - carry
    if rows_fit >= layout.block_h:
        rows = rows_fit // layout.block_h * layout.block_h
        return min(rows, _round_up(layout.height, layout.block_h)), layout.width
    cols_fit = memory // max(1, (layout.block_h + carry) * bytes_per_px) - carry
    return layout.block_h, max(1, cols_fit // layout.block_w) * layout.block_w


def buffer_shape(layout: BlockLayout, bytes_per_px: int, tile: int, memory: int
                 ) -> tuple[int, int]:
    """The largest ``Pass.shape`` of :func:`plan_passes` (one buffer serves every pass)."""
    band_h, group_w = band_shape(layout, bytes_per_px, tile, memory)
    return (min(layout.height, band_h + tile - 1), min(layout.width, group_w + tile - 1))


def plan_passes(layout: BlockLayout, rows: np.ndarray, cols: np.ndarray, tile: int,
                bytes_per_px: int, memory: int = DEFAULT_MEMORY) -> Iterator[Pass]:
    """The buffer fills that read the ``tile`` x ``tile`` windows at top-left ``rows, cols``.

    Each window index appears in exactly one :class:`Pass`, which holds it whole.
    """
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    band_h, group_w = band_shape(layout, bytes_per_px, tile, memory)
    carry = tile - 1
    group = cols // group_w
    for g in np.unique(group):
        in_g = np.flatnonzero(group == g)
        c0 = int(g) * group_w
        c1 = min(layout.width, c0 + group_w + carry)
        yield from _group_passes(layout, rows[in_g], cols[in_g], in_g, tile, band_h,
                                 (c0, c1))


def _group_passes(layout: BlockLayout, rows: np.ndarray, cols: np.ndarray, idx: np.ndarray,
                  tile: int, band_h: int, span: tuple[int, int]) -> Iterator[Pass]:
    """The passes of one column group ``span`` (``idx``: the windows' global indexes)."""
    carry = tile - 1
    c0, c1 = span
    bottom_band = (rows + carry) // band_h
    top_band = rows // band_h
    prev: tuple[int, int] | None = None  # (band, first buffer row in the scene) of the last fill
    for k in range(int(top_band.min()), int(bottom_band.max()) + 1):
        r0, r1 = k * band_h, min(layout.height, (k + 1) * band_h)
        over = (top_band <= k) & (bottom_band >= k)  # windows with pixels in this band
        if not over.any():
            continue
        first = prev is None or prev[0] != k - 1
        keep = 0 if first else min(carry, r0 - prev[1])
        reads = _band_reads(layout, rows[over], cols[over], tile, (r0, r1), span, keep)
        yield Pass(origin=(r0 - keep, c0), shape=(keep + r1 - r0, c1 - c0), keep=keep,
                   reads=reads, windows=idx[bottom_band == k])
        prev = (k, r0 - keep)


def _band_reads(layout: BlockLayout, rows: np.ndarray, cols: np.ndarray, tile: int,
                band: tuple[int, int], span: tuple[int, int], keep: int) -> tuple[Read, ...]:
    """Reads of the blocks of rows ``band`` and columns ``span`` under the windows (which
    overlap the band): consecutive block rows touched in the same columns are read together,
    one read per run of touched blocks."""
    (r0, r1), (c0, c1) = band, span
    bh, bw = layout.block_h, layout.block_w
    n_r, n_c = -(-(r1 - r0) // bh), -(-(c1 - c0) // bw)
    top = np.clip((rows - r0) // bh, 0, n_r - 1)
    bottom = np.clip((rows + tile - 1 - r0) // bh, 0, n_r - 1)
    left = (cols - c0) // bw
    right = np.minimum((cols + tile - 1 - c0) // bw, n_c - 1)
    # each window marks a rectangle of blocks: a 2-D difference array, summed up
    diff = np.zeros((n_r + 1, n_c + 1), dtype=np.int64)
    for rr, cc, sign in ((top, left, 1), (top, right + 1, -1), (bottom + 1, left, -1),
                         (bottom + 1, right + 1, 1)):
        np.add.at(diff, (rr, cc), sign)
    touched = diff.cumsum(axis=0).cumsum(axis=1)[:n_r, :n_c] > 0
    changes = np.flatnonzero((touched[1:] != touched[:-1]).any(axis=1)) + 1
    reads = []
    for ja, jb in zip([0, *changes.tolist()], [*changes.tolist(), n_r], strict=True):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], touched[ja].astype(np.int8), [0]])))
        top_row, bottom_row = r0 + ja * bh, min(r1, r0 + jb * bh)
        for a, b in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
            col_a, col_b = a * bw, min(c1 - c0, b * bw)
            reads.append(Read(Window(c0 + col_a, top_row, col_b - col_a, bottom_row - top_row),
                              keep + top_row - r0, col_a))
    return tuple(reads)


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step
