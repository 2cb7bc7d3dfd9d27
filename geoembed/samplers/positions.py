"""Where the tiles of a triplet go: anchor, neighbor and distant top-left positions.

Positions only (scene index, top-left row and column); nothing is read here. Anchors are
uniform over the scenes' proposal cells (:mod:`geoembed.samplers.coverage`), scenes chosen in
proportion to their valid area; neighbors uniform over the disc of radius ``neighborhood``
around the anchor; distant tiles from another scene or farther than ``neighborhood``.
Every draw is vectorised rejection sampling from the caller's random generator.

This module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from geoembed.samplers.coverage import SceneCoverage

_INNER_TRIES = 32  # vectorised rejection rounds for one position draw


class TilePositions:
    """Draw tile positions over scenes described by their coverage.

    Args:
        cover: the coverage of each scene.
        neighborhood: radius in pixels between anchor and neighbor (and the least distance
            between anchor and a same-scene distant tile).
        distant_other_scene_prob: probability that a distant tile comes from another scene.
    """

    def __init__(self, cover: Sequence[SceneCoverage], neighborhood: float,
                 distant_other_scene_prob: float) -> None:
        self.cover = list(cover)
        self.neighborhood = float(neighborhood)
        self.distant_other_scene_prob = float(distant_other_scene_prob)
        self._area_any = np.array([c.area_any for c in self.cover])
        self._area_anchor = np.array([c.area_anchor for c in self.cover])
        self._hr = np.array([c.hr for c in self.cover], dtype=np.int64)
        self._wr = np.array([c.wr for c in self.cover], dtype=np.int64)
        self._uniform_any = np.array([c.cum_any is None for c in self.cover])
        self._uniform_anchor = np.array([c.cum_anchor is None for c in self.cover])
        self._cum_area = np.cumsum(self._area_any)

    def in_scenes(self, rng: np.random.Generator, s: np.ndarray, anchor: bool
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
            rows[sel], cols[sel] = self.cover[si].draw(rng, len(sel), anchor)
        return rows, cols

    def anchors(self, rng: np.random.Generator, k: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``k`` anchors: (scene, row, col, center-in-the-AOI)."""
        if len(self.cover) == 1:
            s = np.zeros(k, dtype=np.int64)
        else:
            s = rng.choice(len(self.cover), size=k, p=self._area_anchor / self._area_anchor.sum())
        r, c = self.in_scenes(rng, s, anchor=True)
        ok = np.ones(k, dtype=bool)
        for si in np.unique(s):
            if self.cover[si].aoi is not None:
                sel = np.flatnonzero(s == si)
                ok[sel] = self.cover[si].in_aoi(r[sel], c[sel])
        return s, r, c, ok

    def neighbors(self, rng: np.random.Generator, s: np.ndarray, ra: np.ndarray,
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

    def distant(self, rng: np.random.Generator, sa: np.ndarray, ra: np.ndarray,
                ca: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distant tiles: (scene, row, col, drawn, impossible-for-this-anchor)."""
        k = len(sa)
        big2 = self.neighborhood ** 2
        multi = len(self.cover) > 1
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
            rd[io], cd[io] = self.in_scenes(rng, sd[io], anchor=False)
            ok[io] = True
        pending = np.flatnonzero(~other & ~impossible)
        for _ in range(_INNER_TRIES):
            if not len(pending):
                break
            r, c = self.in_scenes(rng, sa[pending], anchor=False)
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
