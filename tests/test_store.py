"""Triplet store: layout, georeferenced footprints, pixels, determinism, atomicity, validation."""

from __future__ import annotations

import json
import tracemalloc

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from rasterio.windows import Window

from geoembed.errors import InputError, OutputExistsError
from geoembed.io import footprints as footprints_mod
from geoembed.io.scenes import open_scenes
from geoembed.io.store import open_store
from geoembed.samplers.config import TileConfig
from geoembed.samplers.tiling import tile
from geoembed.samplers.triplets import TripletSampler
from tests.conftest import write_raster

META_KEYS = {"format", "geoembed_version", "n_triplets", "tile_size", "neighborhood", "bands",
             "band_count", "dtype", "band_stats", "scenes", "seed", "max_nodata",
             "distant_other_scene_prob", "aoi", "footprints_crs"}


@pytest.fixture
def two_crs(tmp_path, make_raster):
    """Two scenes: UTM 10N with a nodata border, and UTM 11N (another CRS)."""
    a = make_raster("a.tif", size=(80, 96), border=5, seed=1)
    rng = np.random.default_rng(2)
    data = rng.integers(1, 500, (4, 70, 70)).astype(np.uint16)
    b = write_raster(tmp_path / "b.tif", data, crs="EPSG:32611",
                     transform=from_origin(300_000, 4_100_000, 20, 20))
    return a, b


