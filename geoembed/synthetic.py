"""Generate the bundled synthetic sample data (``sample_data/``) deterministically.

The scene is a 4-band (blue, green, red, nir) uint16 reflectance-like GeoTIFF (0..10000 scale)
in UTM zone 15N with 2 m pixels, made of land-cover patches sized for 50 x 50 px tiles: a
jittered grid of rectangular parcels, irregular (warped Voronoi) natural areas and a river.
Two pairs of classes have the *same per-pixel value distribution* and differ only in spatial
texture, so per-pixel spectra and tile mean/std cannot tell them apart:

* cropland (rows: stripes of vegetation and soil, period 4-8 px, orientation per field) vs.
  grassland (the same two spectra, 50/50, as pixel-scale salt-and-pepper grain);
* orchard (k x k px trees on a regular lattice of spacing 2k over dry soil) vs. shrubland (the
  same k x k shrubs, one per 2k x 2k cell at a random position in the cell: 25 % cover in both).

Water, forest and urban differ spectrally. Brightness varies smoothly at a scale finer than a
field (same mean and spread in every class, so it identifies neither a field nor a class), plus
per-pixel sensor noise.

Run ``python -m geoembed.synthetic [OUT_DIR] [--size N] [--seed S] [--overwrite]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from rasterio.transform import from_origin
from rasterio.windows import Window, bounds
from shapely import box

from geoembed.errors import InputError, OutputExistsError
from geoembed.io.georef import rowcol_to_xy
from geoembed.io.geotiff import write_geotiff

CRS = "EPSG:32615"  # UTM zone 15N (US Midwest)
ORIGIN = (420_000.0, 4_650_000.0)  # top-left corner, metres (central Iowa)
PIXEL_SIZE = 2.0
NODATA = 0
LANDCOVER_NODATA = 255
TILE = 50  # weak-label tile size (px)
BANDS = ("blue", "green", "red", "nir")
N_POINTS = 600
MIN_POINTS_PER_CLASS = 40
NOISE_STD = 40.0  # per-pixel sensor noise, reflectance units
QUANT = 5  # values are multiples of this (keeps the file small; noise dominates anyway)
BRIGHTNESS_SPREAD = 0.05  # std of the brightness factor (same in every class)
BRIGHTNESS_SIGMA = 12.0  # its spatial scale (px): finer than a field, coarser than a texture

FILES = {
    "scene": "scene.tif",
    "landcover": "landcover.tif",
    "classes": "classes.json",
    "points": "points.gpkg",
    "weak_tiles": "weak_tiles.gpkg",
    "weak_points": "weak_points.gpkg",
    "readme": "README.md",
}


@dataclass(frozen=True)
class LandCoverClass:
    id: int
    name: str
    crop: bool
    texture_pair: str | None
    color: str
    description: str


CLASSES: tuple[LandCoverClass, ...] = (
    LandCoverClass(0, "water", False, None, "#2b6cb0",
                   "dark in every band, darkest in NIR; river and lakes, smooth"),
    LandCoverClass(1, "forest", False, None, "#1f5f2a",
                   "dense canopy, low red, moderate NIR, smooth blotchy shading"),
    LandCoverClass(2, "urban", False, None, "#b8b8b8",
                   "bright roofs, paved streets, yards in a blocky street grid"),
    LandCoverClass(3, "cropland", True, "grassland", "#e0c341",
                   "row crops: stripes of green vegetation and soil (50/50), period 4-8 px, "
                   "orientation per field"),
    LandCoverClass(4, "grassland", False, "cropland", "#9acd32",
                   "the cropland spectra (50/50) as pixel-scale random grain"),
    LandCoverClass(5, "orchard", True, "shrubland", "#c0392b",
                   "k x k px trees (k = 2-4) on a regular lattice of spacing 2k over dry soil "
                   "(25 % cover)"),
    LandCoverClass(6, "shrubland", False, "orchard", "#a67c52",
                   "the orchard trees and soil (25 % cover), one k x k shrub per 2k x 2k cell "
                   "at a random position"),
)
CLASS_ID = {c.name: c.id for c in CLASSES}

# Component spectra (blue, green, red, nir), reflectance x 10000.
SPECTRA = {
    "water": (480, 640, 440, 260),
    "forest": (260, 480, 270, 2800),
    "roof": (1750, 1800, 1850, 2100),
    "street": (1050, 1100, 1150, 1350),
    "yard": (500, 800, 600, 3000),
    "veg": (350, 760, 420, 4300),  # cropland / grassland vegetation
    "soil": (900, 1150, 1400, 2300),  # cropland / grassland bare soil
    "tree": (320, 640, 360, 3400),  # orchard / shrubland canopy
    "dry": (1350, 1550, 1800, 2700),  # orchard / shrubland dry soil
}

# Class quotas (fractions of regions) for the two layers.
PARCEL_MIX = {"cropland": 0.44, "orchard": 0.20, "grassland": 0.14, "urban": 0.14,
              "shrubland": 0.08}
NATURAL_MIX = {"forest": 0.38, "shrubland": 0.26, "grassland": 0.22, "water": 0.14}
NATURAL_SHARE = 0.35  # fraction of Voronoi cells that are natural (the rest shows parcels)


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


def _sample_points(rng: np.random.Generator, landcover: np.ndarray,
                   transform: Affine) -> gpd.GeoDataFrame:
    """~N_POINTS labelled pixel centers in EPSG:4326, >= MIN_POINTS_PER_CLASS per class."""
    flat = landcover.ravel()
    counts = np.array([(flat == c.id).sum() for c in CLASSES], np.float64)
    present = counts > 0
    base = np.where(present, MIN_POINTS_PER_CLASS, 0)
    extra = N_POINTS - base.sum()
    share = counts / counts.sum() * max(extra, 0)
    n_per = np.minimum(base + np.floor(share).astype(int), counts.astype(int))
    picks, ids = [], []
    for c in CLASSES:
        if n_per[c.id] == 0:
            continue
        idx = np.flatnonzero(flat == c.id)
        picks.append(np.sort(rng.choice(idx, n_per[c.id], replace=False)))
        ids.append(np.full(n_per[c.id], c.id))
    pix = np.concatenate(picks)
    class_id = np.concatenate(ids)
    order = rng.permutation(len(pix))
    pix, class_id = pix[order], class_id[order]
    rows, cols = np.divmod(pix, landcover.shape[1])
    xs, ys = rowcol_to_xy(transform, rows, cols)
    gdf = gpd.GeoDataFrame(
        {"point_id": np.arange(len(pix), dtype=np.int64),
         "class_id": class_id.astype(np.int64),
         "class": [CLASSES[i].name for i in class_id]},
        geometry=gpd.points_from_xy(xs, ys), crs=CRS)
    return gdf.to_crs("EPSG:4326")


def _weak_labels(rng: np.random.Generator, landcover: np.ndarray, transform: Affine
                 ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """50 x 50 px tiles fully inside the valid area with crop labels; one labelled pixel each."""
    size_y, size_x = landcover.shape
    crop_ids = [c.id for c in CLASSES if c.crop]
    is_crop = np.isin(landcover, crop_ids)
    rows_, cols_, fracs, polys, pts_r, pts_c, pts_label = [], [], [], [], [], [], []
    for r0 in range(0, size_y - TILE + 1, TILE):
        for c0 in range(0, size_x - TILE + 1, TILE):
            lc = landcover[r0:r0 + TILE, c0:c0 + TILE]
            if (lc == LANDCOVER_NODATA).any():
                continue
            crop = is_crop[r0:r0 + TILE, c0:c0 + TILE]
            rows_.append(r0)
            cols_.append(c0)
            fracs.append(float(crop.mean()))
            polys.append(box(*bounds(Window(c0, r0, TILE, TILE), transform)))
            pr, pc = rng.integers(0, TILE, 2)
            pts_r.append(r0 + pr)
            pts_c.append(c0 + pc)
            pts_label.append(int(crop[pr, pc]))
    n = len(polys)
    frac = np.round(np.asarray(fracs), 6)
    tile_id = np.arange(n, dtype=np.int64)
    tiles = gpd.GeoDataFrame(
        {"tile_id": tile_id, "row": np.asarray(rows_, np.int64),
         "col": np.asarray(cols_, np.int64), "crop_fraction": frac,
         "crop": (np.asarray(fracs) >= 0.5).astype(np.int64)},
        geometry=polys, crs=CRS)
    pr, pc = np.asarray(pts_r, np.int64), np.asarray(pts_c, np.int64)
    xs, ys = rowcol_to_xy(transform, pr, pc)
    points = gpd.GeoDataFrame(
        {"tile_id": tile_id, "row": pr, "col": pc,
         "crop": np.asarray(pts_label, np.int64)},
        geometry=gpd.points_from_xy(xs, ys), crs=CRS)
    return tiles, points


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


def classes_table() -> list[dict]:
    """The content of ``classes.json``."""
    return [{"id": c.id, "name": c.name, "crop": c.crop, "texture_pair": c.texture_pair,
             "color": c.color} for c in CLASSES]


def _readme(size: int, seed: int, landcover: np.ndarray, n_points: int,
            tiles: gpd.GeoDataFrame) -> str:
    """The content of ``README.md``: how to regenerate, the files, the classes."""
    lines = [
        "# geoembed sample data (synthetic)",
        "",
        "Generated by `geoembed/synthetic.py`; regenerate with",
        "",
        "```",
        f"python -m geoembed.synthetic sample_data --size {size} --seed {seed} --overwrite",
        "```",
        "",
        "`tests/test_synthetic.py` checks that regenerating reproduces these files.",
        "",
    ]
    lines += _readme_files(size, n_points, len(tiles))
    lines += _readme_classes(landcover, tiles)
    return "\n".join(lines)


def _readme_files(size: int, n_points: int, n_tiles: int) -> list[str]:
    """The README's table of files."""
    return [
        "## Files",
        "",
        "| file | content |",
        "|---|---|",
        f"| `scene.tif` | {size} x {size} px, 4 bands (blue, green, red, nir), uint16 "
        f"reflectance x 10000, {CRS} (UTM 15N), {PIXEL_SIZE:g} m pixels, nodata 0 (slanted "
        "west edge, cut south-east corner, a small masked hole); tiled, deflate |",
        "| `landcover.tif` | true class per pixel (uint8, same grid), 255 where the scene is "
        "nodata; class names in the tags (`CLASS_<id>`) and a colour table |",
        "| `classes.json` | list of `{id, name, crop, texture_pair, color}` |",
        f"| `points.gpkg` | {n_points} labelled pixel centres, EPSG:4326, columns `point_id`, "
        f"`class_id`, `class` (name); stratified, >= {MIN_POINTS_PER_CLASS} per class, "
        "never on nodata |",
        f"| `weak_tiles.gpkg` | {n_tiles} non-overlapping {TILE} x {TILE} px tile "
        f"footprints in {CRS} on the grid starting at pixel (0, 0), tiles touching nodata "
        "dropped; columns `tile_id`, `row`, `col` (pixel offset of the top-left corner), "
        "`crop_fraction`, `crop` (1 if crop_fraction >= 0.5) |",
        "| `weak_points.gpkg` | one labelled pixel centre per weak tile (same `tile_id`) at a "
        f"random position in the tile, {CRS}; columns `tile_id`, `row`, `col`, `crop` "
        "(that pixel's true label) |",
        "",
    ]


