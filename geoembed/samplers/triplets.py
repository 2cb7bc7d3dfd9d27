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
together by :class:`geoembed.io.tiles.TileReader` (one pass per scene planned from its block
layout), so each compressed block is decoded at most once however many triplets touch it. Same seed,
same triplets, whatever the grouping. The coverage maps and the AOI are in
:mod:`geoembed.samplers.coverage`.

This module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
from rasterio.windows import Window

from geoembed.errors import InputError, RasterError
from geoembed.io.blocks import DEFAULT_MEMORY
from geoembed.io.scenes import Scene, open_scenes
from geoembed.io.tiles import Sink, TileReader, buffer_sink
from geoembed.samplers.coverage import scene_coverage
from geoembed.samplers.positions import TilePositions

ROLES = ("anchor", "neighbor", "distant")
CHUNK = 512
"""Triplets drawn together from one random stream: the unit of determinism."""

_ND_TRIES = 20  # neighbor/distant redraws for one anchor before the anchor is redrawn
_EPS = 1e-9  # tolerance on the nodata fraction


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
        memory: budget in bytes for the pixels read at once (see :mod:`geoembed.io.blocks`).

    Raises:
        InputError: bad options. RasterError: a scene smaller than the tile or without a valid
        window. CRSError: an AOI without CRS, or scenes without CRS with an AOI.
    """

    def __init__(self, scenes: Sequence[Scene], tile_size: int, neighborhood: float, *,
                 max_nodata: float = 0.0, distant_other_scene_prob: float | None = None,
                 aoi: Any = None, max_tries: int = 1000, memory: int = DEFAULT_MEMORY
                 ) -> None:
        self.scenes = list(scenes)
        self.tile_size = int(tile_size)
        self.neighborhood = float(neighborhood)
        self.max_nodata = float(max_nodata)
        self.max_tries = int(max_tries)
        if distant_other_scene_prob is None:
            distant_other_scene_prob = 0.5 if len(self.scenes) > 1 else 0.0
        self.distant_other_scene_prob = float(distant_other_scene_prob)
        _check_options(self)
        self.count = self.scenes[0].count
        self.dtype = np.dtype(self.scenes[0].dtype)
        self.reader = TileReader(self.scenes, self.tile_size, self.max_nodata, memory)
        if aoi is not None:
            # geopandas is slow to import: only with an AOI
            from geoembed.samplers.aoi import aoi_per_scene

            aoi_geoms = aoi_per_scene(aoi, self.scenes)
        else:
            aoi_geoms = [None] * len(self.scenes)
        self._cover = [scene_coverage(s, self.tile_size, self.max_nodata, g)
                       for s, g in zip(self.scenes, aoi_geoms, strict=True)]
        if sum(c.area_anchor for c in self._cover) <= 0:
            raise InputError("the AOI does not overlap the valid area of any scene")
        self._draws = TilePositions(self._cover, self.neighborhood,
                                    self.distant_other_scene_prob)
        if len(self.scenes) == 1:
            c = self._cover[0]
            if (c.hr - 1) ** 2 + (c.wr - 1) ** 2 <= self.neighborhood ** 2:
                s = self.scenes[0]
                raise InputError(
                    f"{s.path}: no tile can be farther than the neighborhood "
                    f"({self.neighborhood:g} px) from an anchor in a {s.width} x {s.height} px "
                    f"scene with {self.tile_size} px tiles; lower --neighborhood or add scenes"
                )

    # ------------------------------------------------------------------ public API

    @property
    def tile_shape(self) -> tuple[int, int, int, int]:
        """Shape of one triplet's pixels: ``(3, C, T, T)``."""
        return (3, self.count, self.tile_size, self.tile_size)

    def draw(self, rng: np.random.Generator) -> tuple[Triplet, np.ndarray]:
        """Draw one triplet and its pixels ``(3, C, T, T)`` (scene dtype) from ``rng``."""
        buf = np.empty((1, *self.tile_shape), dtype=self.dtype)
        pos = self._run_group([(0, 1)], [rng], buffer_sink(buf, 0))
        return _triplet(pos[0]), buf[0]

    def sample(self, n: int, seed: int = 0) -> Iterator[tuple[Triplet, np.ndarray]]:
        """Yield ``n`` triplets with their pixels; the same seed gives the same triplets."""
        for _, pos, buf in self.iter_groups(n, seed, group_chunks=1, keep_pixels=True):
            for i in range(len(pos)):
                yield _triplet(pos[i]), buf[i]

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
        st = _GroupState.empty(sum(c[1] for c in chunks))
        while not st.done.all():
            reads = [r for (off, size), rng in zip(chunks, rngs, strict=True)
                     for r in self._draw_chunk(st, off, size, rng) if len(r[0])]
            if reads:
                t_idx = np.concatenate([idx for idx, _ in reads])
                r_idx = np.concatenate([np.full(len(idx), role) for idx, role in reads])
                p = st.pos[t_idx, r_idx]
                frac = self.reader.fetch(p[:, 0], p[:, 1], p[:, 2], t_idx, r_idx, sink)
                st.done[t_idx, r_idx] = frac <= self.max_nodata + _EPS
            # an anchor that is not valid takes its neighbor and distant with it
            st.done[~st.done[:, 0]] = False
            stuck = st.done[:, 0] & (st.nd_tries > _ND_TRIES) & ~st.done.all(axis=1)
            st.done[stuck] = False
        return st.pos

    def _draw_chunk(self, st: _GroupState, off: int, size: int, rng: np.random.Generator
                    ) -> list[tuple[np.ndarray, int]]:
        """One round for one chunk: redraw what is not done; return ``(triplets, role)`` to read.

        Read: new anchors that passed the AOI check with their neighbor/distant, and
        neighbor/distant redraws of accepted anchors.
        """
        d = st.done[off:off + size]  # a view: anchors redrawn below show through
        if d.all():
            return []
        need_a = ~d[:, 0]
        ia_ok = self._redraw_anchors(st, np.flatnonzero(need_a) + off, rng)
        st.nd_tries[np.flatnonzero(~need_a & ~d.all(axis=1)) + off] += 1
        i_n = np.flatnonzero(need_a | ~d[:, 1]) + off
        if len(i_n):
            a = st.pos[i_n, 0]
            r, c = self._draws.neighbors(rng, a[:, 0], a[:, 1], a[:, 2])
            st.pos[i_n, 1] = np.stack([a[:, 0], r, c], axis=1)
        i_d = np.flatnonzero(need_a | ~d[:, 2]) + off
        if len(i_d):
            i_d, ia_ok = self._redraw_distant(st, i_d, ia_ok, rng)
        keep = st.done[:, 0].copy()
        keep[ia_ok] = True
        return [(ia_ok, 0), (i_n[keep[i_n]], 1), (i_d[keep[i_d]], 2)]

    def _redraw_anchors(self, st: _GroupState, ia: np.ndarray, rng: np.random.Generator
                        ) -> np.ndarray:
        """New anchors for triplets ``ia``; returns those whose center is in the AOI."""
        if not len(ia):
            return ia
        s, r, c, ok = self._draws.anchors(rng, len(ia))
        st.pos[ia, 0] = np.stack([s, r, c], axis=1)
        st.a_tries[ia] += 1
        st.nd_tries[ia] = 0
        if (st.a_tries[ia] > self.max_tries).any():
            self._give_up(st.pos[ia, 0, 0])
        st.done[ia] = False
        return ia[ok]

    def _redraw_distant(self, st: _GroupState, i_d: np.ndarray, ia_ok: np.ndarray,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """New distant tiles for triplets ``i_d``; returns the drawn ones and ``ia_ok`` less
        the anchors with no room for a distant tile in their scene (redrawn next round)."""
        a = st.pos[i_d, 0]
        s, r, c, ok, impossible = self._draws.distant(rng, a[:, 0], a[:, 1], a[:, 2])
        st.pos[i_d, 2] = np.stack([s, r, c], axis=1)
        if impossible.any():
            bad = i_d[impossible]
            ia_ok = np.setdiff1d(ia_ok, bad)
            st.done[bad, 0] = False
        return i_d[ok], ia_ok

    def _give_up(self, scene_idx: np.ndarray) -> None:
        names = sorted({self.scenes[int(s)].path for s in scene_idx})
        raise RasterError(
            f"could not draw a valid triplet in {self.max_tries} tries: "
            f"{self.tile_size} x {self.tile_size} px windows with at most "
            f"{self.max_nodata:.0%} nodata are too rare (last tried in {', '.join(names)}); "
            "lower --tile-size, raise --max-nodata, or check the AOI and the scenes' nodata"
        )


@dataclass
class _GroupState:
    """Triplets of one group being drawn: positions ``(n, 3, [scene, row, col])``, which
    windows are done (valid), anchor draws and neighbor/distant rounds per triplet."""

    pos: np.ndarray
    done: np.ndarray
    a_tries: np.ndarray
    nd_tries: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _GroupState:
        return cls(pos=np.zeros((n, 3, 3), dtype=np.int64), done=np.zeros((n, 3), dtype=bool),
                   a_tries=np.zeros(n, dtype=np.int64), nd_tries=np.zeros(n, dtype=np.int64))


def _check_options(sp: TripletSampler) -> None:
    """Validate a sampler's options and scenes (see :class:`TripletSampler`)."""
    if not sp.scenes:
        raise InputError("no scene given")
    t = sp.tile_size
    if t < 1:
        raise InputError(f"tile size must be at least 1 pixel, got {t}")
    if not sp.neighborhood >= 1:
        raise InputError(f"neighborhood must be at least 1 pixel, got {sp.neighborhood:g}")
    if not 0.0 <= sp.max_nodata <= 1.0:
        raise InputError(f"max nodata must be a fraction in [0, 1], got {sp.max_nodata:g}")
    if sp.max_tries < 1:
        raise InputError("max_tries must be at least 1")
    if len({s.count for s in sp.scenes}) > 1:
        raise RasterError("scenes have different band counts; select the same bands in each")
    for s in sp.scenes:
        if t > s.width or t > s.height:
            raise RasterError(
                f"{s.path}: tile size {t} px is larger than the scene "
                f"({s.width} x {s.height} px); use a smaller --tile-size"
            )
    p = sp.distant_other_scene_prob
    if not 0.0 <= p <= 1.0:
        raise InputError(f"distant-other-scene probability must be in [0, 1], got {p}")
    if p > 0 and len(sp.scenes) < 2:
        raise InputError("a distant tile from another scene needs at least two scenes; "
                         "set --distant-other-scene-prob 0 or add scenes")


def sample_triplets(scenes: Sequence[Scene | str | PathLike], n: int, tile_size: int,
                    neighborhood: float, *, seed: int = 0, bands: Sequence[int] | None = None,
                    allow_no_crs: bool = False, **kwargs: Any
                    ) -> Iterator[tuple[Triplet, np.ndarray]]:
    """Yield ``n`` triplets ``(Triplet, pixels (3, C, T, T))`` from scenes (paths or Scenes).

    Keyword arguments go to :class:`TripletSampler`.
    """
    if all(isinstance(s, Scene) for s in scenes):
        opened = list(scenes)
    else:
        opened = open_scenes([s.path if isinstance(s, Scene) else s for s in scenes], bands,
                             allow_no_crs=allow_no_crs)
    sampler = TripletSampler(opened, tile_size, neighborhood, **kwargs)
    return sampler.sample(n, seed)


def _triplet(p: np.ndarray) -> Triplet:
    return Triplet(*(TileRef(int(p[i, 0]), int(p[i, 1]), int(p[i, 2])) for i in range(3)))


def _check_seed(seed: int) -> int:
    seed = int(seed)
    if seed < 0:
        raise InputError(f"the seed must be a non-negative integer, got {seed}")
    return seed
