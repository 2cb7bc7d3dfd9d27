"""The one augmentation module: the 8 flips / 90-degree rotations of a square (dihedral group),
and radiometric jitter (:func:`radiometric_jitter`).

Every trainer augments through here: the Tile2Vec datasets flip/rotate each tile of a triplet
independently (:func:`random_dihedral_codes` + :func:`dihedral`), the weak-label datasets apply
one random symmetry to an image and its target together (:func:`random_dihedral`).

Codes ``0..7``: bit 2 flips left-right, bits 0-1 then rotate by ``90 * k`` degrees
counter-clockwise (``torch.rot90`` / ``numpy.rot90`` on the last two axes). Code 0 is the
identity. A uniform draw of a code has the same distribution as the Tile2Vec paper's
independent horizontal flip, vertical flip and rotation by 0/90/180/270 degrees.

Random codes come from torch's RNG (or a given ``torch.Generator``), which
:func:`geoembed.trainers.fit.fit` seeds per epoch and DataLoader worker, so that a resumed run
draws the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", torch.Tensor, np.ndarray)

N_DIHEDRAL = 8


def dihedral(x: Array, code: int) -> Array:
    """Apply symmetry ``code`` (``0..7``) to the last two axes of a tensor or NumPy array.

    NumPy arrays come back as views (no copy); tensors as new tensors (torch has no views for
    flips).
    """
    if isinstance(x, np.ndarray):
        if code & 4:
            x = np.flip(x, -1)
        return np.rot90(x, code & 3, axes=(-2, -1))
    if code & 4:
        x = x.flip(-1)
    k = code & 3
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def random_dihedral_codes(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` independent uniform draws of a symmetry code (torch RNG)."""
    return torch.randint(0, N_DIHEDRAL, (n,), generator=generator)


def augment_tiles(tiles: Array, generator: torch.Generator | None = None) -> Array:
    """Flip/rotate each tile of ``(N, ..., T, T)`` independently (a new contiguous array)."""
    if tiles.shape[-1] != tiles.shape[-2]:
        raise ValueError("augmentation by 90-degree rotations needs square tiles")
    codes = random_dihedral_codes(tiles.shape[0], generator).tolist()
    views = [dihedral(t, c) for t, c in zip(tiles, codes, strict=True)]
    return np.stack(views) if isinstance(tiles, np.ndarray) else torch.stack(views)


def random_dihedral(*arrays: Array, generator: torch.Generator | None = None
                    ) -> tuple[Array, ...]:
    """Apply one random symmetry, the same to every array (e.g. an image and its target).

    Returns contiguous tensors / arrays of the inputs' kinds.
    """
    code = int(random_dihedral_codes(1, generator)[0])
    out = [dihedral(a, code) for a in arrays]
    return tuple(np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a.contiguous()
                 for a in out)


def radiometric_jitter(tiles: np.ndarray, strength: float,
                       valid: np.ndarray | None = None,
                       generator: torch.Generator | None = None) -> np.ndarray:
    """Change each normalised tile's brightness and contrast at random (a new array).

    Tile ``k`` of ``(N, C, T, T)`` becomes ``x * (1 + strength * a_k) + strength * b_k``
    with ``a_k, b_k`` uniform in [-1, 1], the same for every band of the tile (so band
    ratios, the spectral shape, are kept), drawn independently per tile from torch's RNG.
    A triplet's tiles then differ in brightness, so an encoder cannot tell neighbors from
    distant tiles by brightness alone. Pixels where ``valid`` (``(N, T, T)``) is False stay
    0 (the value normalisation gives nodata).
    """
    if strength < 0:
        raise ValueError("jitter strength must be >= 0")
    n = tiles.shape[0]
    a, b = (torch.rand(n, generator=generator).mul_(2).sub_(1).numpy() * strength
            for _ in range(2))
    shape = (n,) + (1,) * (tiles.ndim - 1)
    out = tiles * (1 + a.astype(tiles.dtype).reshape(shape)) + b.astype(tiles.dtype).reshape(shape)
    if valid is not None:
        out = np.where(valid[:, None], out, tiles.dtype.type(0))
    return out
