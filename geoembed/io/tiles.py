"""Reading the pixels of many ``T x T`` windows of scenes, block by block.

The triplet sampler decides where tiles go; :class:`TileReader` reads them. The windows of
one scene are read in one pass planned from the file's block layout
(:func:`geoembed.io.blocks.plan_passes`): every compressed block is decoded at most once,
and the pixels held at once stay within a memory budget whatever the scene's size; the
scene's handle is closed after its pass. Each window's nodata fraction is computed from the
pixels read, and the pixels of windows with at most ``max_nodata`` nodata go to a *sink*.

This module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from geoembed.io.blocks import (
    DEFAULT_MEMORY,
    GDAL_CACHE_BYTES,
    BlockLayout,
    Pass,
    buffer_shape,
    plan_passes,
)
from geoembed.io.scenes import Scene, read_errors

# GDAL decodes the blocks of one read on all cores: a whole 8192^2 x 4 512-tiled deflate scene
# read in 3 passes took 1.11 s with ALL_CPUS, 1.16 s with one thread (mean of 3, 2 shared cores)
GDAL_THREADS = "ALL_CPUS"
BATCH = 512  # windows cut out of a buffer at once
_EPS = 1e-9  # tolerance on the nodata fraction

Sink = Callable[..., None]
"""``sink(triplet_indices, role_indices, tiles (k, C, T, T))`` receives the pixels of valid
windows, each call sorted by (triplet, role); a :class:`TileReader` made with
``validity=True`` also passes the windows' pixel validity ``(k, T, T)`` as a fourth argument."""


@dataclass(frozen=True)
class PixelValidity:
    """How to tell a scene's valid pixels from pixels just read.

    ``kind`` is ``"none"`` (every pixel valid), ``"finite"`` (float scene without mask: NaN
    and inf are invalid), ``"nodata"`` (one nodata value for every band, plus the finite check
    for floats) or ``"mask"`` (GDAL masks, read with the scene).
    """

    kind: str
    nodata: Any = None

    @classmethod
    def of(cls, scene: Scene) -> PixelValidity:
        """The cheapest exact rule for ``scene``."""
        ds = scene.dataset
        flags = [ds.mask_flag_enums[b - 1] for b in scene.bands]
        is_float = np.issubdtype(np.dtype(scene.dtype), np.floating)
        if all(f == [MaskFlags.all_valid] for f in flags):
            return cls("finite" if is_float else "none")
        if all(f == [MaskFlags.nodata] for f in flags):
            nodatas = {repr(ds.nodatavals[b - 1]) for b in scene.bands}  # repr: NaN == NaN
            nd = ds.nodatavals[scene.bands[0] - 1]
            if len(nodatas) == 1 and nd is not None:
                return cls("nodata", np.array(nd).astype(scene.dtype).item())
        return cls("mask")

    def valid(self, scene: Scene, window: Window, data: np.ndarray) -> np.ndarray | None:
        """Validity ``(h, w)`` of ``data`` read from ``window`` (None: all valid)."""
        if self.kind == "none":
            return None
        if self.kind == "mask":
            return scene.read_valid(window, data=data)
        valid = np.ones(data.shape[1:], dtype=bool)
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=0)
        nan_nodata = isinstance(self.nodata, float) and math.isnan(self.nodata)
        if self.kind == "nodata" and not nan_nodata:
            valid &= (data != self.nodata).all(axis=0)
        return valid


def buffer_sink(buf: np.ndarray, start: int) -> Sink:
    """A sink storing tiles into ``buf[triplet - start, role]``."""
    def sink(t: np.ndarray, r: np.ndarray, tiles: np.ndarray) -> None:
        buf[t - start, r] = tiles

    return sink


