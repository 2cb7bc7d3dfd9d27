"""The labels drawn from the true land cover: stratified points, and the weak-label tiles
with one labelled pixel each."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
from affine import Affine
from rasterio.windows import Window, bounds
from shapely import box

from geoembed.io.georef import rowcol_to_xy
from geoembed.synthetic.classes import (
    CLASSES,
    CRS,
    LANDCOVER_NODATA,
    MIN_POINTS_PER_CLASS,
    N_POINTS,
    TILE,
)


def sample_points(rng: np.random.Generator, landcover: np.ndarray,
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


def weak_labels(rng: np.random.Generator, landcover: np.ndarray, transform: Affine
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
