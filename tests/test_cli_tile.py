"""`geoembed tile` and `geoembed demo` through click's CliRunner, including bad input."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli
from rasterio.windows import Window, from_bounds
from shapely.geometry import box

from tests.conftest import ORIGIN, PIXEL, UTM_CRS, write_raster


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_tile_command(tmp_path, make_raster):
    a = make_raster("a.tif", size=(64, 64), border=3)
    b = make_raster("b.tif", size=(48, 80), seed=2)
    out = tmp_path / "store"
    res = run("tile", a, b, "--out", out, "--n-triplets", 40, "--tile-size", 8,
              "--neighborhood", 12, "--seed", 3, "--bands", "1,2", "--quiet")
    assert res.exit_code == 0, res.output
    assert "Wrote 40 triplets of 2 x 8 x 8 px (uint16) from 2 scene(s)" in res.output
    arr = np.load(out / "triplets.npy", mmap_mode="r")
    assert arr.shape == (40, 3, 2, 8, 8)
    # every stored tile is the scene's bands 1,2 read at its footprint's window, and the
    # footprint's georeference maps back to exactly that window
    fp = gpd.read_file(out / "footprints.gpkg", layer="footprints")
    assert fp.triplet.tolist() == np.repeat(np.arange(40), 3).tolist()
    assert fp.role.tolist() == ["anchor", "neighbor", "distant"] * 40
    srcs = [rasterio.open(a), rasterio.open(b)]
    for i, rec in enumerate(fp.itertuples()):
        src = srcs[rec.scene]
        win = Window(rec.col, rec.row, 8, 8)
        np.testing.assert_array_equal(arr[i // 3, i % 3], src.read([1, 2], window=win))
        back = from_bounds(*rec.geometry.bounds, transform=src.transform)
        assert (back.col_off, back.row_off, back.width, back.height) == pytest.approx(
            (rec.col, rec.row, 8, 8), abs=1e-6)
    for src in srcs:
        src.close()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["neighborhood"] == 12 and meta["bands"] == [1, 2]
    # same command, same seed: same triplets (with --overwrite)
    res2 = run("tile", a, b, "--out", out, "-n", 40, "-t", 8, "-r", 12, "--seed", 3,
               "--bands", "1,2", "--overwrite", "--quiet")
    assert res2.exit_code == 0, res2.output
    np.testing.assert_array_equal(np.load(out / "triplets.npy"), arr)
    # the memory budget changes how the scenes are read, not what is sampled
    res3 = run("tile", a, b, "--out", out, "-n", 40, "-t", 8, "-r", 12, "--seed", 3,
               "--bands", "1,2", "--overwrite", "--quiet", "--memory", 1)
    assert res3.exit_code == 0, res3.output
    np.testing.assert_array_equal(np.load(out / "triplets.npy"), arr)
    res4 = run("tile", a, b, "--out", tmp_path / "none", "-n", 40, "--memory", 0)
    assert res4.exit_code == 2 and not (tmp_path / "none").exists()


def test_tile_options(tmp_path, make_raster):
    a = make_raster("a.tif", size=(64, 64), border=4)
    b = make_raster("b.tif", size=(64, 64), seed=5)
    x0, y0 = ORIGIN
    aoi = gpd.GeoDataFrame(geometry=[box(x0, y0 - 64 * PIXEL, x0 + 30 * PIXEL, y0)],
                           crs=UTM_CRS).to_crs("EPSG:4326")
    aoi.to_file(tmp_path / "aoi.geojson")
    out = tmp_path / "s"
    res = run("tile", a, b, "--out", out, "-n", 30, "-t", 8, "-r", 10, "--max-nodata", 0.5,
              "--distant-other-scene-prob", 1.0, "--aoi", tmp_path / "aoi.geojson", "-q")
    assert res.exit_code == 0, res.output
    fp = gpd.read_file(out / "footprints.gpkg")
    anchors = fp[fp.role == "anchor"]
    assert (anchors.col + 4 <= 30.5).all()  # centers inside the AOI (left 30 columns)
    # exactly: each anchor's center lies in the AOI as the sampler sees it (in the scene CRS)
    region = aoi.to_crs(UTM_CRS).union_all()
    assert anchors.geometry.centroid.intersects(region).all()
    # with --max-nodata 0.5 a tile may hold nodata (scene a's 4 px border), up to half of it
    arr = np.load(out / "triplets.npy")
    bad = (arr == 0).all(axis=2).mean(axis=(2, 3))  # (n, 3) nodata fraction per tile
    assert bad.max() <= 0.5 and bad.max() > 0
    dist = fp[fp.role == "distant"].reset_index()
    assert (dist.scene != anchors.reset_index().scene).all()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["max_nodata"] == 0.5 and meta["aoi"].endswith("aoi.geojson")


def test_help_shows_defaults():
    res = run("tile", "--help")
    assert res.exit_code == 0
    for text in ("--n-triplets", "[default: 100000]", "[default: 50]", "[default: 100.0]",
                 "--distant-other-scene-prob", "--allow-no-crs", "--aoi"):
        assert text in res.output


def bad_inputs(tmp_path, make_raster):
    """(name, args) for every bad input of the issue."""
    good = make_raster("good.tif", size=(40, 40))
    three = make_raster("three.tif", bands=3, size=(40, 40))
    nocrs = make_raster("nocrs.tif", size=(40, 40), crs=None)
    text = tmp_path / "text.tif"
    text.write_text("not a raster\n")
    empty = write_raster(tmp_path / "empty.tif", np.zeros((1, 40, 40), np.uint8), nodata=0)
    exists = tmp_path / "exists"
    exists.mkdir()
    opts = ["-n", 5, "-t", 8, "-r", 8]
    return [
        ("missing path", [tmp_path / "nope.tif", *opts], "no such file"),
        ("not a raster", [text, *opts], "not a raster"),
        ("no CRS", [nocrs, *opts], "no CRS"),
        ("band counts differ", [good, three, *opts], "bands"),
        ("tile larger than scene", [good, "-n", 5, "-t", 64, "-r", 8], "larger than the scene"),
        ("neighborhood below 1 px", [good, "-n", 5, "-t", 8, "-r", 0.5], "neighborhood"),
        ("no valid window", [empty, *opts], "no valid"),
        ("existing output", [good, *opts], "exists; pass --overwrite"),
    ], exists


@pytest.mark.parametrize("case", range(8))
def test_bad_input(case, tmp_path, make_raster):
    cases, exists = bad_inputs(tmp_path, make_raster)
    name, args, message = cases[case]
    out = exists if name == "existing output" else tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run("tile", *args, "--out", out, "--quiet")
    assert res.exit_code == 2, (name, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert "Traceback" not in res.output
    # no partial output: nothing new next to the output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if name == "existing output":
        assert list(exists.iterdir()) == []


def test_allow_no_crs(tmp_path, make_raster):
    nocrs = make_raster("nocrs.tif", size=(40, 40), crs=None)
    out = tmp_path / "s"
    res = run("tile", nocrs, "--out", out, "-n", 5, "-t", 8, "-r", 8, "--allow-no-crs", "-q")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "meta.json").read_text())["footprints_crs"] is None

