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

Modules: ``classes`` (the fixed facts), ``scene`` (the arrays), ``labels`` (points and weak
labels), ``write`` (the files and the command).
"""

from geoembed.synthetic.classes import (
    BANDS,
    CLASS_ID,
    CLASSES,
    CRS,
    FILES,
    LANDCOVER_NODATA,
    NODATA,
    PIXEL_SIZE,
    SPECTRA,
    TILE,
    LandCoverClass,
    classes_table,
)
from geoembed.synthetic.scene import generate_arrays, scene_transform
from geoembed.synthetic.write import generate_sample_data, main

__all__ = [
    "BANDS", "CLASSES", "CLASS_ID", "CRS", "FILES", "LANDCOVER_NODATA", "NODATA", "PIXEL_SIZE",
    "SPECTRA", "TILE", "LandCoverClass", "classes_table", "generate_arrays",
    "generate_sample_data", "main", "scene_transform",
]
