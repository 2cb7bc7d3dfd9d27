"""The scene and its true land cover as arrays: layout of parcels, natural areas and a river,
each class painted with its texture, brightness variation and sensor noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.transform import from_origin

from geoembed.errors import InputError
from geoembed.synthetic.classes import (
    BRIGHTNESS_SIGMA,
    BRIGHTNESS_SPREAD,
    CLASS_ID,
    CLASSES,
    LANDCOVER_NODATA,
    NATURAL_MIX,
    NATURAL_SHARE,
    NODATA,
    NOISE_STD,
    ORIGIN,
    PARCEL_MIX,
    PIXEL_SIZE,
    QUANT,
    SPECTRA,
)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """White noise low-passed with a Gaussian of ``sigma`` px (FFT), scaled to unit std."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    out = np.fft.irfft2(np.fft.rfft2(white) * gain, s=shape)
    return (out - out.mean()) / out.std()


def _quota(rng: np.random.Generator, mix: dict[str, float], n: int) -> list[str]:
    """``n`` class names in the proportions of ``mix`` (largest remainders), shuffled."""
    names = list(mix)
    raw = np.array([mix[k] for k in names]) * n / sum(mix.values())
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: n - counts.sum()]:
        counts[i] += 1
    out = [name for name, c in zip(names, counts, strict=True) for _ in range(c)]
    rng.shuffle(out)
    return out


def _layout(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[str]]:
    """Region id per pixel and each region's class name (parcels, natural areas, river)."""
    yy, xx = np.mgrid[0:size, 0:size]
    # Parcels: horizontal strips 70-200 px high, each cut into fields 60-250 px wide.
    parcel = np.zeros((size, size), np.int32)
    n_parcels = 0
    y0 = 0
    while y0 < size:
        y1 = min(size, y0 + int(rng.integers(70, 201)))
        if size - y1 < 50:
            y1 = size
        x0 = 0
        while x0 < size:
            x1 = min(size, x0 + int(rng.integers(60, 251)))
            if size - x1 < 50:
                x1 = size
            parcel[y0:y1, x0:x1] = n_parcels
            n_parcels += 1
            x0 = x1
        y0 = y1
    classes = _quota(rng, PARCEL_MIX, n_parcels)

    # Natural areas: Voronoi cells (~170 px) on warped coordinates, so edges are irregular.
    n_cells = max(4, round(size * size / 170**2))
    seeds = rng.uniform(0, size, (n_cells, 2))
    wy = yy + 28.0 * _smooth_noise(rng, (size, size), 24.0)
    wx = xx + 28.0 * _smooth_noise(rng, (size, size), 24.0)
    best = np.full((size, size), np.inf)
    cell = np.zeros((size, size), np.int32)
    for i, (sy, sx) in enumerate(seeds):
        d = (wy - sy) ** 2 + (wx - sx) ** 2
        closer = d < best
        best[closer] = d[closer]
        cell[closer] = i
    n_natural = max(1, round(NATURAL_SHARE * n_cells))
    natural_cells = rng.permutation(n_cells)[:n_natural]
    natural_classes = _quota(rng, NATURAL_MIX, n_natural)
    region = parcel.copy()
    for cls_name, c in zip(natural_classes, natural_cells, strict=True):
        region[cell == c] = len(classes)
        classes.append(cls_name)

    # A meandering river, 10-16 px wide, running top to bottom.
    x_center = (0.35 + 0.3 * rng.random()) * size
    amp, period, phase = 0.08 * size, (0.6 + 0.4 * rng.random()) * size, rng.uniform(0, 2 * np.pi)
    wiggle = 12.0 * _smooth_noise(rng, (1, size), 15.0)[0]
    river_x = x_center + amp * np.sin(2 * np.pi * np.arange(size) / period + phase) + wiggle
    half_width = 5.0 + 3.0 * (0.5 + 0.5 * np.sin(np.arange(size) / 37.0))
    river = np.abs(xx - river_x[:, None]) < half_width[:, None]
    region[river] = len(classes)
    classes.append("water")
    return region, classes


