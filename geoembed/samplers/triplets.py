"""Tile2Vec triplet sampling from georeferenced scenes.

A triplet is three ``T x T`` windows (whole pixels, fully inside their scene):

- the **anchor**, uniform over the valid area of all scenes (so scenes are chosen in
  proportion to their valid area), with its center inside the AOI when one is given;
- the **neighbor**, whose center lies within ``neighborhood`` pixels (Euclidean) of the
  anchor's center, uniform over that disc;
- the **distant** tile, from another scene with probability ``distant_other_scene_prob``
  (uniform over that scene's valid area), otherwise from the anchor's scene with its center
  farther than ``neighborhood`` pixels (Euclidean) from the anchor's. When the anchor's scene
  has no room that far from the anchor, the distant tile comes from another scene (or,
  with a single scene, the anchor is redrawn).

A window is *valid* when its nodata fraction is at most ``max_nodata``; invalid windows are
redrawn (rejection sampling, a bounded number of tries). Proposals come from a coarse
coverage map per scene (a decimated read of its mask), so rejection is rare, and the exact
check is done on the pixels read.

Speed: triplets are drawn in chunks of :data:`CHUNK`; the windows of many chunks are read
together, grouped by horizontal strips of each scene (one read per strip instead of one per
window when windows are dense), so a scene is read about once however many triplets are
drawn from it. Same seed, same triplets, whatever the grouping.

This module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
from affine import Affine
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from geoembed.errors import CRSError, InputError, RasterError
from geoembed.io.scenes import Scene

ROLES = ("anchor", "neighbor", "distant")
CHUNK = 512
"""Triplets drawn together from one random stream: the unit of determinism."""

_COVERAGE_CELLS = 256  # coverage map: at most this many cells along a scene's longer side
_ND_TRIES = 20  # neighbor/distant redraws for one anchor before the anchor is redrawn
_INNER_TRIES = 32  # vectorised rejection rounds for one position draw
_WINDOW_READ_BYTES = 256 * 1024  # one windowed read costs about a bulk read of this many bytes
STRIP_BYTES = 16 * 2**20  # at most this many bytes per strip read
_BATCH = 512  # windows cut out of a strip at once

# sink(triplet_indices, role_indices, tiles (k, C, T, T)) receives the pixels of valid windows,
# each call sorted by (triplet, role)
Sink = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


@dataclass(frozen=True)
class TileRef:
    """A window: top-left pixel offset ``(row, col)`` in ``scenes[scene]``."""

    scene: int
    row: int
    col: int

    def window(self, tile_size: int) -> Window:
        """The rasterio window of this tile."""
        return Window(self.col, self.row, tile_size, tile_size)


@dataclass(frozen=True)
class Triplet:
    """Anchor, neighbor and distant tiles."""

    anchor: TileRef
    neighbor: TileRef
    distant: TileRef

    @property
    def tiles(self) -> tuple[TileRef, TileRef, TileRef]:
        return (self.anchor, self.neighbor, self.distant)


@dataclass
class _SceneInfo:
    """What the sampler knows about one scene."""

    hr: int  # number of top-left rows (height - tile + 1)
    wr: int  # number of top-left cols
    cell: int  # coverage cell size in pixels (of top-left space)
    gw: int  # coverage cells per row
    cum_any: np.ndarray | None  # cumulative proposal weights (None: uniform)
    cum_anchor: np.ndarray | None
    area_any: float
    area_anchor: float
    valid_kind: str  # "none" | "finite" | "nodata" | "mask"
    nodata: Any
    strip_h: int
    aoi: Any = None  # shapely geometry in the scene's CRS (prepared)


class TripletSampler:
    """Draw Tile2Vec triplets from scenes (see the module docstring for the rules).

    Args:
        scenes: opened scenes (same band count and dtype).
        tile_size: tile side ``T`` in pixels.
        neighborhood: radius in pixels between anchor and neighbor centers (at least 1).
        max_nodata: largest nodata fraction of a window (0 = fully valid windows only).
        distant_other_scene_prob: probability that the distant tile comes from another scene
            (default 0.5 with several scenes, 0 with one).
        aoi: vector file path or GeoDataFrame/GeoSeries in any CRS; anchors' centers fall
            inside it.
        max_tries: anchor draws per triplet before giving up with an error.

    Raises:
        InputError: bad options. RasterError: a scene smaller than the tile or without a valid
        window. CRSError: an AOI without CRS, or scenes without CRS with an AOI.
    """

    def __init__(self, scenes: Sequence[Scene], tile_size: int, neighborhood: float, *,
                 max_nodata: float = 0.0, distant_other_scene_prob: float | None = None,
                 aoi: Any = None, max_tries: int = 1000) -> None:
        self.scenes = list(scenes)
        if not self.scenes:
            raise InputError("no scene given")
        self.tile_size = int(tile_size)
        self.neighborhood = float(neighborhood)
        self.max_nodata = float(max_nodata)
        self.max_tries = int(max_tries)
        t = self.tile_size
        if t < 1:
            raise InputError(f"tile size must be at least 1 pixel, got {tile_size}")
        if not self.neighborhood >= 1:
            raise InputError(f"neighborhood must be at least 1 pixel, got {neighborhood}")
        if not 0.0 <= self.max_nodata <= 1.0:
            raise InputError(f"max nodata must be a fraction in [0, 1], got {max_nodata}")
        if self.max_tries < 1:
            raise InputError("max_tries must be at least 1")
        counts = {s.count for s in self.scenes}
        if len(counts) > 1:
            raise RasterError("scenes have different band counts; select the same bands in each")
        for s in self.scenes:
            if t > s.width or t > s.height:
                raise RasterError(
                    f"{s.path}: tile size {t} px is larger than the scene "
                    f"({s.width} x {s.height} px); use a smaller --tile-size"
                )
        if distant_other_scene_prob is None:
            distant_other_scene_prob = 0.5 if len(self.scenes) > 1 else 0.0
        p = float(distant_other_scene_prob)
        if not 0.0 <= p <= 1.0:
            raise InputError(f"distant-other-scene probability must be in [0, 1], got {p}")
        if p > 0 and len(self.scenes) < 2:
            raise InputError("a distant tile from another scene needs at least two scenes; "
                             "set --distant-other-scene-prob 0 or add scenes")
        self.distant_other_scene_prob = p
        self.count = self.scenes[0].count
        self.dtype = np.dtype(self.scenes[0].dtype)
        aoi_geoms = _aoi_per_scene(aoi, self.scenes) if aoi is not None else None
        self._info = [self._scene_info(i, s, aoi_geoms[i] if aoi_geoms else None)
                      for i, s in enumerate(self.scenes)]
        self._area_any = np.array([i.area_any for i in self._info])
        self._area_anchor = np.array([i.area_anchor for i in self._info])
        if self._area_anchor.sum() <= 0:
            raise InputError("the AOI does not overlap the valid area of any scene")
        self._hr = np.array([i.hr for i in self._info], dtype=np.int64)
        self._wr = np.array([i.wr for i in self._info], dtype=np.int64)
        self._uniform_any = np.array([i.cum_any is None for i in self._info])
        self._uniform_anchor = np.array([i.cum_anchor is None for i in self._info])
        self._cum_area = np.cumsum(self._area_any)
        if len(self.scenes) == 1:
            info = self._info[0]
            if (info.hr - 1) ** 2 + (info.wr - 1) ** 2 <= self.neighborhood ** 2:
                s = self.scenes[0]
                raise InputError(
                    f"{s.path}: no tile can be farther than the neighborhood "
                    f"({self.neighborhood:g} px) from an anchor in a {s.width} x {s.height} px "
                    f"scene with {t} px tiles; lower --neighborhood or add scenes"
                )

    # ------------------------------------------------------------------ set-up

    def _scene_info(self, index: int, scene: Scene, aoi: Any) -> _SceneInfo:
        t = self.tile_size
        hr, wr = scene.height - t + 1, scene.width - t + 1
        cell = max(1, math.ceil(max(hr, wr) / _COVERAGE_CELLS))
        gh, gw = math.ceil(hr / cell), math.ceil(wr / cell)
        valid_kind, nodata = _valid_kind(scene)
        itemsize = np.dtype(scene.dtype).itemsize
        strip_h = max(1, STRIP_BYTES // max(1, scene.width * scene.count * itemsize))
        block_h = scene.dataset.block_shapes[0][0]
        if block_h <= strip_h:
            strip_h -= strip_h % block_h
        heights = np.minimum(cell, hr - np.arange(gh) * cell)
        widths = np.minimum(cell, wr - np.arange(gw) * cell)
        area = heights[:, None].astype(np.float64) * widths[None, :]
        include = np.ones((gh, gw), dtype=bool)
        if valid_kind != "none":
            include = self._coverage(scene, valid_kind, cell, heights, widths)
            if not include.any():
                raise RasterError(
                    f"{scene.path}: no valid {t} x {t} px window (the scene is nodata "
                    f"everywhere, or its valid area is too small for the tile with "
                    f"--max-nodata {self.max_nodata:g})"
                )
        w_any = np.where(include, area, 0.0).ravel()
        w_anchor = w_any
        prepared = None
        if aoi is not None:
            import shapely
            from rasterio.features import rasterize

            grid_transform = (scene.transform @ Affine.translation(t / 2, t / 2)
                              @ Affine.scale(cell))
            if aoi.is_empty:
                cells = np.zeros((gh, gw), dtype=bool)
            else:
                cells = rasterize([aoi], out_shape=(gh, gw), transform=grid_transform,
                                  all_touched=True, fill=0, default_value=1,
                                  dtype="uint8").astype(bool)
            cells = _dilate(cells)
            w_anchor = np.where(include & cells, area, 0.0).ravel()
            prepared = aoi
            shapely.prepare(prepared)
        uniform_any = valid_kind == "none"
        return _SceneInfo(
            hr=hr, wr=wr, cell=cell, gw=gw,
            cum_any=None if uniform_any else np.cumsum(w_any),
            cum_anchor=None if (uniform_any and aoi is None) else np.cumsum(w_anchor),
            area_any=float(w_any.sum()), area_anchor=float(w_anchor.sum()),
            valid_kind=valid_kind, nodata=nodata, strip_h=int(strip_h), aoi=prepared,
        )

    def _coverage(self, scene: Scene, kind: str, cell: int, heights: np.ndarray,
                  widths: np.ndarray) -> np.ndarray:
        """Coverage cells (top-left space) whose windows may hold a valid window."""
        t = self.tile_size
        mh = min(scene.height, math.ceil(scene.height / cell))
        mw = min(scene.width, math.ceil(scene.width / cell))
        data = None
        if kind == "finite":
            data = scene.dataset.read(list(scene.bands), out_shape=(scene.count, mh, mw))
        valid = scene.read_valid(out_shape=(mh, mw), data=data)
        sy, sx = scene.height / mh, scene.width / mw
        # rough check that some window has few enough nodata pixels (exact when cell == 1)
        kh = t if sy == 1 else max(1, int(t / sy) - 1)
        kw = t if sx == 1 else max(1, int(t / sx) - 1)
        inv = _integral(~valid)
        counts = (inv[kh:, kw:] - inv[:-kh, kw:] - inv[kh:, :-kw] + inv[:-kh, :-kw])
        if not (counts <= self.max_nodata * kh * kw + 1e-9).any():
            return np.zeros((len(heights), len(widths)), dtype=bool)
        # any valid mask cell among those the cell's windows cover (dilated by one cell)
        r0 = np.arange(len(heights)) * cell
        c0 = np.arange(len(widths)) * cell
        mr0 = np.clip(np.floor(r0 / sy).astype(int) - 1, 0, mh)
        mr1 = np.clip(np.floor((r0 + heights - 1 + t - 1) / sy).astype(int) + 2, 0, mh)
        mc0 = np.clip(np.floor(c0 / sx).astype(int) - 1, 0, mw)
        mc1 = np.clip(np.floor((c0 + widths - 1 + t - 1) / sx).astype(int) + 2, 0, mw)
        ok = _integral(valid)
        n = (ok[mr1[:, None], mc1[None, :]] - ok[mr0[:, None], mc1[None, :]]
             - ok[mr1[:, None], mc0[None, :]] + ok[mr0[:, None], mc0[None, :]])
        return n > 0

    # ------------------------------------------------------------------ public API

    @property
    def tile_shape(self) -> tuple[int, int, int, int]:
        """Shape of one triplet's pixels: ``(3, C, T, T)``."""
        return (3, self.count, self.tile_size, self.tile_size)

    def draw(self, rng: np.random.Generator) -> tuple[Triplet, np.ndarray]:
        """Draw one triplet and its pixels ``(3, C, T, T)`` (scene dtype) from ``rng``."""
        buf = np.empty((1, *self.tile_shape), dtype=self.dtype)
        pos = self._run_group([(0, 1)], [rng], _buffer_sink(buf, 0))
        return _triplet(pos[0]), buf[0]

    def sample(self, n: int, seed: int = 0) -> Iterator[tuple[Triplet, np.ndarray]]:
        """Yield ``n`` triplets with their pixels; the same seed gives the same triplets."""
        for start, pos, buf in self.iter_groups(n, seed, group_chunks=1, keep_pixels=True):
            for i in range(len(pos)):
                yield _triplet(pos[i]), buf[i]
            del start

    def iter_groups(self, n: int, seed: int, *, sink: Sink | None = None,
                    group_chunks: int = 64, keep_pixels: bool = False,
                    progress: Callable[[int], None] | None = None
                    ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """Draw ``n`` triplets by groups of chunks (the bulk API used by the triplet store).

        Yields ``(start, positions, pixels)`` per group: ``positions`` is ``(k, 3, 3)`` int64
        ``[triplet, role, (scene, row, col)]`` for triplets ``start .. start + k - 1``;
        ``pixels`` is ``(k, 3, C, T, T)`` when ``keep_pixels`` else None. Pixels of valid
        windows also go to ``sink(triplet_indices, roles, tiles)`` with global triplet
        indices (a window may be sent again when its triplet had to be redrawn; the last
        one wins). ``progress(k)`` is called with the number of triplets finished.
        """
        n = int(n)
        if n < 0:
            raise InputError("the number of triplets must be positive")
        seed = _check_seed(seed)
        n_chunks = math.ceil(n / CHUNK)
        for g0 in range(0, n_chunks, group_chunks):
            chunk_ids = range(g0, min(n_chunks, g0 + group_chunks))
            start = g0 * CHUNK
            chunks = [(k * CHUNK - start, min(CHUNK, n - k * CHUNK)) for k in chunk_ids]
            rngs = [np.random.default_rng([seed, k]) for k in chunk_ids]
            size = sum(c[1] for c in chunks)
            buf = (np.empty((size, *self.tile_shape), dtype=self.dtype)
                   if keep_pixels else None)

            def group_sink(t: np.ndarray, r: np.ndarray, tiles: np.ndarray,
                           _start: int = start, _buf: np.ndarray | None = buf) -> None:
                if _buf is not None:
                    _buf[t, r] = tiles
                if sink is not None:
                    sink(t + _start, r, tiles)

            pos = self._run_group(chunks, rngs, group_sink)
            if progress is not None:
                progress(size)
            yield start, pos, buf

    # ------------------------------------------------------------------ drawing

    def _run_group(self, chunks: list[tuple[int, int]], rngs: list[np.random.Generator],
                   sink: Sink) -> np.ndarray:
        """Draw the triplets of some chunks, reading their windows together, until valid."""
        n = sum(c[1] for c in chunks)
        pos = np.zeros((n, 3, 3), dtype=np.int64)
        done = np.zeros((n, 3), dtype=bool)
        a_tries = np.zeros(n, dtype=np.int64)
        nd_tries = np.zeros(n, dtype=np.int64)
        while not done.all():
            read_t: list[np.ndarray] = []
            read_r: list[np.ndarray] = []
            for (off, size), rng in zip(chunks, rngs, strict=True):
                d = done[off:off + size]
                if d.all():
                    continue
                need_a = ~d[:, 0]
                ia = np.flatnonzero(need_a) + off
                if len(ia):
                    s, r, c, ok_a = self._draw_anchor(rng, len(ia))
                    pos[ia, 0] = np.stack([s, r, c], axis=1)
                    a_tries[ia] += 1
                    nd_tries[ia] = 0
                    if (a_tries[ia] > self.max_tries).any():
                        self._give_up(pos[ia, 0, 0])
                    done[ia] = False
                    ia_ok = ia[ok_a]
                else:
                    ia_ok = ia
                nd_tries[np.flatnonzero(~need_a & ~d.all(axis=1)) + off] += 1
                i_n = np.flatnonzero(need_a | ~d[:, 1]) + off
                if len(i_n):
                    a = pos[i_n, 0]
                    r, c = self._draw_neighbor(rng, a[:, 0], a[:, 1], a[:, 2])
                    pos[i_n, 1] = np.stack([a[:, 0], r, c], axis=1)
                i_d = np.flatnonzero(need_a | ~d[:, 2]) + off
                if len(i_d):
                    a = pos[i_d, 0]
                    s, r, c, ok_d, impossible = self._draw_distant(rng, a[:, 0], a[:, 1],
                                                                   a[:, 2])
                    pos[i_d, 2] = np.stack([s, r, c], axis=1)
                    if impossible.any():
                        # no room for a distant tile in the anchor's scene: redraw the anchor
                        bad = i_d[impossible]
                        ia_ok = np.setdiff1d(ia_ok, bad)
                        done[bad, 0] = False
                    i_d = i_d[ok_d]
                # read: new anchors that passed the AOI check with their neighbor/distant,
                # and neighbor/distant redraws of accepted anchors
                keep = done[:, 0].copy()
                keep[ia_ok] = True
                i_n = i_n[keep[i_n]]
                i_d = i_d[keep[i_d]]
                for idx, role in ((ia_ok, 0), (i_n, 1), (i_d, 2)):
                    if len(idx):
                        read_t.append(idx)
                        read_r.append(np.full(len(idx), role))
            if read_t:
                t_idx = np.concatenate(read_t)
                r_idx = np.concatenate(read_r)
                p = pos[t_idx, r_idx]
                frac = self._fetch(p[:, 0], p[:, 1], p[:, 2], t_idx, r_idx, sink)
                done[t_idx, r_idx] = frac <= self.max_nodata + 1e-9
            # an anchor that is not valid takes its neighbor and distant with it
            done[~done[:, 0]] = False
            stuck = done[:, 0] & (nd_tries > _ND_TRIES) & ~done.all(axis=1)
            done[stuck] = False
        return pos

    def _give_up(self, scene_idx: np.ndarray) -> None:
        names = sorted({self.scenes[int(s)].path for s in scene_idx})
        raise RasterError(
            f"could not draw a valid triplet in {self.max_tries} tries: "
            f"{self.tile_size} x {self.tile_size} px windows with at most "
            f"{self.max_nodata:.0%} nodata are too rare (last tried in {', '.join(names)}); "
            "lower --tile-size, raise --max-nodata, or check the AOI and the scenes' nodata"
        )

    def _draw_in_scenes(self, rng: np.random.Generator, s: np.ndarray, anchor: bool
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform top-left positions over the proposal cells of each scene in ``s``."""
        rows = np.zeros(len(s), dtype=np.int64)
        cols = np.zeros(len(s), dtype=np.int64)
        if not len(s):
            return rows, cols
        uniform = self._uniform_anchor if anchor else self._uniform_any
        if uniform[s].all():  # no coverage map: one vectorised draw for every scene
            return rng.integers(0, self._hr[s]), rng.integers(0, self._wr[s])
        for si in np.unique(s):
            sel = np.flatnonzero(s == si)
            info = self._info[si]
            cum = info.cum_anchor if anchor else info.cum_any
            k = len(sel)
            if cum is None:
                rows[sel] = rng.integers(0, info.hr, k)
                cols[sel] = rng.integers(0, info.wr, k)
                continue
            u = rng.random(k) * cum[-1]
            cell = np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)
            i, j = np.divmod(cell, info.gw)
            h = np.minimum(info.cell, info.hr - i * info.cell)
            w = np.minimum(info.cell, info.wr - j * info.cell)
            rows[sel] = i * info.cell + np.minimum((rng.random(k) * h).astype(np.int64), h - 1)
            cols[sel] = j * info.cell + np.minimum((rng.random(k) * w).astype(np.int64), w - 1)
        return rows, cols

    def _draw_anchor(self, rng: np.random.Generator, k: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if len(self.scenes) == 1:
            s = np.zeros(k, dtype=np.int64)
        else:
            s = rng.choice(len(self.scenes), size=k, p=self._area_anchor / self._area_anchor.sum())
        r, c = self._draw_in_scenes(rng, s, anchor=True)
        ok = np.ones(k, dtype=bool)
        for si in np.unique(s):
            info = self._info[si]
            if info.aoi is None:
                continue
            import shapely

            sel = np.flatnonzero(s == si)
            x, y = self._centers(si, r[sel], c[sel])
            ok[sel] = shapely.intersects_xy(info.aoi, x, y)
        return s, r, c, ok

    def _centers(self, si: int, rows: np.ndarray, cols: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of the centers of windows at ``rows, cols`` in scene ``si``."""
        a, b, c, d, e, f = tuple(self.scenes[si].transform)[:6]
        half = self.tile_size / 2
        px, py = cols + half, rows + half
        return a * px + b * py + c, d * px + e * py + f

    def _draw_neighbor(self, rng: np.random.Generator, s: np.ndarray, ra: np.ndarray,
                       ca: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uniform integer offsets in the disc of radius ``neighborhood``, inside the scene."""
        big = self.neighborhood
        ri = int(math.floor(big))
        lo_r, hi_r = np.maximum(ra - ri, 0), np.minimum(ra + ri, self._hr[s] - 1)
        lo_c, hi_c = np.maximum(ca - ri, 0), np.minimum(ca + ri, self._wr[s] - 1)
        rn, cn = ra.copy(), ca.copy()  # fallback (never reached in practice): the anchor
        pending = np.arange(len(ra))
        for _ in range(_INNER_TRIES):
            if not len(pending):
                break
            r = rng.integers(lo_r[pending], hi_r[pending] + 1)
            c = rng.integers(lo_c[pending], hi_c[pending] + 1)
            ok = (r - ra[pending]) ** 2 + (c - ca[pending]) ** 2 <= big * big
            rn[pending[ok]] = r[ok]
            cn[pending[ok]] = c[ok]
            pending = pending[~ok]
        return rn, cn

    def _draw_distant(self, rng: np.random.Generator, sa: np.ndarray, ra: np.ndarray,
                      ca: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distant tiles: (scene, row, col, drawn, impossible-for-this-anchor)."""
        k = len(sa)
        big2 = self.neighborhood ** 2
        multi = len(self.scenes) > 1
        other = (rng.random(k) < self.distant_other_scene_prob) if multi else np.zeros(k, bool)
        dr = np.maximum(ra, self._hr[sa] - 1 - ra)
        dc = np.maximum(ca, self._wr[sa] - 1 - ca)
        far_empty = dr ** 2 + dc ** 2 <= big2
        impossible = np.zeros(k, dtype=bool)
        if multi:
            other |= far_empty
        else:
            impossible = far_empty
        sd, rd, cd = sa.copy(), ra.copy(), ca.copy()
        ok = np.zeros(k, dtype=bool)
        io = np.flatnonzero(other)
        if len(io):
            sd[io] = self._other_scene(rng, sa[io])
            rd[io], cd[io] = self._draw_in_scenes(rng, sd[io], anchor=False)
            ok[io] = True
        pending = np.flatnonzero(~other & ~impossible)
        for _ in range(_INNER_TRIES):
            if not len(pending):
                break
            r, c = self._draw_in_scenes(rng, sa[pending], anchor=False)
            far = (r - ra[pending]) ** 2 + (c - ca[pending]) ** 2 > big2
            acc = pending[far]
            rd[acc], cd[acc] = r[far], c[far]
            ok[acc] = True
            pending = pending[~far]
        return sd, rd, cd, ok, impossible

    def _other_scene(self, rng: np.random.Generator, sa: np.ndarray) -> np.ndarray:
        """A scene other than ``sa`` for each entry, in proportion to valid area."""
        w, cum = self._area_any, self._cum_area
        # uniform over the total area minus the anchor scene's, skipping that scene's interval
        u = rng.random(len(sa)) * (cum[-1] - w[sa])
        u = np.where(u >= cum[sa] - w[sa], u + w[sa], u)
        j = np.minimum(np.searchsorted(cum, u, side="right"), len(w) - 1)
        return np.where(j == sa, (sa + 1) % len(w), j)  # float rounding at the boundary

    # ------------------------------------------------------------------ reading

    def _fetch(self, s: np.ndarray, rows: np.ndarray, cols: np.ndarray, t_idx: np.ndarray,
               r_idx: np.ndarray, sink: Sink) -> np.ndarray:
        """Read windows, send valid ones to ``sink``; return each window's nodata fraction."""
        frac = np.zeros(len(s), dtype=np.float64)
        t = self.tile_size
        for si in np.unique(s):
            info = self._info[si]
            scene = self.scenes[si]
            itemsize = self.dtype.itemsize * scene.count
            sel = np.flatnonzero(s == si)
            sel = sel[np.argsort(rows[sel], kind="stable")]
            keys = rows[sel] // info.strip_h
            for part in np.split(sel, np.flatnonzero(np.diff(keys)) + 1):
                r0, r1 = int(rows[part].min()), int(rows[part].max()) + t
                c0, c1 = int(cols[part].min()), int(cols[part].max()) + t
                if len(part) * _WINDOW_READ_BYTES >= (r1 - r0) * (c1 - c0) * itemsize:
                    win = Window(c0, r0, c1 - c0, r1 - r0)
                    data = scene.read(win)
                    valid = self._valid(scene, info, win, data)
                    for b in range(0, len(part), _BATCH):
                        idx = part[b:b + _BATCH]  # nearby rows (memory locality)
                        # sorted by (triplet, role): a sink writing to a file gets runs
                        idx = idx[np.lexsort((r_idx[idx], t_idx[idx]))]
                        rr, cc = rows[idx] - r0, cols[idx] - c0
                        tiles = sliding_window_view(data, (t, t), axis=(1, 2)
                                                    ).transpose(1, 2, 0, 3, 4)[rr, cc]
                        if valid is not None:
                            bad = sliding_window_view(~valid, (t, t))[rr, cc]
                            frac[idx] = bad.mean(axis=(1, 2))
                        self._emit(idx, frac, t_idx, r_idx, tiles, sink)
                else:
                    for i in part:
                        win = Window(int(cols[i]), int(rows[i]), t, t)
                        data = scene.read(win)
                        valid = self._valid(scene, info, win, data)
                        if valid is not None:
                            frac[i] = 1.0 - valid.mean()
                        self._emit(np.array([i]), frac, t_idx, r_idx, data[None], sink)
        return frac

    def _emit(self, idx: np.ndarray, frac: np.ndarray, t_idx: np.ndarray, r_idx: np.ndarray,
              tiles: np.ndarray, sink: Sink) -> None:
        ok = frac[idx] <= self.max_nodata + 1e-9
        if ok.all():
            sink(t_idx[idx], r_idx[idx], tiles)
        elif ok.any():
            sink(t_idx[idx[ok]], r_idx[idx[ok]], tiles[ok])

    @staticmethod
    def _valid(scene: Scene, info: _SceneInfo, window: Window, data: np.ndarray
               ) -> np.ndarray | None:
        """Validity of pixels just read (None: all valid)."""
        kind = info.valid_kind
        if kind == "none":
            return None
        if kind == "mask":
            return scene.read_valid(window, data=data)
        valid = np.ones(data.shape[1:], dtype=bool)
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=0)
        if kind == "nodata" and not (isinstance(info.nodata, float) and math.isnan(info.nodata)):
            valid &= (data != info.nodata).all(axis=0)
        return valid


# ---------------------------------------------------------------------- helpers


def sample_triplets(scenes: Sequence[Scene | str | PathLike], n: int, tile_size: int,
                    neighborhood: float, *, seed: int = 0, bands: Sequence[int] | None = None,
                    allow_no_crs: bool = False, **kwargs: Any
                    ) -> Iterator[tuple[Triplet, np.ndarray]]:
    """Yield ``n`` triplets ``(Triplet, pixels (3, C, T, T))`` from scenes (paths or Scenes).

    Keyword arguments go to :class:`TripletSampler`.
    """
    from geoembed.io.scenes import open_scenes

    if all(isinstance(s, Scene) for s in scenes):
        opened = list(scenes)
    else:
        opened = open_scenes([s.path if isinstance(s, Scene) else s for s in scenes], bands,
                             allow_no_crs=allow_no_crs)
    sampler = TripletSampler(opened, tile_size, neighborhood, **kwargs)
    return sampler.sample(n, seed)


def _triplet(p: np.ndarray) -> Triplet:
    return Triplet(*(TileRef(int(p[i, 0]), int(p[i, 1]), int(p[i, 2])) for i in range(3)))


def _buffer_sink(buf: np.ndarray, start: int) -> Sink:
    def sink(t: np.ndarray, r: np.ndarray, tiles: np.ndarray) -> None:
        buf[t - start, r] = tiles

    return sink


def _check_seed(seed: int) -> int:
    seed = int(seed)
    if seed < 0:
        raise InputError(f"the seed must be a non-negative integer, got {seed}")
    return seed


def _valid_kind(scene: Scene) -> tuple[str, Any]:
    """How to tell valid pixels: no mask at all, NaN check, nodata value, or GDAL masks."""
    ds = scene.dataset
    flags = [ds.mask_flag_enums[b - 1] for b in scene.bands]
    is_float = np.issubdtype(np.dtype(scene.dtype), np.floating)
    if all(f == [MaskFlags.all_valid] for f in flags):
        return ("finite" if is_float else "none"), None
    if all(f == [MaskFlags.nodata] for f in flags):
        nodatas = {repr(ds.nodatavals[b - 1]) for b in scene.bands}  # repr: NaN == NaN
        nd = ds.nodatavals[scene.bands[0] - 1]
        if len(nodatas) == 1 and nd is not None:
            return "nodata", np.array(nd).astype(scene.dtype).item()
    return "mask", None


def _integral(a: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column."""
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(a, axis=0, dtype=np.int64), axis=1, out=out[1:, 1:])
    return out


def _dilate(a: np.ndarray) -> np.ndarray:
    """Binary dilation by one cell (3 x 3)."""
    p = np.pad(a, 1)
    out = np.zeros_like(a)
    for dy in range(3):
        for dx in range(3):
            out |= p[dy:dy + a.shape[0], dx:dx + a.shape[1]]
    return out


def _aoi_per_scene(aoi: Any, scenes: Sequence[Scene]) -> list[Any]:
    """The AOI's union reprojected to each scene's CRS."""
    import geopandas as gpd

    if isinstance(aoi, (str, PathLike)):
        from pathlib import Path

        if not Path(aoi).exists():
            raise InputError(f"{aoi}: no such AOI file")
        try:
            gdf = gpd.read_file(aoi)
        except Exception as exc:  # any reader failure is a bad input
            raise InputError(f"{aoi}: not a vector file geopandas can read ({exc})") from None
        name = str(aoi)
    elif isinstance(aoi, (gpd.GeoDataFrame, gpd.GeoSeries)):
        gdf = aoi
        name = "the AOI"
    else:
        raise InputError("aoi must be a vector file path or a GeoDataFrame")
    if len(gdf) == 0:
        raise InputError(f"{name} has no geometry")
    if gdf.crs is None:
        raise CRSError(f"{name} has no CRS; set one (e.g. with ogr2ogr -a_srs) and retry")
    geoms = gdf.geometry if isinstance(gdf, gpd.GeoDataFrame) else gdf
    out = []
    for s in scenes:
        if s.crs is None:
            raise CRSError(f"{s.path} has no CRS, so the AOI cannot be placed on it")
        out.append(geoms.to_crs(s.crs).union_all())
    return out
