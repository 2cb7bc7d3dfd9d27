"""geoembed.mapping / `geoembed map`: known maps, georeference, sources, areas, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli
from rasterio.transform import from_origin

from geoembed.errors import CRSError, InputError, LabelError, OutputExistsError, RasterError
from geoembed.io.georef import rowcol_to_xy
from geoembed.io.scenes import open_scene
from geoembed.mapping.config import MapConfig
from geoembed.mapping.grid import OutputGrid, choose_stride, row_areas_ha
from geoembed.mapping.map import map as make_map
from geoembed.mapping.prepare import build_features, open_sources
from tests.conftest import ORIGIN, write_raster
from tests.test_evaluation import (
    BLOCK,
    block_center_labels,
    class_layout,
    class_scene,
    points,
    tiny_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = 96


def labels(scene: Path, n: int = 90, seed: int = 2, names: bool = False):
    rows, cols, cls = block_center_labels(n, seed=seed)
    return points(scene, rows, cols, [f"c{c}" for c in cls] if names else cls)


def read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), {"transform": ds.transform, "nodata": ds.nodata, "crs": ds.crs,
                           "tags": ds.tags(), "dtype": ds.dtypes[0]}


def onehot_raster(path: Path, scene: Path, *, int8: bool, dst_crs: str = "EPSG:4326",
                  shift: float = 0.0) -> Path:
    """The class layout one-hot as a 3-band raster reprojected to ``dst_crs``."""
    from tests.test_evaluation import _embedding_raster

    return _embedding_raster(path, scene, dst_crs=dst_crs, int8=int8, shift=shift)


# ----------------------------------------------------------------------------- known answers

def test_map_of_a_separable_scene_is_the_truth_with_exact_areas(tmp_path):
    scene = class_scene(tmp_path)
    make_map(scene, tmp_path / "map.tif", labels=labels(scene, names=True),
             label_column="cls", features="bands", block_size=BLOCK, quiet=True)
    codes, meta = read(tmp_path / "map.tif")
    assert meta["dtype"] == "uint8" and meta["nodata"] == 255
    assert json.loads(meta["tags"]["CLASS_NAMES"]) == ["c0", "c1", "c2"]
    truth = class_layout(SIZE)
    assert (codes[0] == truth).mean() >= 0.999  # band 1 separates the classes by 7 sigma
    report = json.loads((tmp_path / "map.json").read_text())
    assert report["cv"]["accuracy"] == 1.0 and report["cv"]["folds"] == 5
    assert set(report["cv"]["per_class"]) == {"c0", "c1", "c2"}
    # 10 m pixels = 0.01 ha each
    for c in report["classes"]:
        assert c["pixels"] == int((codes[0] == c["code"]).sum())
        assert c["area_ha"] == pytest.approx(0.01 * (truth == c["code"]).sum(), abs=0.02)
    assert report["area"]["total"] == pytest.approx(0.01 * SIZE * SIZE)
    assert (tmp_path / "map.qml").exists()
    assert not any(p.suffix in (".pkl", ".joblib", ".skops") for p in tmp_path.iterdir())


def test_probabilities_sum_to_one_and_nodata_follows_the_scene(tmp_path):
    rng = np.random.default_rng(0)
    cls = class_layout(SIZE)
    b1 = 200 + 300 * cls + rng.normal(0, 20, cls.shape)
    b2 = 500 + rng.normal(0, 50, cls.shape)
    data = np.stack([b1, b2]).astype("uint16")
    data[:, 40:56, 70:90] = 0  # a nodata hole
    scene = write_raster(tmp_path / "hole.tif", data, nodata=0)
    run = make_map(scene, tmp_path / "m.tif", labels=labels(scene), label_column="cls",
                   features="bands", classifier="rf", block_size=BLOCK, quiet=True,
                   probabilities=tmp_path / "p.tif", confidence=tmp_path / "c.tif")
    codes = read(tmp_path / "m.tif")[0][0]
    probs, pmeta = read(tmp_path / "p.tif")
    conf = read(tmp_path / "c.tif")[0][0]
    hole = np.zeros(cls.shape, bool)
    hole[40:56, 70:90] = True
    assert (codes[hole] == 255).all() and (codes[~hole] < 3).all()
    assert np.isnan(probs[:, hole]).all() and np.isnan(conf[hole]).all()
    np.testing.assert_allclose(probs[:, ~hole].sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(probs[:, ~hole], axis=0), codes[~hole])
    np.testing.assert_allclose(conf[~hole], probs[:, ~hole].max(axis=0))
    assert run.report["nodata"]["pixels"] == hole.sum()
    assert pmeta["dtype"] == "float32" and probs.shape[0] == 3


# ----------------------------------------------------------------------------- the output grid

@pytest.mark.parametrize("option", [{"stride": 5}, {"resolution": 50.0}, {"resolution": 48.0}])
def test_coarser_grid_keeps_the_georeference(tmp_path, option):
    scene = class_scene(tmp_path)
    make_map(scene, tmp_path / "m.tif", labels=labels(scene), label_column="cls",
             features="bands", block_size=BLOCK, quiet=True, **option)
    codes, meta = read(tmp_path / "m.tif")
    scn = open_scene(scene)
    assert codes.shape == (1, 20, 20)  # ceil(96 / 5): the last blocks reach past the edge
    assert meta["transform"].almost_equals(scn.transform @ rasterio.Affine.scale(5))
    i, j = np.meshgrid(np.arange(20), np.arange(20), indexing="ij")
    x, y = rowcol_to_xy(meta["transform"], i.ravel(), j.ravel())
    # the centre of output pixel (i, j) is the centre of scene pixel (5i + 2, 5j + 2)
    sx, sy = rowcol_to_xy(scn.transform, 5 * i.ravel() + 2, 5 * j.ravel() + 2)
    np.testing.assert_allclose(x, sx)
    np.testing.assert_allclose(y, sy)
    truth = class_layout(SIZE)
    inner = truth[5 * i[:19, :19] + 2, 5 * j[:19, :19] + 2]  # blocks inside the scene
    assert (codes[0][:19, :19] == inner).mean() >= 0.99
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["grid"]["stride"] == 5 and report["grid"]["width"] == 20


def test_partial_edge_blocks_use_the_centre_of_their_inside_part():
    grid = OutputGrid(11, 7, from_origin(0, 70, 10, 10), None, stride=4)
    assert (grid.width, grid.height) == (3, 2)
    rows, cols = grid.centre_pixels(0, 2)
    assert sorted(set(rows.tolist())) == [2, 5]  # block rows 0-3 and 4-6 (3 px inside)
    assert sorted(set(cols.tolist())) == [2, 6, 9]  # block cols 0-3, 4-7, 8-10


def test_default_stride_and_resolution():
    t = from_origin(0, 0, 10, 10)

    def cfg(**kw):
        return MapConfig(labels="x", label_column="c", **kw)

    assert choose_stride(cfg(features="tile-stats"), 1024, 1024, t, 50)[0] == 10
    assert choose_stride(cfg(features="tile-stats"), 300, 300, t, 50)[0] == 1
    assert choose_stride(cfg(features="bands"), 4096, 4096, t, 50)[0] == 1
    assert choose_stride(cfg(features="tile-stats", stride=1), 4096, 4096, t, 50)[0] == 1
    stride, why = choose_stride(cfg(resolution=48), 100, 100, t, 50)
    assert stride == 5 and "rounded to 50" in why
    with pytest.raises(InputError, match="finer than"):
        choose_stride(cfg(resolution=4), 100, 100, t, 50)
    with pytest.raises(InputError, match="not both"):
        cfg(stride=2, resolution=20)


def test_areas_in_a_geographic_crs_are_geodesic():
    deg = 0.01
    grid = OutputGrid(10, 3, from_origin(10.0, 60.0, deg, deg), rasterio.crs.CRS.from_epsg(4326))
    areas = row_areas_ha(grid)
    # the exact area of a latitude band on the WGS84 ellipsoid (authalic latitude formula)
    a, f = 6_378_137.0, 1 / 298.257223563
    e = np.sqrt(f * (2 - f))
    b2 = (a * (1 - f)) ** 2

    def q(lat):
        s = np.sin(np.radians(lat))
        return s / (1 - e**2 * s**2) + np.log((1 + e * s) / (1 - e * s)) / (2 * e)

    lat = 60.0 - deg * np.arange(4)
    band = b2 * np.radians(deg) / 2 * (q(lat[:-1]) - q(lat[1:])) / 1e4
    np.testing.assert_allclose(areas, band, rtol=1e-5)
    assert areas[0] < areas[2]  # further north, smaller


# ----------------------------------------------------------------------------- features

@pytest.mark.parametrize("int8", [True, False])
def test_external_raster_values_round_trip(tmp_path, int8):
    scene = class_scene(tmp_path)
    scn = open_scene(scene)
    # a raster on another grid (20 m pixels, shifted origin) with known codes
    rng = np.random.default_rng(1)
    # 5 bands: GDAL before 3.7 stores int8 as signed Byte and takes 4 Byte bands for RGBA
    raw = rng.integers(-127, 128, (5, 60, 60)).astype("int8" if int8 else "int16")
    raw[:, 10, 11] = -128 if int8 else -999  # one nodata pixel (under scene pixel 18, 18)
    transform = from_origin(ORIGIN[0] - 35, ORIGIN[1] + 25, 20, 20)
    if int8:
        path = write_raster(tmp_path / "q.tif", raw, transform=transform)  # no nodata declared
    else:
        path = write_raster(tmp_path / "s.tif", raw, transform=transform, nodata=-999)
        with rasterio.open(path, "r+") as ds:
            ds.scales = [0.01] * 5
            ds.offsets = [-1.0] * 5
    cfg = MapConfig(labels="x", label_column="c", embeddings=[path], quiet=True)
    feats = build_features(scn, None, open_sources(scn, cfg), cfg, 8)
    rows, cols = np.mgrid[0:SIZE:3, 0:SIZE:3]
    x, ok = feats.compute(rows.ravel(), cols.ravel())
    px, py = rowcol_to_xy(scn.transform, rows.ravel(), cols.ravel())
    er, ec = rasterio.transform.rowcol(transform, px, py)
    q = raw[:, np.asarray(er), np.asarray(ec)].T.astype(np.float64)
    expect = np.sign(q) * (q / 127.5) ** 2 if int8 else q * 0.01 - 1.0
    bad = np.all(q == (-128 if int8 else -999), axis=1)
    assert bad.any() and not ok[bad].any() and ok[~bad].all()
    np.testing.assert_allclose(x[~bad], expect[~bad], rtol=1e-6, atol=1e-7)


def test_training_features_equal_the_map_features_at_the_same_pixels(tmp_path):
    scene = class_scene(tmp_path)
    scn = open_scene(scene)
    ckpt = tiny_checkpoint(tmp_path / "ck.pt", scene, tile=8, z_dim=4)
    emb = onehot_raster(tmp_path / "emb.tif", scene, int8=True)
    from geoembed.inference.embedding import load_embedding_model

    cfg = MapConfig(labels="x", label_column="c", checkpoint=ckpt, embeddings=[emb],
                    features="embedding,bands,tile-stats,pca,random-features",
                    n_random_features=8, pca_tiles=20, device="cpu", batch_size=7)
    feats = build_features(scn, load_embedding_model(ckpt), open_sources(scn, cfg), cfg, 8)
    assert feats.dims == {"embedding": 7, "bands": 2, "tile-stats": 4, "random-features": 8,
                          "pca": 4}
    grid = OutputGrid(scn.width, scn.height, scn.transform, scn.crs, stride=3)
    rows, cols = grid.centre_pixels(0, grid.height)  # the whole map, one block row
    x_map, ok_map = feats.compute(rows, cols)
    pick = np.random.default_rng(0).choice(len(rows), 40, replace=False)
    x_lab, ok_lab = feats.compute(rows[pick], cols[pick])  # scattered, like labels
    np.testing.assert_array_equal(ok_lab, ok_map[pick])
    np.testing.assert_allclose(x_lab, x_map[pick], rtol=1e-5, atol=1e-6)
    # the raster part is the one-hot class of the pixel (dequantised int8: exactly 1 or 0)
    onehot = x_map[:, 4:7]
    inside = ok_map
    np.testing.assert_array_equal(onehot[inside].argmax(axis=1),
                                  class_layout(SIZE)[rows[inside], cols[inside]])


def test_map_from_a_reprojected_embedding_and_a_checkpoint(tmp_path):
    scene = class_scene(tmp_path)
    ckpt = tiny_checkpoint(tmp_path / "ck.pt", scene, tile=8, z_dim=4)
    emb = onehot_raster(tmp_path / "emb.tif", scene, int8=True)
    run = make_map(scene, tmp_path / "m.tif", labels=labels(scene), label_column="cls",
                   checkpoint=ckpt, embeddings=[emb], stride=2, block_size=BLOCK,
                   device="cpu", quiet=True)
    assert run.report["features"]["dims"] == {"embedding": 7}
    codes = read(tmp_path / "m.tif")[0][0]
    truth = class_layout(SIZE)[1::2, 1::2]
    assert (codes == truth).mean() >= 0.97


def test_map_says_whether_the_embedding_beats_the_no_training_baselines(tmp_path):
    """The class scene is separable by its band values: a noise embedding loses to bands;
    an embedding that is the one-hot class ties with them (no gain of 0.03)."""
    scene = class_scene(tmp_path)
    noise = np.random.default_rng(5).normal(size=(3, SIZE, SIZE)).astype("float32")
    with rasterio.open(scene) as ds:
        noise_path = write_raster(tmp_path / "noise.tif", noise, transform=ds.transform)
    run = make_map(scene, tmp_path / "n.tif", labels=labels(scene), label_column="cls",
                   embeddings=[noise_path], stride=4, block_size=BLOCK, quiet=True)
    v = run.report["verdict"]
    assert v["embedding"]["features"] == "embedding" and v["baseline"]["features"] == "bands"
    assert v["baseline"]["macro_f1"] == 1.0 and v["embedding"]["macro_f1"] < 0.7
    assert not v["beats"] and "does NOT beat" in run.summary()
    emb = onehot_raster(tmp_path / "emb.tif", scene, int8=True)
    good = make_map(scene, tmp_path / "g.tif", labels=labels(scene), label_column="cls",
                    embeddings=[emb], stride=4, block_size=BLOCK, quiet=True).report["verdict"]
    assert good["embedding"]["macro_f1"] == 1.0 and good["difference"] == 0.0
    assert not good["beats"]
    only_bands = make_map(scene, tmp_path / "b.tif", labels=labels(scene), label_column="cls",
                          features="bands", block_size=BLOCK, quiet=True)
    assert only_bands.report["verdict"] is None


# ----------------------------------------------------------------------------- bad input

def test_bad_input_raises_and_writes_nothing(tmp_path):
    scene = class_scene(tmp_path)
    gdf = labels(scene)
    before = set(tmp_path.iterdir())
    far = onehot_raster(tmp_path / "far.tif", scene, int8=False, dst_crs="EPSG:32610",
                        shift=1e6)
    nocrs = write_raster(tmp_path / "nocrs.tif", np.zeros((3, 8, 8), np.float32), crs=None)
    before |= {far, nocrs}
    common = {"labels": gdf, "label_column": "cls", "quiet": True}
    with pytest.raises(RasterError, match="does not overlap"):
        make_map(scene, tmp_path / "a.tif", embeddings=[far], **common)
    with pytest.raises(CRSError, match="no CRS"):
        make_map(scene, tmp_path / "b.tif", embeddings=[nocrs], **common)
    one = gdf.assign(cls=1)
    with pytest.raises(LabelError, match="only one class"):
        make_map(scene, tmp_path / "c.tif", labels=one, label_column="cls", quiet=True)
    (tmp_path / "d.json").write_text("{}")
    before.add(tmp_path / "d.json")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        make_map(scene, tmp_path / "d.tif", features="bands", **common)
    assert set(tmp_path.iterdir()) == before


def test_scene_is_closed_when_an_embedding_raster_is_refused(tmp_path, monkeypatch):
    from geoembed.io.scenes import Scene

    scene = class_scene(tmp_path)
    nocrs = write_raster(tmp_path / "nocrs.tif", np.zeros((3, 8, 8), np.float32), crs=None)
    closed = []
    close = Scene.close
    monkeypatch.setattr(Scene, "close", lambda self: (closed.append(self.name), close(self)))
    with pytest.raises(CRSError, match="no CRS"):
        make_map(scene, tmp_path / "m.tif", labels=labels(scene), label_column="cls",
                 embeddings=[nocrs], quiet=True)
    assert closed == [scene.name]


def test_rare_class_is_dropped_with_a_warning(tmp_path):
    scene = class_scene(tmp_path)
    rows, cols, cls = block_center_labels(90, seed=2)
    keep = (cls != 2) | (np.cumsum(cls == 2) <= 3)  # class 2: 3 labels < 5 folds
    gdf = points(scene, rows[keep], cols[keep], cls[keep])
    run = make_map(scene, tmp_path / "m.tif", labels=gdf, label_column="cls",
                   features="bands", block_size=BLOCK, quiet=True)
    assert [c["name"] for c in run.report["classes"]] == ["0", "1"]
    assert any("fewer labels than folds" in n for n in run.warnings)


# ----------------------------------------------------------------------------- CLI

def cli_run(*args):
    return CliRunner().invoke(cli, ["map", *map(str, args)])


def test_cli_map_and_exit_status_2(tmp_path):
    scene = class_scene(tmp_path)
    gpkg = tmp_path / "pts.gpkg"
    labels(scene, names=True).to_crs("EPSG:4326").to_file(gpkg)
    res = cli_run(scene, "--labels", gpkg, "--label-column", "cls", "--features", "bands",
                  "--out", tmp_path / "m.tif", "--block-size", BLOCK, "--quiet",
                  "--classifier", "hgb")
    assert res.exit_code == 0, res.output
    assert "spatial CV (hgb" in res.output and "| c1 |" in res.output
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["classifier"] == "hgb" and report["options"]["features"] == ["bands"]
    # 90 labels, classes 7 sigma apart: 1.000 with scikit-learn's newest hgb, 0.978 at the
    # 1.3 floor (its 20-sample leaves on ~72 training labels)
    assert report["cv"]["accuracy"] >= 0.95
    # existing output, single class, no CRS: one line, exit 2, nothing new written
    before = set(tmp_path.iterdir())
    res = cli_run(scene, "--labels", gpkg, "--label-column", "cls", "--out", tmp_path / "m.tif")
    assert res.exit_code == 2 and "exists; pass --overwrite" in res.output
    nocrs = write_raster(tmp_path / "nocrs.tif", np.zeros((3, 8, 8), np.float32), crs=None)
    before.add(nocrs)
    res = cli_run(scene, "--labels", gpkg, "--label-column", "cls", "--embeddings", nocrs,
                  "--out", tmp_path / "n.tif")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "no CRS" in res.output
    one = tmp_path / "one.gpkg"
    labels(scene).assign(cls=1).to_file(one)
    before.add(one)
    res = cli_run(scene, "--labels", one, "--label-column", "cls", "--out", tmp_path / "o.tif")
    assert res.exit_code == 2 and "only one class" in res.output
    assert set(tmp_path.iterdir()) == before
    res = cli_run("--help")
    assert res.exit_code == 0 and "tile size // 5" in res.output


def test_config_checks():
    with pytest.raises(InputError, match="classifier"):
        MapConfig(classifier="svm")
    with pytest.raises(InputError, match="unknown feature"):
        MapConfig(features="random-encoder")
    with pytest.raises(InputError, match="even"):
        MapConfig(n_random_features=7)
    with pytest.raises(InputError, match="needs --checkpoint or --embeddings"):
        MapConfig(features="embedding").feature_names()
    assert MapConfig().feature_names() == ["bands"]
    assert MapConfig(embeddings="e.tif", features="bands").feature_names() == \
        ["embedding", "bands"]


# ----------------------------------------------------------------------------- reference

def test_reference_in_another_crs_scores_the_map_and_estimates_areas(tmp_path):
    scene = class_scene(tmp_path)
    truth = class_layout(SIZE).astype("uint8")
    truth[:8, :8] = 7  # a reference class the labels do not have
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    scn = open_scene(scene)
    transform, w, h = calculate_default_transform(scn.crs, "EPSG:4326", SIZE, SIZE,
                                                  *scn.dataset.bounds)
    dst = np.full((1, h, w), 255, np.uint8)
    reproject(truth[None], dst, src_transform=scn.transform, src_crs=scn.crs,
              dst_transform=transform, dst_crs="EPSG:4326", resampling=Resampling.nearest,
              src_nodata=255, dst_nodata=255)
    ref = write_raster(tmp_path / "ref.tif", dst, crs="EPSG:4326", transform=transform,
                       nodata=255)
    res = cli_run(scene, "--labels-raster", _label_raster(tmp_path, scene), "--features",
                  "bands", "--out", tmp_path / "m.tif", "--block-size", BLOCK, "--reference",
                  ref, "--quiet")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "m.json").read_text())["reference"]
    assert rep["matched_by"] == "code" and rep["accuracy"] >= 0.97
    assert any("7" in n for n in rep["notes"])  # the reference-only class is reported
    est = rep["area_estimates"]["classes"]
    for code in range(3):
        true_ha = 0.01 * (class_layout(SIZE) == code).sum()
        c = est[str(code)]
        assert c["area_ci_low"] - 1.0 <= true_ha <= c["area_ci_high"] + 1.0
    assert (tmp_path / "m_confusion.png").stat().st_size > 0
    assert "area estimates" in res.output


def _label_raster(tmp_path: Path, scene: Path) -> Path:
    """Labels as a raster on the scene's grid: 90 block-centre pixels, 255 elsewhere."""
    rows, cols, cls = block_center_labels(90, seed=2)
    lab = np.full((1, SIZE, SIZE), 255, np.uint8)
    lab[0, rows, cols] = cls
    return write_raster(tmp_path / "labels.tif", lab, nodata=255)
