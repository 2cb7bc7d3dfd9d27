"""The committed sample data: reproducible from the generator, and true to its description."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from geoembed import synthetic
from geoembed.errors import InputError, OutputExistsError

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
CLASS_ID = synthetic.CLASS_ID


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synthetic.generate_sample_data(tmp_path_factory.mktemp("sd"), size=1024, seed=0)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    with rasterio.open(SAMPLE / "scene.tif") as ds:
        return ds.read()


@pytest.fixture(scope="module")
def landcover() -> np.ndarray:
    with rasterio.open(SAMPLE / "landcover.tif") as ds:
        return ds.read(1)


def _same_raster(a: Path, b: Path) -> None:
    with rasterio.open(a) as da, rasterio.open(b) as db:
        assert da.crs == db.crs
        assert da.transform == db.transform
        assert da.nodata == db.nodata
        assert da.descriptions == db.descriptions
        assert da.tags() == db.tags()
        np.testing.assert_array_equal(da.read(), db.read())


def _same_vector(a: Path, b: Path) -> None:
    ga, gb = gpd.read_file(a), gpd.read_file(b)
    assert ga.crs == gb.crs
    assert list(ga.columns) == list(gb.columns)
    for col in ga.columns.drop("geometry"):
        np.testing.assert_array_equal(ga[col].to_numpy(), gb[col].to_numpy(), err_msg=col)
    assert ga.geometry.geom_equals_exact(gb.geometry, tolerance=1e-9).all()


def test_regenerating_reproduces_committed_files(regenerated: dict[str, Path]) -> None:
    assert {p.name for p in regenerated.values()} <= {p.name for p in SAMPLE.iterdir()}
    _same_raster(regenerated["scene"], SAMPLE / "scene.tif")
    _same_raster(regenerated["landcover"], SAMPLE / "landcover.tif")
    for key in ("points", "weak_tiles", "weak_points"):
        _same_vector(regenerated[key], SAMPLE / regenerated[key].name)
    assert json.loads(regenerated["classes"].read_text()) == json.loads(
        (SAMPLE / "classes.json").read_text())
    assert regenerated["readme"].read_text() == (SAMPLE / "README.md").read_text()


def test_scene_format(scene: np.ndarray) -> None:
    with rasterio.open(SAMPLE / "scene.tif") as ds:
        assert ds.count == 4 and ds.dtypes[0] == "uint16"
        assert ds.descriptions == ("blue", "green", "red", "nir")
        assert ds.crs.to_epsg() == 32615 and ds.res == (2.0, 2.0)
        assert ds.nodata == 0
        assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"
    assert scene.max() <= 10000
    total = sum(p.stat().st_size for p in SAMPLE.iterdir())
    assert total < 10 * 2**20


def test_nodata_matches_landcover(scene: np.ndarray, landcover: np.ndarray) -> None:
    nodata = (scene == 0).all(axis=0)
    assert ((scene == 0).any(axis=0) == nodata).all()  # no valid pixel has a 0 band
    np.testing.assert_array_equal(nodata, landcover == 255)
    frac = nodata.mean()
    assert 0.02 < frac < 0.15
    # irregular: the slanted west edge makes column 0 valid at the bottom only
    assert nodata[0, 0] and not nodata[-1, 0] and nodata[-1, -1] and not nodata[0, -1]


def test_classes_json_and_tags() -> None:
    classes = json.loads((SAMPLE / "classes.json").read_text())
    assert [c["name"] for c in classes] == [
        "water", "forest", "urban", "cropland", "grassland", "orchard", "shrubland"]
    assert {c["name"] for c in classes if c["crop"]} == {"cropland", "orchard"}
    pairs = {c["name"]: c["texture_pair"] for c in classes if c["texture_pair"]}
    assert pairs == {"cropland": "grassland", "grassland": "cropland",
                     "orchard": "shrubland", "shrubland": "orchard"}
    with rasterio.open(SAMPLE / "landcover.tif") as ds:
        assert ds.nodata == 255 and ds.descriptions == ("landcover",)
        assert ds.tags()["CLASS_3"] == "cropland"


def test_every_class_present_and_crop_share(landcover: np.ndarray) -> None:
    valid = landcover != 255
    shares = np.bincount(landcover[valid], minlength=7) / valid.sum()
    assert (shares > 0.03).all(), shares
    crop = shares[CLASS_ID["cropland"]] + shares[CLASS_ID["orchard"]]
    assert 0.35 <= crop <= 0.5


def _lag_corr(band: np.ndarray, landcover: np.ndarray, cls: int, lag: int) -> float:
    """Correlation of ``band`` between pixels ``lag`` apart horizontally, both of class ``cls``."""
    a, b = band[:, :-lag], band[:, lag:]
    both = (landcover[:, :-lag] == cls) & (landcover[:, lag:] == cls)
    return float(np.corrcoef(a[both], b[both])[0, 1])


@pytest.mark.parametrize("pair,lag", [(("cropland", "grassland"), 1),
                                      (("orchard", "shrubland"), 24)])
def test_texture_pairs_differ_only_in_texture(scene: np.ndarray, landcover: np.ndarray,
                                              pair: tuple[str, str], lag: int) -> None:
    a, b = (CLASS_ID[n] for n in pair)
    va = scene[:, landcover == a].astype(np.float64)
    vb = scene[:, landcover == b].astype(np.float64)
    np.testing.assert_allclose(va.mean(1), vb.mean(1), rtol=0.02)
    np.testing.assert_allclose(va.std(1), vb.std(1), rtol=0.03)
    # same per-pixel value distribution, not just the same moments (NIR deciles)
    qs = np.linspace(0.1, 0.9, 9)
    np.testing.assert_allclose(np.quantile(va[3], qs), np.quantile(vb[3], qs), rtol=0.03)
    # ... but a different spatial arrangement: rows / lattice are periodic, grain / shrubs not
    nir = scene[3].astype(np.float64)
    ca, cb = _lag_corr(nir, landcover, a, lag), _lag_corr(nir, landcover, b, lag)
    assert ca > 0.5 and cb < 0.25, (ca, cb)


def test_same_object_size_in_orchard_and_shrubland(scene: np.ndarray,
                                                   landcover: np.ndarray) -> None:
    nir = scene[3].astype(np.float64)
    ca = _lag_corr(nir, landcover, CLASS_ID["orchard"], 1)
    cb = _lag_corr(nir, landcover, CLASS_ID["shrubland"], 1)
    assert abs(ca - cb) < 0.1, (ca, cb)


def test_points_on_their_class(landcover: np.ndarray) -> None:
    pts = gpd.read_file(SAMPLE / "points.gpkg")
    assert pts.crs.to_epsg() == 4326
    assert 500 <= len(pts) <= 700
    counts = pts["class"].value_counts()
    assert set(counts.index) == set(CLASS_ID) and counts.min() >= 40
    assert (pts["class"].map(CLASS_ID) == pts["class_id"]).all()
    with rasterio.open(SAMPLE / "landcover.tif") as ds:
        utm = pts.to_crs(ds.crs)
        cols, rows = ~ds.transform @ (utm.geometry.x.to_numpy(), utm.geometry.y.to_numpy())
    # pixel centres: fractional part 0.5
    np.testing.assert_allclose(cols % 1, 0.5, atol=1e-4)
    np.testing.assert_allclose(rows % 1, 0.5, atol=1e-4)
    values = landcover[rows.astype(int), cols.astype(int)]
    np.testing.assert_array_equal(values, pts["class_id"].to_numpy())
    assert not pts.geometry.duplicated().any()


def test_weak_tiles_and_points(landcover: np.ndarray) -> None:
    tiles = gpd.read_file(SAMPLE / "weak_tiles.gpkg")
    wpts = gpd.read_file(SAMPLE / "weak_points.gpkg")
    with rasterio.open(SAMPLE / "landcover.tif") as ds:
        transform, crs = ds.transform, ds.crs
    assert tiles.crs == crs and wpts.crs == crs
    assert len(tiles) > 300 and tiles["tile_id"].is_unique
    assert 0.3 < tiles["crop"].mean() < 0.6
    assert (tiles["crop"] == 1).sum() > 100 and (tiles["crop"] == 0).sum() > 100
    assert not tiles.geometry.overlaps(tiles.geometry.shift(1)).fillna(False).any()
    crop_ids = [CLASS_ID["cropland"], CLASS_ID["orchard"]]
    for t in tiles.itertuples():
        minx, miny, maxx, maxy = t.geometry.bounds
        c0, r0 = ~transform @ (minx, maxy)
        c1, r1 = ~transform @ (maxx, miny)
        assert (round(c0), round(r0), round(c1), round(r1)) == (t.col, t.row, t.col + 50,
                                                                t.row + 50)
        assert abs(c0 - round(c0)) < 1e-6 and abs(r0 - round(r0)) < 1e-6
        lc = landcover[t.row:t.row + 50, t.col:t.col + 50]
        assert (lc != 255).all()
        frac = np.isin(lc, crop_ids).mean()
        assert t.crop == int(frac >= 0.5) and abs(t.crop_fraction - frac) < 1e-6
    assert (wpts["tile_id"].to_numpy() == tiles["tile_id"].to_numpy()).all()
    cols, rows = ~transform @ (wpts.geometry.x.to_numpy(), wpts.geometry.y.to_numpy())
    r, c = np.floor(rows).astype(int), np.floor(cols).astype(int)
    assert ((r >= tiles["row"]) & (r < tiles["row"] + 50)).all()
    assert ((c >= tiles["col"]) & (c < tiles["col"] + 50)).all()
    np.testing.assert_array_equal(wpts["crop"].to_numpy(),
                                  np.isin(landcover[r, c], crop_ids).astype(int))


def test_refuses_existing_output_and_small_size(tmp_path: Path) -> None:
    (tmp_path / "scene.tif").write_text("x")
    with pytest.raises(OutputExistsError):
        synthetic.generate_sample_data(tmp_path, size=128)
    assert (tmp_path / "scene.tif").read_text() == "x"
    with pytest.raises(InputError):
        synthetic.generate_sample_data(tmp_path / "new", size=64)


def test_small_size_and_module_cli(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "geoembed.synthetic", str(tmp_path / "s"),
                          "--size", "256", "--seed", "3"], capture_output=True, text=True,
                         check=True)
    assert "scene" in res.stdout
    with rasterio.open(tmp_path / "s" / "scene.tif") as ds:
        assert ds.shape == (256, 256)
    again = subprocess.run([sys.executable, "-m", "geoembed.synthetic", str(tmp_path / "s")],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "overwrite" in again.stderr


def test_no_torch_import() -> None:
    code = "import sys, geoembed.synthetic; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