def _readme_classes(landcover: np.ndarray, tiles: gpd.GeoDataFrame) -> list[str]:
    """The README's table of classes (with their share of the scene) and the texture pairs."""
    n_valid = int((landcover != LANDCOVER_NODATA).sum())
    lines = [
        "## Classes",
        "",
        "| id | name | crop | texture pair | share of valid pixels | looks like |",
        "|---|---|---|---|---|---|",
    ]
    for c in CLASSES:
        share = (landcover == c.id).sum() / n_valid
        lines.append(f"| {c.id} | {c.name} | {'yes' if c.crop else 'no'} | "
                     f"{c.texture_pair or '-'} | {share:.1%} | {c.description} |")
    crop_share = np.isin(landcover, [c.id for c in CLASSES if c.crop]).sum() / n_valid
    return lines + [
        "",
        f"Crop (cropland + orchard) covers {crop_share:.1%} of the valid pixels; "
        f"{int(tiles['crop'].sum())} of {len(tiles)} weak tiles are labelled crop.",
        "",
        "## Texture-only pairs",
        "",
        "cropland / grassland and orchard / shrubland have the same per-pixel value "
        "distribution (same component spectra in the same proportions, same brightness "
        "variation and noise): per-pixel band values and tile mean / std cannot separate them. "
        "Only the spatial arrangement differs: stripes vs. random grain, and a regular tree "
        "lattice vs. randomly placed shrubs of the same size. A per-pixel classifier is near "
        "chance within each pair; a model that sees spatial context (a CNN on 50 x 50 tiles) "
        "can tell them apart. Water, forest and urban differ spectrally.",
        "",
        f"Brightness varies smoothly (scale ~{BRIGHTNESS_SIGMA:g} px, std "
        f"{BRIGHTNESS_SPREAD:g}, mean 1 in every class, independent of fields); every pixel has "
        f"Gaussian noise (std {NOISE_STD:g}); values are quantised to multiples of {QUANT}.",
        "",
    ]


