"""Labels: reprojection to the scene, pixel positions, drops counted, classes, grid checks."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point, box

from geoembed.errors import CRSError, LabelError, RasterError
from geoembed.io.georef import rowcol_to_xy, xy_to_rowcol
from geoembed.io.labels import (
    check_same_grid,
    encode_classes,
    raster_pixel_labels,
    vector_pixel_labels,
)
from geoembed.io.scenes import open_scene
from tests.conftest import write_raster


def test_points_in_4326_land_on_their_pixels(make_raster, tmp_path):
    scene = open_scene(make_raster(size=(64, 80), border=4))
    rows = np.array([10, 20, 30, 50, 0, 2])
    cols = np.array([10, 70, 33, 5, 0, 40])
    x, y = rowcol_to_xy(scene.transform, rows, cols)
    pts = gpd.GeoDataFrame({"cls": ["a", "b", "a", "b", "a", "b"]},
                           geometry=[Point(a, b) for a, b in zip(x, y, strict=True)],
                           crs=scene.crs).to_crs("EPSG:4326")
    path = tmp_path / "pts.gpkg"
    pts.to_file(path)
    out = vector_pixel_labels(path, scene, "cls")
    # the last two are on the nodata border
    assert out.n_nodata == 2 and out.n_outside == 0
    np.testing.assert_array_equal(out.rows, rows[:4])
    np.testing.assert_array_equal(out.cols, cols[:4])
    assert out.labels.tolist() == ["a", "b", "a", "b"]


def test_outside_and_polygons(make_raster):
    scene = open_scene(make_raster(size=(64, 64)))
    left, bottom, right, top = scene.dataset.bounds
    poly = box(left + 100, top - 200, left + 200, top - 100)  # pixels rows 10-20, cols 10-20
    far = Point(left - 5000, top + 5000)
    gdf = gpd.GeoDataFrame({"c": [1, 2]}, geometry=[poly, far], crs=scene.crs)
    out = vector_pixel_labels(gdf, scene, "c", polygon_samples=25, seed=1)
    assert out.n_outside == 1 and out.n_input == 26 and len(out) == 25
    assert (out.rows >= 10).all() and (out.rows < 20).all()
    assert (out.cols >= 10).all() and (out.cols < 20).all()
    # each label is the pixel holding one of the 25 points drawn in the polygon (rasterio's
    # index), all from feature 0 with its value
    pts = gdf.geometry.iloc[:1].sample_points(size=25, rng=1).explode(index_parts=False)
    expected = sorted(scene.dataset.index(p.x, p.y) for p in pts)
    assert sorted(zip(out.rows.tolist(), out.cols.tolist(), strict=True)) == expected
    assert out.labels.tolist() == [1] * 25 and out.source_index.tolist() == [0] * 25


def test_errors(make_raster):
    scene = open_scene(make_raster(size=(32, 32)))
    gdf = gpd.GeoDataFrame({"c": [1]}, geometry=[Point(0, 0)], crs="EPSG:4326")
    with pytest.raises(LabelError, match="no column 'x'.*available columns: c"):
        vector_pixel_labels(gdf, scene, "x")
    with pytest.raises(LabelError, match="none of the 1 labels"):
        vector_pixel_labels(gdf, scene, "c")
    with pytest.raises(LabelError, match="only one class"):
        encode_classes(np.array(["a", "a"]))
    nocrs = gpd.GeoDataFrame({"c": [1]}, geometry=[Point(0, 0)])
    with pytest.raises(CRSError):
        vector_pixel_labels(nocrs, scene, "c")
    codes, classes = encode_classes(np.array(["b", "a", "b"]))
    assert classes == ["a", "b"] and codes.tolist() == [1, 0, 1]


def test_label_raster_grid(make_raster, tmp_path):
    scene = open_scene(make_raster(size=(32, 40), border=2))
    lab = np.full((1, 32, 40), 255, np.uint8)
    lab[0, 5:10, 5:10] = 3
    lab[0, 0:2, 0:2] = 1  # on scene nodata: dropped
    path = write_raster(tmp_path / "lab.tif", lab, nodata=255)
    out = raster_pixel_labels(path, scene)
    assert len(out) == 25 and set(out.labels.tolist()) == {3} and out.n_nodata == 4
    assert out.n_input == 29  # 25 + the 4 on nodata
    rows, cols = np.mgrid[5:10, 5:10]
    np.testing.assert_array_equal(out.rows, rows.ravel())
    np.testing.assert_array_equal(out.cols, cols.ravel())
    # a random subset keeps labelled pixels only
    sub = raster_pixel_labels(path, scene, max_labels=7, seed=3)
    assert len(sub) == 7 and set(zip(sub.rows.tolist(), sub.cols.tolist(), strict=True)) <= set(
        zip(out.rows.tolist(), out.cols.tolist(), strict=True))
    bad = write_raster(tmp_path / "bad.tif", lab[:, :30], nodata=255)
    with pytest.raises(RasterError, match="not on the scene's grid"):
        check_same_grid(scene, open_scene(bad))


def test_pixel_map_round_trip_matches_rasterio(make_raster):
    """Pixel centres map to rasterio's ``xy``; map points map back to rasterio's ``index``,
    including points on a pixel's top-left corner (they belong to that pixel)."""
    scene = open_scene(make_raster(size=(30, 40)))
    ds = scene.dataset
    rows, cols = np.array([0, 7, 29, 12]), np.array([0, 39, 3, 20])
    x, y = rowcol_to_xy(scene.transform, rows, cols)
    assert list(zip(x, y, strict=True)) == [ds.xy(r, c) for r, c in zip(rows, cols, strict=True)]
    assert x[1] == 500_000 + 39.5 * 10 and y[1] == 4_200_000 - 7.5 * 10
    r2, c2 = xy_to_rowcol(scene.transform, x, y)
    np.testing.assert_array_equal(r2, rows)
    np.testing.assert_array_equal(c2, cols)
    # corners and a point outside the scene (negative row, column past the right edge)
    xs = np.array([500_000.0, 500_010.0, 500_405.0])
    ys = np.array([4_200_000.0, 4_199_990.0, 4_200_005.0])
    r3, c3 = xy_to_rowcol(scene.transform, xs, ys)
    assert r3.tolist() == [0, 1, -1] and c3.tolist() == [0, 1, 40]
