"""Random convolutional features (MOSAIKS; Rolf et al., Nature Communications 2021).

No training: ``K = n_features // 2`` patches of ``patch x patch x C`` pixels are drawn at
random from unlabelled tiles and ZCA-whitened (the whitening matrix is fitted on a larger
sample of random patches, with a small regulariser); the whitened patches, scaled to unit
norm, are the filters. A tile's features are, for each filter ``w``, the averages over the
tile's valid positions of ``ReLU(w . z - b)`` and ``ReLU(-w . z - b)``, where ``z`` is the
whitened patch at that position (the same whitening, so filters and image patches live in
the same space, as in Coates & Ng) and ``b`` a constant bias (1: one standard deviation of
a response, since ``z`` is white and ``w`` has unit norm). The convolution is a matrix
product on the tile's patches (im2col), chunked so memory stays bounded.

A position is valid when every pixel of its patch is valid, so invalid pixels never change
the features; a tile with no valid position gets zero features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from geoembed.errors import InputError

WHITENING_PATCHES = 10_000  # random patches the ZCA whitening matrix is fitted on (at most)
CHUNK_ELEMENTS = 1 << 22  # responses (positions x filters) computed at once: 16 MiB float32


def _check_tiles(tiles: np.ndarray, valid: np.ndarray | None, patch: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``tiles`` as float32 (B, C, t, t) and the validity of each patch position (B, t', t')."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 4:
        raise InputError(f"tiles must be (B, C, t, t); got shape {tiles.shape}")
    h, w = tiles.shape[2:]
    if not 1 <= patch <= min(h, w):
        raise InputError(f"patch size {patch} does not fit {h}x{w} tiles")
    if valid is None:
        pos_ok = np.ones((len(tiles), h - patch + 1, w - patch + 1), dtype=bool)
    else:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != (tiles.shape[0], h, w):
            raise InputError(f"valid must be (B, t, t) = {(tiles.shape[0], h, w)}; "
                             f"got {valid.shape}")
        pos_ok = sliding_window_view(valid, (patch, patch), axis=(1, 2)).all(axis=(3, 4))
    return tiles.astype(np.float32, copy=False), pos_ok


def _patches(tiles: np.ndarray, patch: int) -> np.ndarray:
    """All patches of ``(b, C, t, t)`` tiles as rows ``(b, t'*t', C*patch*patch)`` (im2col)."""
    win = sliding_window_view(tiles, (patch, patch), axis=(2, 3))  # (b, C, t', t', p, p)
    b, c, hh, ww = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(b, hh * ww, c * patch * patch)


def _draw(tiles: np.ndarray, pos_ok: np.ndarray, patch: int, n: int,
          rng: np.random.Generator) -> np.ndarray:
    """``n`` random patches ``(n, C*patch*patch)`` at valid positions (with replacement only
    when there are fewer valid positions than ``n``)."""
    flat = np.flatnonzero(pos_ok)
    if len(flat) == 0:
        raise InputError(f"no {patch}x{patch} patch of the tiles is entirely valid")
    pick = np.sort(rng.choice(flat, size=n, replace=n > len(flat)))
    b, r, c = np.unravel_index(pick, pos_ok.shape)
    rows = r[:, None, None] + np.arange(patch)[None, :, None]
    cols = c[:, None, None] + np.arange(patch)[None, None, :]
    out = tiles[b[:, None, None], :, rows, cols]  # (n, p, p, C): advanced indices first
    return out.transpose(0, 3, 1, 2).reshape(n, -1).astype(np.float64)


def zca_whitening(patches: np.ndarray, regularizer: float = 1e-2
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ZCA matrix ``W = V (E + eps)^-1/2 V^T`` of patches ``(n, d)``.

    ``eps = regularizer * mean eigenvalue`` keeps near-constant directions from blowing up;
    ``W (x - mean)`` has about the identity covariance on the directions the data fills.
    """
    mean = patches.mean(axis=0)
    centred = patches - mean
    cov = centred.T @ centred / max(len(patches) - 1, 1)
    evals, evecs = np.linalg.eigh(cov)
    evals = np.clip(evals, 0.0, None)
    eps = regularizer * max(float(evals.mean()), 1e-12)
    return mean, (evecs / np.sqrt(evals + eps)) @ evecs.T