class TileReader:
    """Read ``tile_size`` windows of ``scenes`` block by block and send the valid ones to a sink.

    Args:
        scenes: opened scenes (same band count and dtype).
        tile_size: window side ``T`` in pixels.
        max_nodata: largest nodata fraction of a window sent to the sink.
        memory: budget in bytes for the pixels held at once by a scene's pass.
        validity: also send each window's pixel validity ``(k, T, T)`` to the sink.
    """

    def __init__(self, scenes: Sequence[Scene], tile_size: int, max_nodata: float,
                 memory: int = DEFAULT_MEMORY, *, validity: bool = False) -> None:
        self.scenes = list(scenes)
        self.tile_size = int(tile_size)
        self.max_nodata = float(max_nodata)
        self.memory = int(memory)
        self.with_validity = bool(validity)
        self.validity = [PixelValidity.of(s) for s in self.scenes]
        self.reads = 0  # rasterio reads so far (for tests and profiles)

    def fetch(self, s: np.ndarray, rows: np.ndarray, cols: np.ndarray, t_idx: np.ndarray,
              r_idx: np.ndarray, sink: Sink) -> np.ndarray:
        """Read windows (scene ``s``, top-left ``rows, cols``) of triplets ``t_idx`` and roles
        ``r_idx``; send the valid ones to ``sink``; return each window's nodata fraction."""
        frac = np.zeros(len(s), dtype=np.float64)
        for si in np.unique(s):
            sel = np.flatnonzero(s == si)
            scene = self.scenes[si]
            layout = BlockLayout.of(scene.dataset, scene.bands[0])
            bytes_per_px = np.dtype(scene.dtype).itemsize * scene.count
            storage = self._storage(si, buffer_shape(layout, bytes_per_px, self.tile_size,
                                                     self.memory))
            # the mask kind reads GDAL masks after the pixels: they may need the same blocks
            cache = GDAL_CACHE_BYTES if self.validity[si].kind != "mask" else self.memory // 2
            with rasterio.Env(GDAL_CACHEMAX=cache, GDAL_NUM_THREADS=GDAL_THREADS):
                prev_h = 0
                for p in plan_passes(layout, rows[sel], cols[sel], self.tile_size,
                                     bytes_per_px, self.memory):
                    buf = self._fill(si, p, storage, prev_h)
                    prev_h = p.shape[0]
                    part = sel[p.windows]
                    part = part[np.argsort(rows[part], kind="stable")]  # memory locality
                    if len(part):
                        self._cut(buf, p.origin, part, rows, cols, t_idx, r_idx, frac, sink)
            del storage
            scene.close()  # nothing per scene is kept between passes
        return frac

    def _storage(self, si: int, shape: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """One buffer (pixels, validity) for every pass over scene ``si``."""
        scene = self.scenes[si]
        data = np.empty((scene.count, *shape), dtype=scene.dtype)
        valid = None if self.validity[si].kind == "none" else np.empty(shape, dtype=bool)
        return data, valid

    def _fill(self, si: int, p: Pass, storage: tuple[np.ndarray, np.ndarray | None],
              prev_h: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The buffer of pass ``p`` (a view of ``storage``): the rows kept from the previous
        pass (``prev_h`` rows) move to the top, then the blocks are read."""
        scene, validity = self.scenes[si], self.validity[si]
        h, w = p.shape
        data = storage[0][:, :h, :w]
        valid = None if storage[1] is None else storage[1][:h, :w]
        if p.keep:  # numpy copies through a temporary when the ranges overlap
            data[:, :p.keep] = storage[0][:, prev_h - p.keep:prev_h, :w]
            if valid is not None:
                valid[:p.keep] = storage[1][prev_h - p.keep:prev_h, :w]
        for r in p.reads:
            win = r.window
            rr = slice(r.row, r.row + int(win.height))
            cc = slice(r.col, r.col + int(win.width))
            with read_errors(scene.path, win):  # straight into the buffer: no second copy
                scene.dataset.read(list(scene.bands), window=win, out=data[:, rr, cc])
            if valid is not None:
                valid[rr, cc] = validity.valid(scene, win, data[:, rr, cc])
            self.reads += 1
        return data, valid

    def _cut(self, buf: tuple[np.ndarray, np.ndarray | None], origin: tuple[int, int],
             part: np.ndarray, rows: np.ndarray, cols: np.ndarray, t_idx: np.ndarray,
             r_idx: np.ndarray, frac: np.ndarray, sink: Sink) -> None:
        """Cut the windows ``part`` out of the buffer ``buf`` (scene pixel ``origin``)."""
        t = self.tile_size
        data, valid = buf
        invalid = None if valid is None else ~valid
        for b in range(0, len(part), BATCH):
            idx = part[b:b + BATCH]  # nearby rows (memory locality)
            # sorted by (triplet, role): a sink writing to a file gets runs
            idx = idx[np.lexsort((r_idx[idx], t_idx[idx]))]
            rr, cc = rows[idx] - origin[0], cols[idx] - origin[1]
            tiles = sliding_window_view(data, (t, t), axis=(1, 2)).transpose(1, 2, 0, 3, 4)[rr, cc]
            bad = None
            if invalid is not None:
                bad = sliding_window_view(invalid, (t, t))[rr, cc]
                frac[idx] = bad.mean(axis=(1, 2))
            extra: tuple[np.ndarray, ...] = ()
            if self.with_validity:
                extra = (np.ones((len(idx), t, t), dtype=bool) if bad is None else ~bad,)
            self._emit(idx, frac, t_idx, r_idx, (tiles, *extra), sink)

    def _emit(self, idx: np.ndarray, frac: np.ndarray, t_idx: np.ndarray, r_idx: np.ndarray,
              arrays: tuple[np.ndarray, ...], sink: Sink) -> None:
        ok = frac[idx] <= self.max_nodata + _EPS
        if ok.all():
            sink(t_idx[idx], r_idx[idx], *arrays)
        elif ok.any():
            sink(t_idx[idx[ok]], r_idx[idx[ok]], *(a[ok] for a in arrays))


def _read_clipped(scene: Scene, row: int, col: int, tile: int, data: np.ndarray,
                  valid: np.ndarray) -> None:
    """Read the part of the window at top-left (row, col) inside the scene into ``data``
    ``(C, T, T)`` and ``valid`` ``(T, T)`` (zeros, invalid, stay outside)."""
    rr0, rr1 = max(row, 0), min(row + tile, scene.height)
    cc0, cc1 = max(col, 0), min(col + tile, scene.width)
    if rr1 > rr0 and cc1 > cc0:
        part, ok = scene.read_with_mask(Window(cc0, rr0, cc1 - cc0, rr1 - rr0))
        data[:, rr0 - row:rr1 - row, cc0 - col:cc1 - col] = part
        valid[rr0 - row:rr1 - row, cc0 - col:cc1 - col] = ok


def read_windows(scene: Scene, rows: np.ndarray, cols: np.ndarray, tile: int, *,
                 memory: int = DEFAULT_MEMORY) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(n, C, T, T)`` and validity ``(n, T, T)`` of the windows at top-left ``rows,
    cols``, in their order.

    Windows inside the scene are read in one block-aware pass (:class:`TileReader`: every
    block decoded once); the parts of windows outside the scene are zeros marked invalid.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    n = len(rows)
    data = np.zeros((n, scene.count, tile, tile), dtype=scene.dtype)
    valid = np.zeros((n, tile, tile), dtype=bool)
    inside = ((rows >= 0) & (cols >= 0) & (rows + tile <= scene.height)
              & (cols + tile <= scene.width))
    idx = np.flatnonzero(inside)
    if len(idx):
        def sink(t: np.ndarray, _r: np.ndarray, tiles: np.ndarray, ok: np.ndarray) -> None:
            data[t], valid[t] = tiles, ok

        reader = TileReader([scene], tile, max_nodata=1.0, memory=memory, validity=True)
        zeros = np.zeros(len(idx), dtype=np.int64)
        reader.fetch(zeros, rows[idx], cols[idx], idx, zeros, sink)
    for i in np.flatnonzero(~inside):
        _read_clipped(scene, int(rows[i]), int(cols[i]), tile, data[i], valid[i])
    return data, valid
