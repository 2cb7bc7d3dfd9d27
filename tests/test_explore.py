"""Embedding rasters in use: quantisation, sampling at points, similarity maps, PCA previews."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli
from matplotlib.image import imread
from rasterio.warp import transform as warp
from shapely.geometry import Point

from geoembed.analysis.preview import preview
from geoembed.analysis.similarity import reference_embedding, similarity_map
from geoembed.errors import InputError
from geoembed.io.embeddings import dequantize, quantize, read_embeddings, sample_embeddings
from tests.conftest import ORIGIN, PIXEL, UTM_CRS, write_raster


def center(row: int, col: int) -> tuple[float, float]:
    """UTM coordinates of a pixel center of the conftest grid."""
    return ORIGIN[0] + (col + 0.5) * PIXEL, ORIGIN[1] - (row + 0.5) * PIXEL


@pytest.fixture
def known(tmp_path) -> Path:
    """A 3-band float embedding raster with vectors chosen to give known similarities."""
    emb = np.zeros((3, 4, 5), dtype=np.float32)
    emb[:, :, :] = np.array([0.3, 0.3, 0.9], dtype=np.float32)[:, None, None]
    emb[:, 0, 0] = [2, 0, 0]      # the reference
    emb[:, 0, 1] = [0, 5, 0]      # orthogonal: 0
    emb[:, 0, 2] = [1, 1, 0]      # 45 degrees: 0.7071
    emb[:, 0, 3] = [-3, 0, 0]     # opposite: -1
    emb[:, 0, 4] = [0.5, 0, 0]    # same direction, other length: 1
    emb[:, 1, 0] = np.nan         # nodata
    emb[:, 1, 1] = 0              # zero vector: undefined -> nodata
    return write_raster(tmp_path / "emb.tif", emb, nodata=np.nan)


def test_quantize_roundtrip_and_known_codes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 500)).astype(np.float32)
    x[:, 3] = np.nan
    q = quantize(x, axis=0)
    assert q.dtype == np.int8
    assert (q[:, 3] == -128).all() and (np.delete(q, 3, axis=1) >= -127).all()
    unit = x / np.linalg.norm(x, axis=0)
    back = dequantize(q)
    assert np.isnan(back[:, 3]).all()
    err = np.abs(np.delete(back - unit, 3, axis=1))
    assert err.max() <= 1 / 127.5 + 1e-6
    e = quantize(np.array([[3.0], [0.0], [-4.0]]))
    # unit vector (0.6, 0, -0.8): sqrt -> 0.7746, 0, -0.8944 -> *127.5 -> 98.76, 0, -114.04
    assert e[:, 0].tolist() == [99, 0, -114]
    assert dequantize(np.array([127, -127, 0, -128], dtype=np.int8))[:3] == pytest.approx(
        [(127 / 127.5) ** 2, -(127 / 127.5) ** 2, 0.0])


def test_read_and_sample_embeddings(known, tmp_path):
    emb, valid = read_embeddings(known)
    assert emb.shape == (3, 4, 5) and valid.sum() == 19 and not valid[1, 0]
    xs, ys = zip(center(0, 2), center(3, 4), (0.0, 0.0), center(1, 0), strict=True)
    vals, ok = sample_embeddings(known, xs, ys)
    assert ok.tolist() == [True, True, False, False]
    np.testing.assert_allclose(vals[0], [1, 1, 0])
    np.testing.assert_allclose(vals[1], [0.3, 0.3, 0.9])
    # in lon/lat, reprojected to the raster's CRS
    lon, lat = warp(UTM_CRS, "EPSG:4326", [center(0, 2)[0]], [center(0, 2)[1]])
    vals, ok = sample_embeddings(known, lon, lat, crs="EPSG:4326")
    assert ok.all()
    np.testing.assert_allclose(vals[0], [1, 1, 0])
    # int8 storage is dequantised on reading
    q = quantize(read_embeddings(known)[0], axis=0)
    path = write_raster(tmp_path / "q.tif", q, nodata=-128)
    deq, v = read_embeddings(path)
    assert not v[1, 0]
    np.testing.assert_allclose(deq[:, 0, 2], [0.7071, 0.7071, 0], atol=0.01)


def test_similarity_known_values(known, tmp_path):
    x, y = center(0, 0)
    res = CliRunner().invoke(cli, ["similar", str(known), "--point", str(x), str(y), "--crs",
                                   UTM_CRS, "--out", str(tmp_path / "sim.tif"), "--quiet"])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "sim.tif") as ds, rasterio.open(known) as src:
        sim = ds.read(1)
        assert ds.transform == src.transform and ds.crs == src.crs and np.isnan(ds.nodata)
        assert ds.dtypes[0] == "float32"
    np.testing.assert_allclose(sim[0], [1.0, 0.0, np.sqrt(0.5), -1.0, 1.0], atol=1e-6)
    assert np.isnan(sim[1, 0]) and np.isnan(sim[1, 1])
    rest = np.array([0.3, 0.3, 0.9]) / np.linalg.norm([0.3, 0.3, 0.9])
    np.testing.assert_allclose(sim[2:], rest[0], atol=1e-6)


def test_similarity_mean_of_points_lonlat_and_files(known, tmp_path):
    (x0, y0), (x1, y1) = center(0, 0), center(0, 1)
    lon, lat = warp(UTM_CRS, "EPSG:4326", [x0, x1], [y0, y1])
    # default --crs is lon/lat; two points: reference = mean of (1,0,0) and (0,1,0)
    res = CliRunner().invoke(cli, ["similar", str(known), "--point", str(lon[0]), str(lat[0]),
                                   "--point", str(lon[1]), str(lat[1]), "--out",
                                   str(tmp_path / "a.tif"), "--quiet"])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "a.tif") as ds:
        a = ds.read(1)
    np.testing.assert_allclose(a[0, :3], [np.sqrt(0.5), np.sqrt(0.5), 1.0], atol=1e-5)
    # the same points from a GeoJSON in EPSG:4326 and from a CSV in the raster's CRS
    gpd.GeoDataFrame(geometry=[Point(lon[0], lat[0])], crs="EPSG:4326").to_file(
        tmp_path / "p.geojson")
    (tmp_path / "p.csv").write_text(f"x,y\n{x1},{y1}\n")
    for f, extra in (("p.geojson", []), ("p.csv", ["--crs", UTM_CRS])):
        res = CliRunner().invoke(cli, ["similar", str(known), "--points", str(tmp_path / f),
                                       *extra, "--out", str(tmp_path / f"{f}.tif"), "--quiet"])
        assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "p.geojson.tif") as g, \
            rasterio.open(tmp_path / "p.csv.tif") as c:
        assert g.read(1)[0, 0] == pytest.approx(1.0) and g.read(1)[0, 1] == pytest.approx(0.0)
        assert c.read(1)[0, 1] == pytest.approx(1.0) and c.read(1)[0, 0] == pytest.approx(0.0)


def test_similarity_on_int8_raster(known, tmp_path):
    q = quantize(read_embeddings(known)[0], axis=0)
    path = write_raster(tmp_path / "q.tif", q, nodata=-128)
    out, ref = similarity_map(path, [center(0, 2)[0]], [center(0, 2)[1]], tmp_path / "s.tif",
                              quiet=True)
    with rasterio.open(out) as ds:
        sim = ds.read(1)
    assert sim[0, 2] == pytest.approx(1.0, abs=1e-6)
    assert sim[0, 0] == pytest.approx(np.sqrt(0.5), abs=0.01)
    assert np.isnan(sim[1, 0])
    assert np.linalg.norm(ref) == pytest.approx(1.0)


@pytest.mark.parametrize("point, message", [
    ((0.0, 0.0), "outside the raster"),
    (center(1, 0), "on nodata"),
])
def test_similarity_bad_points_exit_2(known, tmp_path, point, message):
    res = CliRunner().invoke(cli, ["similar", str(known), "--point", *map(str, point), "--crs",
                                   UTM_CRS, "--out", str(tmp_path / "s.tif"), "--quiet"])
    assert res.exit_code == 2 and message in res.stderr, res.output
    assert not (tmp_path / "s.tif").exists()


def test_similarity_other_errors(known, tmp_path):
    x, y = center(0, 0)
    # UTM coordinates read as lon/lat: outside, with a hint
    res = CliRunner().invoke(cli, ["similar", str(known), "--point", str(x), str(y), "--out",
                                   str(tmp_path / "s.tif")])
    assert res.exit_code == 2 and "pass --crs EPSG:32610" in res.stderr
    res = CliRunner().invoke(cli, ["similar", str(known), "--out", str(tmp_path / "s.tif")])
    assert res.exit_code == 2 and "--point" in res.stderr
    (tmp_path / "exists.tif").write_bytes(b"")
    res = CliRunner().invoke(cli, ["similar", str(known), "--point", str(x), str(y), "--crs",
                                   UTM_CRS, "--out", str(tmp_path / "exists.tif")])
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    with pytest.raises(InputError, match="at least one"):
        reference_embedding(known, [], [])


def test_preview_size_alpha_and_structure(tmp_path):
    h, w, z = 40, 60, 8
    rng = np.random.default_rng(0)
    direction = rng.normal(size=z)
    xx = np.linspace(-1, 1, w)[None, :].repeat(h, 0)
    emb = (direction[:, None, None] * xx[None] * 5
           + rng.normal(0, 0.05, (z, h, w))).astype(np.float32)
    emb[:, :5, :5] = np.nan
    path = write_raster(tmp_path / "e.tif", emb, nodata=np.nan)
    res = CliRunner().invoke(cli, ["preview", str(path), "--out", str(tmp_path / "p.png"),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    img = imread(tmp_path / "p.png")
    assert img.shape == (h, w, 4)
    assert (img[:5, :5, 3] == 0).all() and (img[:5, :5, :3] == 0).all()
    assert (img[5:, :, 3] == 1).all()
    # the first component (red) follows the gradient along x
    red = img[10:, :, 0].mean(axis=0)
    assert abs(np.corrcoef(red, np.arange(w))[0, 1]) > 0.95
    small = preview(path, tmp_path / "s.png", max_size=30, quiet=True)
    assert (small.width, small.height) == (30, 20)
    assert imread(tmp_path / "s.png").shape == (20, 30, 4)
    assert small.explained_variance_ratio[0] > 0.9
    res = CliRunner().invoke(cli, ["preview", str(path), "--out", str(tmp_path / "p.png")])
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    res = CliRunner().invoke(cli, ["preview", str(tmp_path / "nope.tif"), "--out",
                                   str(tmp_path / "q.png")])
    assert res.exit_code == 2 and "no such file" in res.stderr


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_sampling_a_large_raster_point_by_point_gives_the_whole_read_values(
        known, tmp_path, monkeypatch, dtype):
    """Rasters larger than one strip are sampled with rasterio per point: same values."""
    from geoembed.io import embeddings as emb_mod

    path = known
    if dtype == "int8":
        path = write_raster(tmp_path / "q.tif", quantize(read_embeddings(known)[0], axis=0),
                            nodata=-128)
    rows, cols = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    xs, ys = center(rows.ravel(), cols.ravel())
    xs, ys = np.append(xs, 0.0), np.append(ys, 0.0)  # and one point outside
    whole, whole_ok = sample_embeddings(path, xs, ys)
    monkeypatch.setattr(emb_mod, "STRIP_BYTES", 8)
    each, each_ok = sample_embeddings(path, xs, ys)
    np.testing.assert_array_equal(each_ok, whole_ok)
    assert whole_ok.sum() == 19 and not whole_ok[5] and not whole_ok[-1]  # nodata, outside
    np.testing.assert_array_equal(each, whole)