def _valid_mask(size: int) -> np.ndarray:
    """Scene footprint: a slanted left edge, a cut bottom-right corner, a small masked hole."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    s = size / 1024.0
    valid = xx >= 90 * s - 0.15 * yy  # slanted western edge (reaches x=0 at y=600)
    valid &= (xx + 1.1 * yy) < 1.85 * size  # cut south-eastern corner
    cy, cx, ry, rx = 0.30 * size, 0.62 * size, 22 * s, 32 * s  # a masked cloud
    valid &= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 > 1.0
    return valid


def _brightness(rng: np.random.Generator, landcover: np.ndarray, valid: np.ndarray
                ) -> np.ndarray:
    """Brightness factor per pixel: smooth (~12 px) variation, same mean and std in every class.

    The variation is much finer than a field and independent of the regions, so a pixel's
    brightness says nothing about which field (hence which class) it belongs to.
    """
    field = _smooth_noise(rng, landcover.shape, BRIGHTNESS_SIGMA)
    out = np.ones(landcover.shape, np.float32)
    for c in CLASSES:
        m = (landcover == c.id) & valid
        if m.sum() < 2:
            continue
        z = (field[m] - field[m].mean()) / field[m].std()
        out[m] = 1.0 + BRIGHTNESS_SPREAD * z
    return out


def _balanced_sizes(rng: np.random.Generator, region: np.ndarray,
                    class_of_region: np.ndarray) -> np.ndarray:
    """Tree / shrub size (2, 3 or 4 px) per region, covering about equal area in each class.

    Keeps the mix of object sizes the same in orchard and shrubland, so that only the
    arrangement (lattice vs. random) differs between them.
    """
    n = len(class_of_region)
    area = np.bincount(region.ravel(), minlength=n)
    sizes = np.array([2, 3, 4])
    k = sizes[rng.integers(0, 3, n)]
    for c in np.unique(class_of_region):
        used = np.zeros(3)
        idx = np.flatnonzero(class_of_region == c)
        for r in idx[np.argsort(-area[idx], kind="stable")]:
            j = int(np.argmin(used + rng.random(3) * 1e-6))
            k[r] = sizes[j]
            used[j] += area[r]
    return k


@dataclass(frozen=True)
class _Canvas:
    """What the class painters need: pixel coordinates, regions and per-region parameters."""

    yy: np.ndarray
    xx: np.ndarray
    region: np.ndarray
    angle: np.ndarray  # stripe orientation (cropland)
    half_period: np.ndarray  # stripe half-period 2-4 -> period 4-8 px (cropland)
    k: np.ndarray  # tree / shrub size 2-4 px, cell 2k (orchard, shrubland)
    phase_u: np.ndarray
    phase_y: np.ndarray
    phase_x: np.ndarray

    @property
    def size(self) -> int:
        return self.region.shape[0]


def _canvas(rng: np.random.Generator, region: np.ndarray, class_of_region: np.ndarray
            ) -> _Canvas:
    """Per-region texture parameters (drawn for every region so the draw order is fixed)."""
    n = len(class_of_region)
    yy, xx = np.mgrid[0:region.shape[0], 0:region.shape[1]]
    angle = np.where(rng.random(n) < 0.7, rng.integers(0, 2, n) * (np.pi / 2),
                     rng.uniform(0, np.pi, n))
    half_period = rng.integers(2, 5, n)
    k = _balanced_sizes(rng, region, class_of_region)
    return _Canvas(yy=yy, xx=xx, region=region, angle=angle, half_period=half_period, k=k,
                   phase_u=rng.uniform(0, 8, n), phase_y=rng.integers(0, 8, n),
                   phase_x=rng.integers(0, 8, n))


def _spectrum(name: str) -> np.ndarray:
    """A component spectrum as a ``(4, 1)`` column."""
    return np.asarray(SPECTRA[name], np.float32)[:, None]


def _water(rng: np.random.Generator, c: _Canvas, m: np.ndarray) -> np.ndarray:
    """Smooth, slight variation."""
    g = 1.0 + 0.05 * _smooth_noise(rng, (c.size, c.size), 6.0)
    return _spectrum("water") * g[m]


def _forest(rng: np.random.Generator, c: _Canvas, m: np.ndarray) -> np.ndarray:
    """Blotchy canopy shading."""
    g = 1.0 + 0.10 * _smooth_noise(rng, (c.size, c.size), 2.5)
    return _spectrum("forest") * g[m]


def _urban(rng: np.random.Generator, c: _Canvas, m: np.ndarray) -> np.ndarray:
    """A street grid of 3 px streets around 18 x 15 px blocks; roofs, some yards."""
    yy, xx = c.yy[m], c.xx[m]
    by, bx = yy // 15, xx // 18
    block_kind = rng.random((c.size // 15 + 1, c.size // 18 + 1))
    block_tone = 1.0 + 0.12 * rng.standard_normal((c.size // 15 + 1, c.size // 18 + 1))
    street = (yy % 15 < 3) | (xx % 18 < 3)
    tone = block_tone[by, bx].astype(np.float32)
    urban = np.where(block_kind[by, bx] < 0.8, _spectrum("roof") * tone, _spectrum("yard"))
    return np.where(street, _spectrum("street"), urban)


def _cropland(rng: np.random.Generator, c: _Canvas, m: np.ndarray) -> np.ndarray:
    """Oriented stripes alternating vegetation / soil, 50/50."""
    r = c.region[m]
    u = c.xx[m] * np.cos(c.angle[r]) + c.yy[m] * np.sin(c.angle[r]) + c.phase_u[r]
    is_veg = (np.floor(u / c.half_period[r]) % 2) == 0
    return np.where(is_veg, _spectrum("veg"), _spectrum("soil"))


def _grassland(rng: np.random.Generator, c: _Canvas, m: np.ndarray) -> np.ndarray:
    """The cropland spectra 50/50, pixel-scale random grain."""
    grain = rng.random((c.size, c.size)) < 0.5
    return np.where(grain[m], _spectrum("veg"), _spectrum("soil"))


def _orchard(rng: np.random.Generator, c: _Canvas, m: np.ndarray) -> np.ndarray:
    """k x k trees on a regular 2k lattice (25 % cover)."""
    r = c.region[m]
    kk, s = c.k[r], 2 * c.k[r]
    tree = (((c.yy[m] + c.phase_y[r]) % s) < kk) & (((c.xx[m] + c.phase_x[r]) % s) < kk)
    return np.where(tree, _spectrum("tree"), _spectrum("dry"))


def _shrubland(rng: np.random.Generator, c: _Canvas, m: np.ndarray) -> np.ndarray:
    """One k x k shrub per 2k x 2k cell at a uniform random offset in [0, k]."""
    r = c.region[m]
    kk, s = c.k[r], 2 * c.k[r]
    py, px = c.yy[m] + c.phase_y[r], c.xx[m] + c.phase_x[r]
    n_cells = c.size // 4 + 3
    off_y = rng.random((n_cells, n_cells))
    off_x = rng.random((n_cells, n_cells))
    cy, cx = py // s, px // s
    oy = np.floor(off_y[cy, cx] * (kk + 1)).astype(np.int64)
    ox = np.floor(off_x[cy, cx] * (kk + 1)).astype(np.int64)
    dy, dx = py % s - oy, px % s - ox
    shrub = (dy >= 0) & (dy < kk) & (dx >= 0) & (dx < kk)
    return np.where(shrub, _spectrum("tree"), _spectrum("dry"))


#: The class painters, in the order they draw from the random generator (fixed: the data
#: must not change).
_PAINTERS = (("water", _water), ("forest", _forest), ("urban", _urban),
             ("cropland", _cropland), ("grassland", _grassland), ("orchard", _orchard),
             ("shrubland", _shrubland))


def _render(rng: np.random.Generator, region: np.ndarray, class_of_region: np.ndarray
            ) -> np.ndarray:
    """Float32 (4, H, W) reflectance of every pixel from its region's class and parameters."""
    canvas = _canvas(rng, region, class_of_region)
    lc = class_of_region[region]
    img = np.zeros((4, *region.shape), np.float32)
    for name, paint in _PAINTERS:
        m = lc == CLASS_ID[name]
        img[:, m] = paint(rng, canvas, m)
    return img


def generate_arrays(size: int = 1024, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The scene ``(4, size, size)`` uint16 (nodata 0) and land cover ``(size, size)`` uint8.

    Land cover is 255 exactly where the scene is nodata. Deterministic for ``(size, seed)``.
    """
    if size < 128:
        raise InputError(f"size must be at least 128 px (got {size})")
    rng = np.random.default_rng(seed)
    region, classes = _layout(rng, size)
    class_of_region = np.array([CLASS_ID[c] for c in classes], np.int64)
    valid = _valid_mask(size)
    landcover = class_of_region[region].astype(np.uint8)
    img = _render(rng, region, class_of_region)
    img *= _brightness(rng, landcover, valid)[None]
    img += rng.normal(0.0, NOISE_STD, img.shape).astype(np.float32)
    img = np.clip(np.round(img / QUANT) * QUANT, QUANT, 10000).astype(np.uint16)
    img[:, ~valid] = NODATA
    landcover[~valid] = LANDCOVER_NODATA
    return img, landcover


def scene_transform() -> Affine:
    """The affine transform of the generated scene (north-up, 2 m pixels)."""
    return from_origin(ORIGIN[0], ORIGIN[1], PIXEL_SIZE, PIXEL_SIZE)