@dataclass
class RandomConvFeatures:
    """Fitted random convolutional features; :meth:`fit` draws them, :meth:`transform` applies.

    Attributes:
        filters: ``(K, C, patch, patch)`` float32 whitened random patches of unit norm.
        mean: ``(C*patch*patch,)`` mean patch (centres patches before whitening).
        whitening: ``(d, d)`` symmetric ZCA matrix, ``d = C*patch*patch``.
        bias: the constant ``b`` of ``ReLU(+-w.z - b)``.
    """

    filters: np.ndarray
    mean: np.ndarray
    whitening: np.ndarray
    bias: float = 1.0

    @property
    def n_features(self) -> int:
        return 2 * len(self.filters)

    @property
    def patch(self) -> int:
        return int(self.filters.shape[-1])

    @classmethod
    def fit(cls, tiles: np.ndarray, valid: np.ndarray | None = None, *, n_features: int = 1024,
            patch: int = 3, seed: int = 0, bias: float = 1.0, regularizer: float = 1e-2,
            whitening_patches: int = WHITENING_PATCHES) -> RandomConvFeatures:
        """Draw ``n_features // 2`` filters from random valid patches of normalised tiles.

        Args:
            tiles: ``(B, C, t, t)`` normalised tiles (invalid pixels 0).
            valid: ``(B, t, t)`` validity, or None (all valid).
            n_features: number of output features, even and at least 2.
            patch: filter side in pixels.
            seed: the random draw (the result is deterministic for a seed).
            bias: ``b`` (in units of a response's standard deviation).
            regularizer: ZCA regulariser, relative to the mean eigenvalue.
            whitening_patches: random patches the whitening is fitted on (at most).

        Raises:
            InputError: odd or too small ``n_features``, bad shapes, no valid patch.
        """
        if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) \
                or n_features < 2 or n_features % 2:
            raise InputError(f"n_features must be an even number of at least 2; got {n_features!r}")
        tiles, pos_ok = _check_tiles(tiles, valid, patch)
        rng = np.random.default_rng(seed)
        k = n_features // 2
        sample = _draw(tiles, pos_ok, patch, min(whitening_patches, int(pos_ok.sum())), rng)
        mean, whitening = zca_whitening(sample, regularizer)
        white = (_draw(tiles, pos_ok, patch, k, rng) - mean) @ whitening
        norms = np.linalg.norm(white, axis=1, keepdims=True)
        white = white / np.where(norms > 1e-12, norms, 1.0)
        c = tiles.shape[1]
        return cls(filters=white.reshape(k, c, patch, patch).astype(np.float32),
                   mean=mean, whitening=whitening, bias=float(bias))

    def whiten(self, patches: np.ndarray) -> np.ndarray:
        """Whitened patches ``W (x - mean)`` of patch rows ``(n, d)``."""
        return (np.asarray(patches, dtype=np.float64) - self.mean) @ self.whitening

    def transform(self, tiles: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Features ``(B, n_features)`` float32: the averages over valid positions of
        ``ReLU(w.z - b)`` for the ``K`` filters, then of ``ReLU(-w.z - b)``."""
        tiles, pos_ok = _check_tiles(tiles, valid, self.patch)
        if tiles.shape[1] != self.filters.shape[1]:
            raise InputError(f"tiles have {tiles.shape[1]} bands; the features were fitted on "
                             f"{self.filters.shape[1]}")
        k = len(self.filters)
        # w.z = w.W(x - mean) = g.x - g.mean with g = W w (W symmetric)
        g = self.filters.reshape(k, -1).astype(np.float64) @ self.whitening
        offset = g @ self.mean
        g32 = np.ascontiguousarray(g.T, dtype=np.float32)  # (d, K)
        pos_hi = (offset + self.bias).astype(np.float32)  # ReLU(g.x - (offset + b))
        neg_lo = (offset - self.bias).astype(np.float32)  # ReLU((offset - b) - g.x)
        weight = pos_ok.reshape(len(tiles), -1).astype(np.float32)
        weight /= np.maximum(weight.sum(axis=1, keepdims=True), 1.0)
        out = np.zeros((len(tiles), 2 * k), dtype=np.float32)
        n_pos = weight.shape[1]
        t_step = max(1, CHUNK_ELEMENTS // max(n_pos * k, 1))  # tiles per chunk
        p_step = n_pos if t_step > 1 else max(1, CHUNK_ELEMENTS // k)  # positions (big tiles)
        for s in range(0, len(tiles), t_step):
            cols = _patches(tiles[s:s + t_step], self.patch)  # (b, P, d)
            for q in range(0, n_pos, p_step):
                resp = cols[:, q:q + p_step] @ g32  # (b, P, K)
                tmp = np.empty_like(resp)
                w = weight[s:s + t_step, q:q + p_step]
                np.maximum(np.subtract(resp, pos_hi, out=tmp), 0.0, out=tmp)
                out[s:s + t_step, :k] += np.einsum("bp,bpk->bk", w, tmp)
                np.maximum(np.subtract(neg_lo, resp, out=tmp), 0.0, out=tmp)
                out[s:s + t_step, k:] += np.einsum("bp,bpk->bk", w, tmp)
        return out


def fit_on_tile_sample(sample: np.ndarray, bands: int, tile: int, *, n_features: int = 1024,
                       seed: int = 0) -> RandomConvFeatures:
    """:meth:`RandomConvFeatures.fit` on flattened normalised tiles ``(n, bands*tile*tile)``
    (:func:`geoembed.evaluation.features.random_tile_sample`).

    Such a sample carries no mask; a pixel that is 0 in every band (what normalisation makes
    of an invalid pixel, and almost never a valid one) is taken as invalid.
    """
    tiles = np.asarray(sample).reshape(len(sample), bands, tile, tile)
    return RandomConvFeatures.fit(tiles, (tiles != 0).any(axis=1), n_features=n_features,
                                  seed=seed)


__all__ = ["RandomConvFeatures", "fit_on_tile_sample", "zca_whitening"]