def test_store_layout_pixels_and_footprints(tmp_path, two_crs):
    a, b = two_crs
    out = tmp_path / "store"
    st = tile([a, b], out, n_triplets=120, tile_size=12, neighborhood=15, seed=4, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == ["footprints.gpkg", "meta.json",
                                                     "triplets.npy"]
    arr = np.load(out / "triplets.npy", mmap_mode="r")
    assert arr.shape == (120, 3, 4, 12, 12) and arr.dtype == np.uint16
    assert st.triplets.shape == arr.shape and len(st) == 120 and st.tile_size == 12
    meta = json.loads((out / "meta.json").read_text())
    assert META_KEYS <= set(meta)
    assert meta["format"] == "geoembed-triplets" and meta["bands"] == [1, 2, 3, 4]
    assert meta["scenes"][1]["crs"] == "EPSG:32611" and meta["footprints_crs"] == "EPSG:32610"
    assert meta["scenes"][1]["transform"] == [20.0, 0.0, 300000.0, 0.0, -20.0, 4100000.0]
    assert meta["distant_other_scene_prob"] == 0.5
    assert len(st.band_stats.mean) == 4
    fp = gpd.read_file(out / "footprints.gpkg", layer="footprints")
    assert fp.crs.to_epsg() == 32610 and len(fp) == 360
    assert list(fp.columns[:5]) == ["triplet", "role", "scene", "row", "col"]
    assert fp.role.tolist()[:3] == ["anchor", "neighbor", "distant"]
    assert set(fp.scene) == {0, 1}
    srcs = [rasterio.open(a), rasterio.open(b)]
    for rec in fp.itertuples():
        src = srcs[rec.scene]
        win = Window(rec.col, rec.row, 12, 12)
        # pixels in the store are a direct read of the window
        np.testing.assert_array_equal(arr[rec.triplet, ["anchor", "neighbor", "distant"]
                                          .index(rec.role)], src.read(window=win))
        # the footprint is the window's outline through the transform (reprojected for b)
        left, bottom, right, top = rasterio.windows.bounds(win, src.transform)
        poly = shapely.box(left, bottom, right, top)
        if rec.scene == 1:
            poly = gpd.GeoSeries([poly], crs="EPSG:32611").to_crs("EPSG:32610").iloc[0]
        assert shapely.equals_exact(rec.geometry.normalize(), poly.normalize(), tolerance=1e-6)
    # the pixel under a footprint's centroid belongs to that window (scene 0)
    rec = fp[fp.scene == 0].iloc[0]
    r, c = srcs[0].index(rec.geometry.centroid.x, rec.geometry.centroid.y)
    assert rec.row <= r < rec.row + 12 and rec.col <= c < rec.col + 12
    for s in srcs:
        s.close()


def test_same_seed_same_store_and_matches_sampler(tmp_path, two_crs):
    a, b = two_crs
    kw = dict(n_triplets=600, tile_size=8, neighborhood=10, quiet=True)
    s1 = tile([a, b], tmp_path / "s1", seed=7, **kw)
    s2 = tile([a, b], tmp_path / "s2", seed=7, **kw)
    s3 = tile([a, b], tmp_path / "s3", seed=8, **kw)
    np.testing.assert_array_equal(s1.triplets, s2.triplets)
    assert not np.array_equal(s1.triplets, s3.triplets)
    f1, f2 = s1.footprints(), s2.footprints()
    assert f1.drop(columns="geometry").equals(f2.drop(columns="geometry"))
    # the store holds exactly what the sampler's iterator yields for that seed
    sampler = TripletSampler(open_scenes([a, b]), 8, 10)
    pixels = np.stack([px for _, px in sampler.sample(600, seed=7)])
    np.testing.assert_array_equal(s1.triplets, pixels)


def test_bands_and_max_nodata(tmp_path, make_raster):
    path = make_raster("s.tif", size=(48, 48), border=4)
    st = tile([path], tmp_path / "st", n_triplets=30, tile_size=8, neighborhood=8,
              bands=[3, 1], max_nodata=0.25, quiet=True)
    assert st.triplets.shape == (30, 3, 2, 8, 8) and st.bands == [3, 1]
    with rasterio.open(path) as ds:
        fp = st.footprints()
        rec = fp.iloc[4]
        ref = ds.read([3, 1], window=Window(rec.col, rec.row, 8, 8))
    np.testing.assert_array_equal(st.triplets[rec.triplet, 1], ref)
    assert st.meta["max_nodata"] == 0.25
    # band statistics of the selected bands over the valid pixels (the scene is smaller than
    # a statistics window, so every window is the whole scene: the exact values)
    with rasterio.open(path) as ds:
        inner = ds.read([3, 1])[:, 4:-4, 4:-4].reshape(2, -1).astype(np.float64)
    assert st.band_stats.mean == pytest.approx(inner.mean(axis=1).tolist(), rel=1e-12)
    assert st.band_stats.std == pytest.approx(inner.std(axis=1).tolist(), rel=1e-12)
    # with --max-nodata 0.25 tiles may cross the 4 px border, by at most a quarter
    bad = (np.asarray(st.triplets) == 0).all(axis=2).mean(axis=(2, 3))
    assert 0 < bad.max() <= 0.25


def test_refuses_existing_output_and_overwrites(tmp_path, make_raster):
    path = make_raster("s.tif", size=(40, 40))
    out = tmp_path / "st"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        tile([path], out, n_triplets=5, tile_size=8, neighborhood=8, quiet=True)
    assert (out / "keep.txt").exists()
    st = tile([path], out, n_triplets=5, tile_size=8, neighborhood=8, overwrite=True,
              quiet=True)
    assert not (out / "keep.txt").exists() and len(st) == 5


def test_nothing_left_on_error(tmp_path, make_raster, monkeypatch):
    path = make_raster("s.tif", size=(40, 40))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(footprints_mod, "append_footprints", boom)
    with pytest.raises(RuntimeError):
        tile([path], tmp_path / "st", n_triplets=5, tile_size=8, neighborhood=8, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_memory_does_not_grow_with_n(tmp_path, make_raster, monkeypatch):
    path = make_raster("s.tif", size=(128, 128))
    monkeypatch.setattr(footprints_mod, "ROWS_PER_WRITE", 512)

    def peak(n: int) -> int:
        tracemalloc.start()
        tile([path], tmp_path / f"st{n}", n_triplets=n, tile_size=16, neighborhood=16,
             quiet=True)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(256), peak(2048)
    # 2048 triplets hold 12 MiB of pixels (256: 1.5 MiB); the peak must not follow
    assert large < small + 3 * 2**20, (small, large)


def test_open_store_errors(tmp_path, make_raster):
    with pytest.raises(InputError, match="no triplet store"):
        open_store(tmp_path / "missing")
    path = make_raster("s.tif", size=(40, 40))
    good = tile([path], tmp_path / "st", n_triplets=10, tile_size=8, neighborhood=8,
                quiet=True).path
    meta = json.loads((good / "meta.json").read_text())

    (good / "meta.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(InputError, match="not a geoembed triplet store"):
        open_store(good)
    (good / "meta.json").write_text(json.dumps({**meta, "n_triplets": 11}))
    with pytest.raises(InputError, match="does not match"):
        open_store(good)
    (good / "meta.json").write_text(json.dumps(meta))
    open_store(good)
    npy = good / "triplets.npy"
    data = npy.read_bytes()
    npy.write_bytes(data[:-100])
    with pytest.raises(InputError, match="truncated"):
        open_store(good)
    npy.unlink()
    with pytest.raises(InputError, match="triplets.npy is missing"):
        open_store(good)
    (good / "meta.json").unlink()
    with pytest.raises(InputError, match="meta.json is missing"):
        open_store(good)


@pytest.mark.parametrize("crs", [None, "EPSG:4326", "+proj=laea +lat_0=52 +lon_0=10 "
                                 "+x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m +no_defs"])
def test_footprints_geopackage_crs(tmp_path, crs):
    """The GeoPackage opens with GDAL in the scene's CRS (none, EPSG, or a custom WKT)."""
    import pyogrio
    from rasterio.crs import CRS

    data = np.random.default_rng(0).integers(1, 99, (2, 40, 40)).astype(np.uint8)
    transform = from_origin(10.0, 50.0, 0.001, 0.001) if crs == "EPSG:4326" else None
    path = write_raster(tmp_path / "s.tif", data, crs=crs, transform=transform)
    st = tile([path], tmp_path / "st", n_triplets=10, tile_size=8, neighborhood=8,
              quiet=True, allow_no_crs=crs is None)
    info = pyogrio.read_info(st.footprints_path, layer="footprints")
    assert info["features"] == 30 and info["geometry_type"] == "Polygon"
    fp = st.footprints()
    if crs is None:
        assert fp.crs is None
    else:
        assert CRS.from_user_input(fp.crs.to_wkt()) == CRS.from_user_input(crs)
    with rasterio.open(path) as ds:
        rec = fp.iloc[7]
        left, bottom, right, top = rasterio.windows.bounds(Window(rec.col, rec.row, 8, 8),
                                                           ds.transform)
    assert fp.geometry.iloc[7].bounds == pytest.approx((left, bottom, right, top))


def test_footprints_written_in_several_appends(tmp_path, make_raster, monkeypatch):
    monkeypatch.setattr(footprints_mod, "ROWS_PER_WRITE", 7)
    path = make_raster("s.tif", size=(48, 48))
    st = tile([path], tmp_path / "st", n_triplets=20, tile_size=8, neighborhood=8, quiet=True)
    fp = st.footprints()
    assert len(fp) == 60
    assert fp.triplet.tolist() == np.repeat(np.arange(20), 3).tolist()
    assert fp.role.tolist() == ["anchor", "neighbor", "distant"] * 20
    pos = fp[["row", "col"]].to_numpy()
    with rasterio.open(path) as ds:
        for i in (0, 29, 59):
            left, bottom, right, top = rasterio.windows.bounds(
                Window(int(pos[i, 1]), int(pos[i, 0]), 8, 8), ds.transform)
            assert fp.geometry.iloc[i].bounds == pytest.approx((left, bottom, right, top))
    # the layer extent recorded in gpkg_contents covers every footprint
    import sqlite3

    with sqlite3.connect(st.footprints_path) as con:
        ext = con.execute("SELECT min_x, min_y, max_x, max_y FROM gpkg_contents").fetchone()
    assert ext == pytest.approx(tuple(fp.total_bounds))


def test_tile_config_equals_keywords(tmp_path, make_raster):
    """tile(config=TileConfig(...)) writes the same store as the keyword arguments."""
    path = make_raster("s.tif", size=(48, 48))
    kw = dict(n_triplets=20, tile_size=8, neighborhood=9.0, bands=(2, 1), seed=4)
    a = tile([path], tmp_path / "a", quiet=True, **kw)
    b = tile([path], tmp_path / "b", TileConfig(**kw), quiet=True)
    c = tile([path], tmp_path / "c", TileConfig(**{**kw, "seed": 0}), seed=4, quiet=True)
    np.testing.assert_array_equal(a.triplets, b.triplets)
    np.testing.assert_array_equal(a.triplets, c.triplets)
    assert a.meta["bands"] == b.meta["bands"] == [2, 1] and b.meta["neighborhood"] == 9.0
    with pytest.raises(TypeError, match="n_triplets"):
        tile([path], tmp_path / "d", tile_size=8)
