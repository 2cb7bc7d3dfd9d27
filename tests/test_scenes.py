"""Raster I/O: opening, band selection, validity masks, band statistics, GeoTIFF/COG writing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from geoembed.errors import CRSError, InputError, OutputExistsError, RasterError
from geoembed.io import outputs as outputs_mod
from geoembed.io.geotiff import RasterWriter, write_geotiff
from geoembed.io.scenes import BandStats, band_statistics, normalize, open_scene, open_scenes
from tests.conftest import ORIGIN, PIXEL, UTM_CRS, write_raster


def test_open_scene_and_bands(make_raster):
    path = make_raster("s.tif", bands=4, size=(30, 40))
    s = open_scene(path, bands=[4, 2])
    assert (s.width, s.height, s.count, s.dtype) == (40, 30, 2, "uint16")
    assert s.crs.to_epsg() == 32610 and s.transform.c == ORIGIN[0]
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(s.read(Window(3, 5, 7, 6)),
                                      ds.read([4, 2], window=Window(3, 5, 7, 6)))
    assert s.window_in_bounds(Window(33, 24, 7, 6)) and not s.window_in_bounds(Window(34, 0, 7, 6))
    left, bottom, right, top = s.window_bounds(Window(2, 3, 4, 5))
    assert (left, top) == (ORIGIN[0] + 2 * PIXEL, ORIGIN[1] - 3 * PIXEL)
    assert (right, bottom) == (ORIGIN[0] + 6 * PIXEL, ORIGIN[1] - 8 * PIXEL)
    # a pickled scene (sent to a DataLoader worker) reopens its dataset
    s2 = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(s2.read(Window(0, 0, 4, 4)), s.read(Window(0, 0, 4, 4)))


def test_open_errors(tmp_path, make_raster):
    with pytest.raises(InputError, match="no such file"):
        open_scene(tmp_path / "nope.tif")
    text = tmp_path / "t.tif"
    text.write_text("hello")
    with pytest.raises(RasterError, match="not a raster"):
        open_scene(text)
    nocrs = make_raster("n.tif", crs=None, size=(16, 16))
    with pytest.raises(CRSError, match="--allow-no-crs"):
        open_scene(nocrs)
    assert open_scene(nocrs, allow_no_crs=True).crs is None
    good = make_raster("g.tif", bands=4, size=(16, 16))
    with pytest.raises(InputError, match=r"band\(s\) \[5\] out of range"):
        open_scene(good, bands=[1, 5])
    three = make_raster("three.tif", bands=3, size=(16, 16))
    with pytest.raises(RasterError, match="has 3 bands but"):
        open_scenes([good, three])
    assert len(open_scenes([good, three], bands=[1, 2])) == 2
    with pytest.raises(InputError, match="no scene"):
        open_scenes([])


def test_mask_from_dataset_nodata(make_raster):
    s = open_scene(make_raster("s.tif", size=(20, 20), border=3))
    data, valid = s.read_with_mask(Window(0, 0, 20, 20))
    expected = np.zeros((20, 20), bool)
    expected[3:-3, 3:-3] = True
    np.testing.assert_array_equal(valid, expected)
    assert (data[:, ~valid] == 0).all()
    # decimated read of the mask for coverage maps
    assert s.read_valid(out_shape=(10, 10)).shape == (10, 10)
    # boundless windows: outside the scene is invalid
    v = s.read_valid(Window(-5, 5, 10, 10), boundless=True)
    assert not v[:, :8].any() and v[:, 8:].all()


def test_mask_from_nan_floats(tmp_path):
    data = np.ones((2, 12, 12), np.float32)
    data[1, 2, 3] = np.nan
    data[0, 5, :] = np.inf
    s = open_scene(write_raster(tmp_path / "f.tif", data))  # no nodata declared
    d, valid = s.read_with_mask(Window(0, 0, 12, 12))
    assert not valid[2, 3] and not valid[5].any() and valid.sum() == 144 - 1 - 12


def test_mask_from_internal_mask(tmp_path):
    path = tmp_path / "m.tif"
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=2, dtype="uint8",
                       crs=UTM_CRS, transform=from_origin(*ORIGIN, PIXEL, PIXEL)) as ds:
        ds.write(np.full((2, 16, 16), 9, np.uint8))
        mask = np.full((16, 16), 255, np.uint8)
        mask[4:8, 2:6] = 0
        ds.write_mask(mask)
    s = open_scene(path)
    valid = s.read_valid(Window(0, 0, 16, 16))
    np.testing.assert_array_equal(valid, mask > 0)


def test_band_statistics_known_values(tmp_path):
    # band 1 holds 0..99 repeated, band 2 is 2 * band 1 + 10; a nodata border of 65535
    vals = np.tile(np.arange(100, dtype=np.uint16), 64).reshape(64, 100)
    data = np.stack([vals, 2 * vals + 10]).astype(np.uint16)
    data[:, :2, :] = 65535
    s = open_scene(write_raster(tmp_path / "k.tif", data, nodata=65535))
    # windows as large as the scene: every window holds the same known values
    stats = band_statistics([s], n_windows=4, window_size=128, seed=0)
    assert stats.mean == pytest.approx([49.5, 109.0], abs=1.5)
    assert stats.std == pytest.approx([28.87, 57.74], rel=0.05)
    assert stats.p2 == pytest.approx([2.0, 14.0], abs=1.5)
    assert stats.p98 == pytest.approx([97.0, 204.0], abs=2.0)
    assert BandStats.from_dict(stats.to_dict()) == stats
    empty = write_raster(tmp_path / "e.tif", np.zeros((1, 8, 8), np.uint8), nodata=0)
    with pytest.raises(RasterError, match="no valid pixel"):
        band_statistics([open_scene(empty)], n_windows=2, window_size=8)


def test_normalize():
    stats = BandStats(mean=[10.0, 0.0], std=[2.0, 4.0], p2=[0, 0], p98=[1, 1])
    data = np.array([[[12.0, 10.0]], [[8.0, -4.0]]], dtype=np.float32)  # (2, 1, 2)
    out = normalize(data, stats)
    np.testing.assert_allclose(out, [[[1.0, 0.0]], [[2.0, -1.0]]])
    out = normalize(data, stats.to_dict(), valid=np.array([[True, False]]))
    np.testing.assert_allclose(out, [[[1.0, 0.0]], [[2.0, 0.0]]])


def test_raster_writer_georeferencing(tmp_path):
    path = tmp_path / "out.tif"
    transform = from_origin(*ORIGIN, PIXEL, PIXEL)
    with RasterWriter(path, width=40, height=30, count=2, dtype="float32", crs=UTM_CRS,
                      transform=transform, nodata=-1.0, descriptions=["a", "b"],
                      tags={"model": "x"}) as w:
        w.write(np.ones((2, 10, 40), np.float32), Window(0, 0, 40, 10))
        w.write(np.full((2, 20, 40), 2, np.float32), Window(0, 10, 40, 20))
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 32610 and ds.transform == transform
        assert ds.nodata == -1.0 and ds.descriptions == ("a", "b")
        assert ds.tags()["model"] == "x" and ds.profile["compress"] == "deflate"
        assert ds.read(1)[0, 0] == 1 and ds.read(2)[29, 39] == 2
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_geotiff(path, np.zeros((4, 4), np.uint8), crs=UTM_CRS, transform=transform)
    write_geotiff(path, np.zeros((4, 4), np.uint8), crs=UTM_CRS, transform=transform,
                  overwrite=True)
    with rasterio.open(path) as ds:
        assert ds.count == 1 and ds.width == 4


def test_raster_writer_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "out.tif"
    with pytest.raises(RuntimeError):
        with RasterWriter(path, width=16, height=16, count=1, dtype="uint8", crs=UTM_CRS,
                          transform=from_origin(*ORIGIN, PIXEL, PIXEL)) as w:
            w.write(np.ones((16, 16), np.uint8), Window(0, 0, 16, 16))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_cog_output(tmp_path):
    path = tmp_path / "cog.tif"
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (2, 600, 520)).astype(np.uint8)
    write_geotiff(path, data, crs=UTM_CRS, transform=from_origin(*ORIGIN, PIXEL, PIXEL),
                  nodata=0, descriptions=["x", "y"], cog=True)
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert len(ds.overviews(1)) >= 1
        assert ds.crs.to_epsg() == 32610 and ds.nodata == 0 and ds.descriptions == ("x", "y")
        np.testing.assert_array_equal(ds.read(), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cog.tif"]
    assert outputs_mod.temporary_sibling(path).parent == tmp_path