def generate_sample_data(out_dir: str | os.PathLike, *, size: int = 1024, seed: int = 0,
                         overwrite: bool = False) -> dict[str, Path]:
    """Write the synthetic sample data set into ``out_dir``.

    Args:
        out_dir: Output directory (created if missing; other files in it are left alone).
        size: Scene width and height in pixels (at least 128).
        seed: Random seed; the same ``(size, seed)`` gives the same data.
        overwrite: Replace existing sample-data files in ``out_dir``.

    Returns:
        Paths of the written files, keyed like ``FILES`` (scene, landcover, classes, points,
        weak_tiles, weak_points, readme).

    Raises:
        OutputExistsError: A sample-data file exists in ``out_dir`` and ``overwrite`` is False.
    """
    out = Path(out_dir)
    final = {key: out / name for key, name in FILES.items()}
    existing = [p.name for p in final.values() if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{out} already holds {', '.join(existing)}; "
                                "pass --overwrite to replace them")
    img, landcover = generate_arrays(size, seed)
    transform = scene_transform()
    rng = np.random.default_rng([seed, 1])
    points = _sample_points(rng, landcover, transform)
    tiles, weak_points = _weak_labels(rng, landcover, transform)

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".synthetic-{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_geotiff(tmp / FILES["scene"], img, crs=CRS, transform=transform, nodata=NODATA,
                      descriptions=list(BANDS),
                      tags={"GEOEMBED_SYNTHETIC": f"size={size} seed={seed}",
                            "SCALE": "reflectance x 10000"})
        class_tags = {f"CLASS_{c.id}": c.name for c in CLASSES}
        write_geotiff(tmp / FILES["landcover"], landcover[None], crs=CRS, transform=transform,
                      nodata=LANDCOVER_NODATA, descriptions=["landcover"],
                      tags={**class_tags, "CLASSES": json.dumps(classes_table()),
                            "GEOEMBED_SYNTHETIC": f"size={size} seed={seed}"})
        _write_colormap(tmp / FILES["landcover"])
        (tmp / FILES["classes"]).write_text(json.dumps(classes_table(), indent=2) + "\n")
        points.to_file(tmp / FILES["points"], driver="GPKG", layer="points")
        tiles.to_file(tmp / FILES["weak_tiles"], driver="GPKG", layer="weak_tiles")
        weak_points.to_file(tmp / FILES["weak_points"], driver="GPKG", layer="weak_points")
        (tmp / FILES["readme"]).write_text(_readme(size, seed, landcover, len(points), tiles))
        for key, name in FILES.items():
            os.replace(tmp / name, final[key])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_colormap(path: Path) -> None:
    cmap = {c.id: tuple(int(c.color[i:i + 2], 16) for i in (1, 3, 5)) + (255,) for c in CLASSES}
    cmap[LANDCOVER_NODATA] = (0, 0, 0, 0)
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, cmap)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geoembed.synthetic",
        description="Generate geoembed's synthetic sample data set.")
    parser.add_argument("out_dir", nargs="?", default="sample_data",
                        help="output directory (default: sample_data)")
    parser.add_argument("--size", type=int, default=1024, help="scene size in px (default: 1024)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    try:
        paths = generate_sample_data(args.out_dir, size=args.size, seed=args.seed,
                                     overwrite=args.overwrite)
    except (InputError, OutputExistsError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    for key, path in paths.items():
        print(f"{key:12s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
