"""Reading the pixels of many ``T x T`` windows of scenes, grouped by horizontal strips.

The triplet sampler decides where tiles go; :class:`TileReader` reads them. Windows of one
scene are sorted by row and cut by strips of at most :data:`STRIP_BYTES`: a strip holding
enough windows is read once and the windows are sliced out of it (so a scene is read about
once however many windows are drawn from it), sparse windows are read one by one. Each
window's nodata fraction is computed from the pixels read, and the pixels of windows with
at most ``max_nodata`` nodata go to a *sink*.

This module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from geoembed.io.scenes import Scene

WINDOW_READ_BYTES = 256 * 1024  # one windowed read costs about a bulk read of this many bytes
STRIP_BYTES = 16 * 2**20  # at most this many bytes per strip read
BATCH = 512  # windows cut out of a strip at once
_EPS = 1e-9  # tolerance on the nodata fraction

Sink = Callable[[np.ndarray, np.ndarray, np.ndarray], None]
"""``sink(triplet_indices, role_indices, tiles (k, C, T, T))`` receives the pixels of valid
windows, each call sorted by (triplet, role)."""


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


def strip_height(scene: Scene) -> int:
    """Rows per strip read: at most :data:`STRIP_BYTES`, whole blocks when they fit."""
    itemsize = np.dtype(scene.dtype).itemsize
    strip_h = max(1, STRIP_BYTES // max(1, scene.width * scene.count * itemsize))
    block_h = scene.dataset.block_shapes[0][0]
    if block_h <= strip_h:
        strip_h -= strip_h % block_h
    return int(strip_h)


def buffer_sink(buf: np.ndarray, start: int) -> Sink:
    """A sink storing tiles into ``buf[triplet - start, role]``."""
    def sink(t: np.ndarray, r: np.ndarray, tiles: np.ndarray) -> None:
        buf[t - start, r] = tiles

    return sink


class TileReader:
    """Read ``tile_size`` windows of ``scenes`` by strips and send the valid ones to a sink.

    Args:
        scenes: opened scenes (same band count and dtype).
        tile_size: window side ``T`` in pixels.
        max_nodata: largest nodata fraction of a window sent to the sink.
    """

    def __init__(self, scenes: Sequence[Scene], tile_size: int, max_nodata: float) -> None:
        self.scenes = list(scenes)
        self.tile_size = int(tile_size)
        self.max_nodata = float(max_nodata)
        self.validity = [PixelValidity.of(s) for s in self.scenes]
        self.strip_h = [strip_height(s) for s in self.scenes]

    def fetch(self, s: np.ndarray, rows: np.ndarray, cols: np.ndarray, t_idx: np.ndarray,
              r_idx: np.ndarray, sink: Sink) -> np.ndarray:
        """Read windows (scene ``s``, top-left ``rows, cols``) of triplets ``t_idx`` and roles
        ``r_idx``; send the valid ones to ``sink``; return each window's nodata fraction."""
        frac = np.zeros(len(s), dtype=np.float64)
        t = self.tile_size
        for si in np.unique(s):
            scene = self.scenes[si]
            bytes_per_px = np.dtype(scene.dtype).itemsize * scene.count
            sel = np.flatnonzero(s == si)
            sel = sel[np.argsort(rows[sel], kind="stable")]
            keys = rows[sel] // self.strip_h[si]
            for part in np.split(sel, np.flatnonzero(np.diff(keys)) + 1):
                r0, r1 = int(rows[part].min()), int(rows[part].max()) + t
                c0, c1 = int(cols[part].min()), int(cols[part].max()) + t
                if len(part) * WINDOW_READ_BYTES >= (r1 - r0) * (c1 - c0) * bytes_per_px:
                    win = Window(c0, r0, c1 - c0, r1 - r0)
                    self._cut_strip(si, win, part, rows, cols, t_idx, r_idx, frac, sink)
                else:
                    for i in part:
                        win = Window(int(cols[i]), int(rows[i]), t, t)
                        data = scene.read(win)
                        valid = self.validity[si].valid(scene, win, data)
                        if valid is not None:
                            frac[i] = 1.0 - valid.mean()
                        self._emit(np.array([i]), frac, t_idx, r_idx, data[None], sink)
        return frac

    def _cut_strip(self, si: int, win: Window, part: np.ndarray, rows: np.ndarray,
                   cols: np.ndarray, t_idx: np.ndarray, r_idx: np.ndarray, frac: np.ndarray,
                   sink: Sink) -> None:
        """Read ``win`` once and cut the windows ``part`` out of it."""
        t = self.tile_size
        scene = self.scenes[si]
        data = scene.read(win)
        valid = self.validity[si].valid(scene, win, data)
        for b in range(0, len(part), BATCH):
            idx = part[b:b + BATCH]  # nearby rows (memory locality)
            # sorted by (triplet, role): a sink writing to a file gets runs
            idx = idx[np.lexsort((r_idx[idx], t_idx[idx]))]
            rr, cc = rows[idx] - win.row_off, cols[idx] - win.col_off
            tiles = sliding_window_view(data, (t, t), axis=(1, 2)).transpose(1, 2, 0, 3, 4)[rr, cc]
            if valid is not None:
                bad = sliding_window_view(~valid, (t, t))[rr, cc]
                frac[idx] = bad.mean(axis=(1, 2))
            self._emit(idx, frac, t_idx, r_idx, tiles, sink)

    def _emit(self, idx: np.ndarray, frac: np.ndarray, t_idx: np.ndarray, r_idx: np.ndarray,
              tiles: np.ndarray, sink: Sink) -> None:
        ok = frac[idx] <= self.max_nodata + _EPS
        if ok.all():
            sink(t_idx[idx], r_idx[idx], tiles)
        elif ok.any():
            sink(t_idx[idx[ok]], r_idx[idx[ok]], tiles[ok])
