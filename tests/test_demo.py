"""`geoembed demo --quick` end to end: every promised output exists and opens."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli
from matplotlib.image import imread

from geoembed.demo import sample_data_dir

SCENE_CRS = "EPSG:32615"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_output"
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--quick", "--quiet",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output + str(res.exception)
    return out, res


def _png(path, channels=(3, 4)):
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in channels and min(img.shape[:2]) > 10, path
    return img


def test_summary_printed(demo):
    out, res = demo
    text = res.output
    assert "geoembed demo (--quick)" in text
    assert "| step | result | files | s |" in text
    for step in ("| tile |", "| train |", "| embed |", "| preview |", "| similar |",
                 "| evaluate |", "| weak train + segment |", "| overview |"):
        assert step in text, step
    assert "triplet loss" in text and "crop F1" in text and "texture F1" in text
    assert (out / "summary.md").read_text().strip() == text.strip()


def test_demo_json_lists_existing_outputs(demo):
    out, _ = demo
    meta = json.loads((out / "demo.json").read_text())
    assert meta["quick"] is True
    assert {"tile", "train", "embed", "preview", "similar", "evaluate", "weak"} <= set(
        meta["metrics"])
    expected = {"triplets", "checkpoint", "metrics_csv", "loss_plot", "embeddings", "preview",
                "similarity", "evaluation_report", "learning_curve", "confusion",
                "weak_pixel_checkpoint", "segmentation", "segmentation_report", "overview",
                "summary", "demo_json"}
    assert expected <= set(meta["outputs"])
    for name, path in meta["outputs"].items():
        assert Path(path).exists(), name
    assert meta["total_seconds"] == pytest.approx(sum(meta["seconds"].values()))
    train = meta["metrics"]["train"]
    assert math.isfinite(train["final_loss"]) and train["d_an"] >= 0 and train["d_ad"] >= 0


def test_triplets_and_training_run(demo):
    from geoembed.io.checkpoint import load_checkpoint
    from geoembed.io.store import open_store

    out, _ = demo
    store = open_store(out / "triplets")
    assert store.n_triplets == 200 and store.triplets.shape[1:] == (3, 4, 32, 32)
    fp = gpd.read_file(out / "triplets" / "footprints.gpkg", layer="footprints")
    assert fp.crs == SCENE_CRS and len(fp) == 3 * 200
    ckpt = load_checkpoint(out / "run" / "checkpoint.pt", kind="tile2vec")
    assert ckpt["tile_size"] == 32 and ckpt["encoder"]["z_dim"] == 8
    with open(out / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["loss"]) > 0
    _png(out / "run" / "loss.png")


def test_rasters_are_georeferenced(demo):
    out, _ = demo
    with rasterio.open(out / "embeddings.tif") as ds:
        assert ds.crs == SCENE_CRS and ds.count == 8 and ds.dtypes[0] == "float32"
        assert ds.descriptions[0] == "emb_000" and math.isnan(ds.nodata)
        assert ds.tags()["geoembed_product"] == "embedding"
        assert np.isfinite(ds.read()).any()
    with rasterio.open(out / "similarity.tif") as ds:
        assert ds.crs == SCENE_CRS and ds.count == 1
        sim = ds.read(1)
        ok = np.isfinite(sim)
        assert ok.any() and np.all(np.abs(sim[ok]) <= 1 + 1e-5)
    with rasterio.open(out / "segmentation.tif") as seg, \
            rasterio.open(sample_data_dir() / "scene.tif") as scene:
        assert seg.crs == scene.crs and seg.transform == scene.transform
        assert seg.dtypes[0] == "uint8" and seg.nodata == 255
        values = np.unique(seg.read(1))
        assert set(values.tolist()) <= {0, 1, 255} and 255 in values


def test_reports_and_pictures(demo):
    out, _ = demo
    rep = json.loads((out / "evaluation" / "report.json").read_text())
    assert {"results", "best", "n_labels", "folds", "classes"} <= set(rep)
    feats = {r["features"] for r in rep["results"]}
    assert {"embedding", "bands", "tile-stats", "random-encoder", "pca"} <= feats
    assert {r["cv"] for r in rep["results"]} == {"spatial", "random"}
    assert (out / "evaluation" / "predictions.csv").stat().st_size > 0
    seg = json.loads((out / "segmentation_report.json").read_text())
    assert {"accuracy", "classes", "macro_f1", "mean_iou", "confusion_matrix"} <= set(seg)
    assert 0 <= seg["accuracy"] <= 1 and seg["pixels"] > 0
    for png in ("preview.png", "overview.png", "evaluation/learning_curve.png",
                "evaluation/confusion.png"):
        _png(out / png)
    assert _png(out / "preview.png").shape[2] == 4  # RGBA: nodata transparent


def test_refuses_existing_output_and_foreign_directory(demo, tmp_path):
    out, _ = demo
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--quick", "--quiet"])
    assert res.exit_code == 2 and "exists" in res.stderr
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    res = CliRunner().invoke(cli, ["demo", "--out", str(foreign), "--quick", "--overwrite"])
    assert res.exit_code == 2 and "not a geoembed demo directory" in res.stderr
    assert (foreign / "thesis.tex").read_text() == "keep me"
