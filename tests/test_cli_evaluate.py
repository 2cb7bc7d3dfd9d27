"""`geoembed evaluate` on the command line: a run, label rasters, bad input as one line + exit 2."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
from click.testing import CliRunner
from geoembed.cli import cli
from shapely.geometry import Point

from tests.conftest import write_raster
from tests.test_evaluation import (
    BLOCK,
    block_center_labels,
    class_layout,
    class_scene,
    points,
    tiny_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def setup(tmp_path):
    scene = class_scene(tmp_path)
    rows, cols, cls = block_center_labels(60)
    gpkg = tmp_path / "pts.gpkg"
    points(scene, rows, cols, [f"c{c}" for c in cls], crs="EPSG:4326").to_file(gpkg)
    return tmp_path, scene, gpkg


def run(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


def test_cli_run_prints_table_and_writes_outputs(setup):
    tmp, scene, gpkg = setup
    ckpt = tiny_checkpoint(tmp / "tiny.pt", scene, tile=8)
    res = run("--scene", scene, "--labels", gpkg, "--label-column", "cls", "--checkpoint", ckpt,
              "--out", tmp / "out", "--features", "embedding,bands,random-encoder",
              "--learning-curve", "10,all", "--repeats", "2", "--block-size", BLOCK,
              "--device", "cpu", "--quiet")
    assert res.exit_code == 0, res.output
    assert "| feature set | classifier | cv | accuracy | macro-F1 |" in res.output
    assert "| bands | logreg | spatial | 1.000 | 1.000 |" in res.output
    assert "60 labels (0 dropped" in res.output
    report = json.loads((tmp / "out" / "report.json").read_text())
    assert [r["features"] for r in report["results"]] == ["embedding", "bands", "random-encoder"]
    assert report["feature_sets"]["embedding"] == 8 and report["tile_size"] == 8
    # the confusion plot of 3 classes: a (5 x 4) inch figure at 100 dpi
    from matplotlib.image import imread

    assert imread(tmp / "out" / "confusion.png").shape[:2] == (400, 500)
    assert report["best"]["macro_f1"] == 1.0  # bands separate the classes
    # again without --overwrite: refused; with it: replaced
    res = run("--scene", scene, "--labels", gpkg, "--label-column", "cls", "--out", tmp / "out",
              "--features", "bands", "--learning-curve", "none")
    assert res.exit_code == 2 and "exists; pass --overwrite" in res.output
    res = run("--scene", scene, "--labels", gpkg, "--label-column", "cls", "--out", tmp / "out",
              "--features", "bands", "--learning-curve", "none", "--overwrite", "--cv", "both",
              "--block-size", BLOCK)
    assert res.exit_code == 0, res.output
    assert "| bands | logreg | random |" in res.output


def test_cli_label_raster_with_max_labels(setup):
    tmp, scene, _ = setup
    lab = class_layout().astype("uint8")
    lab[:8] = 255  # unlabelled
    labels = write_raster(tmp / "lab.tif", lab[None], nodata=255)
    res = run("--scene", scene, "--labels-raster", labels, "--max-labels", 90, "--out",
              tmp / "out", "--features", "bands", "--learning-curve", "none", "--block-size",
              BLOCK, "--quiet")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp / "out" / "report.json").read_text())
    assert report["n_labels"] == 90
    assert sorted(c["name"] for c in report["classes"]) == ["0", "1", "2"]


def _bad(tmp, scene, gdf, *extra):
    path = tmp / "bad.gpkg"
    gdf.to_file(path)
    return run("--scene", scene, "--labels", path, "--label-column", "cls", "--out",
               tmp / "out", "--features", "bands", "--learning-curve", "none", *extra)


@pytest.mark.parametrize("case, message", [
    ("outside", "none of the 3 labels falls on a valid pixel"),
    ("column", "no column 'cls'"),
    ("one-class", "only one class"),
    ("crs", "cannot transform"),
])
def test_cli_bad_labels_exit_2(setup, case, message):
    tmp, scene, _ = setup
    if case == "outside":
        gdf = gpd.GeoDataFrame({"cls": [1, 2, 1]}, geometry=[Point(0, 0)] * 3, crs="EPSG:4326")
    elif case == "column":
        gdf = points(scene, [10, 20], [10, 20], ["a", "b"], column="other")
    elif case == "one-class":
        gdf = points(scene, [10, 20, 30], [10, 20, 30], ["a", "a", "a"])
    else:
        gdf = gpd.GeoDataFrame({"cls": ["a", "b"]}, geometry=[Point(1, 1), Point(2, 2)],
                               crs="IAU_2015:49900")  # Mars
    res = _bad(tmp, scene, gdf)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert not (tmp / "out").exists()


def test_cli_bad_embeddings_and_options_exit_2(setup):
    tmp, scene, gpkg = setup
    far = write_raster(tmp / "far.tif", np.zeros((3, 8, 8), np.float32), crs="EPSG:32601")
    res = run("--scene", scene, "--labels", gpkg, "--label-column", "cls", "--embeddings", far,
              "--out", tmp / "out", "--learning-curve", "none")
    assert res.exit_code == 2 and "covers none of the 60 labels" in res.output
    res = run("--scene", scene, "--out", tmp / "out")
    assert res.exit_code == 2 and "give exactly one of --labels" in res.output
    res = run("--scene", scene, "--labels", gpkg, "--out", tmp / "out")
    assert res.exit_code == 2 and "--label-column is needed" in res.output
    res = run("--scene", scene, "--labels", gpkg, "--label-column", "cls", "--out",
              tmp / "out", "--features", "embedding")
    assert res.exit_code == 2 and "need --checkpoint or --embeddings" in res.output
    res = run("--scene", scene, "--labels", gpkg, "--label-column", "cls", "--out",
              tmp / "out", "--features", "bands", "--learning-curve", "10,x")
    assert res.exit_code == 2 and "'x' is not a number" in res.output
    res = run("--scene", scene, "--labels", gpkg, "--label-column", "cls", "--out",
              tmp / "out", "--features", "bands,ndvi", "--learning-curve", "none")
    assert res.exit_code == 2 and "unknown ndvi" in res.output
    res = run("--scene", scene, "--labels", gpkg, "--label-column", "cls", "--out",
              tmp / "out", "--features", "bands", "--learning-curve", "10,1")
    assert res.exit_code == 2 and "size 1 is too small" in res.output
    res = run("--scene", scene, "--labels", gpkg, "--label-column", "cls", "--out",
              tmp / "out", "--features", "bands", "--folds", "25", "--learning-curve", "none")
    assert res.exit_code == 2 and "fewer than 2 classes have at least 25 labels" in res.output
    assert not (tmp / "out").exists()


def test_cli_help_shows_defaults():
    res = CliRunner().invoke(cli, ["evaluate", "--help"])
    assert res.exit_code == 0
    for text in ("--cv [spatial|random|both]", "default: spatial", "default: 4 tiles",
                 "10,20,50,100,200,500,all", "--polygon-samples", "--labels-raster"):
        assert text in res.output
