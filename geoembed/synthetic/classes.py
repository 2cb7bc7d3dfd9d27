"""The sample data's fixed facts: grid, files, land-cover classes, component spectra."""

from __future__ import annotations

from dataclasses import dataclass

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


def classes_table() -> list[dict]:
    """The content of ``classes.json``."""
    return [{"id": c.id, "name": c.name, "crop": c.crop, "texture_pair": c.texture_pair,
             "color": c.color} for c in CLASSES]
