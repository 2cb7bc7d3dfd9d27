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
from rasterio.transform import rowcol

from geoembed.demo import SIMILAR_CLASS, TEXTURE_CLASSES, sample_data_dir
from geoembed.io.georef import window_grid_transform

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
    with open(out / "run" / "metrics.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    for key in ("loss", "d_an", "d_ad"):  # the summary reports the training's own figures
        assert train["final_loss" if key == "loss" else key] == pytest.approx(
            float(last[key]), rel=1e-4), key
    # neighbours embed closer than distant tiles (today 1.70 vs 1.88 after one epoch)
    assert train["d_an"] < train["d_ad"] - 0.05


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
    # the CSV holds the epoch's loss as the checkpoint's history has it (6 significant digits)
    assert len(rows) == 1 and len(ckpt["history"]) == 1
    assert float(rows[0]["loss"]) == pytest.approx(ckpt["history"][0]["loss"], rel=1e-5)
    _png(out / "run" / "loss.png")


def test_rasters_are_georeferenced(demo):
    out, _ = demo
    with rasterio.open(sample_data_dir() / "scene.tif") as scene:
        scene_transform = scene.transform
    with rasterio.open(out / "embeddings.tif") as ds:
        # pooling center: every stage's centre cell, 4 * (1 + 2 + 4 + 8) + z 8 values
        assert ds.crs == SCENE_CRS and ds.count == 68 and ds.dtypes[0] == "float32"
        # one pixel per 32 px window at stride 32: 64 m pixels, centred on the windows
        assert ds.transform == window_grid_transform(scene_transform, 32, 32)
        assert ds.transform.a == 64.0 and (ds.width, ds.height) == (32, 32)
        assert ds.transform @ (0.5, 0.5) == scene_transform @ (16, 16)
        assert ds.descriptions[0] == "emb_000" and math.isnan(ds.nodata)
        assert ds.tags()["geoembed_product"] == "embedding"
        assert np.isfinite(ds.read()).any()
    with rasterio.open(out / "similarity.tif") as ds:
        assert ds.crs == SCENE_CRS and ds.count == 1
        assert ds.transform == window_grid_transform(scene_transform, 32, 32)
        sim = ds.read(1)
    assert np.isfinite(sim).sum() > 900  # 32 x 32 px, a few on nodata
    np.testing.assert_allclose(sim, _expected_similarity(out), atol=1e-5)
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
    with open(out / "evaluation" / "predictions.csv", newline="") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == rep["n_labels"]  # one out-of-fold prediction per label
    true = [p["true"] for p in preds]
    for r in rep["results"]:  # each reported accuracy is its predictions column's
        pred = [p[f"{r['features']}|{r['classifier']}|{r['cv']}"] for p in preds]
        assert r["accuracy"] == pytest.approx(np.mean([a == b for a, b in zip(true, pred,
                                                                              strict=True)]))
    spatial = {r["features"]: r for r in rep["results"] if r["cv"] == "spatial"}
    # the sample data's known answer: band values separate the spectral classes (F1 1.00,
    # 1.00, 0.92 with the newest scikit-learn; 1.00, 0.75, 0.94 with 1.3, whose
    # StratifiedGroupKFold shuffles blocks into other folds) but not the texture-only pairs
    # (grassland 0.16 / 0.12, shrubland 0.08 / 0.06)
    bands = spatial["bands"]["per_class"]
    assert np.mean([bands[c]["f1"] for c in ("water", "urban", "forest")]) > 0.85, bands
    assert bands["water"]["f1"] > 0.95, bands
    assert max(bands[c]["f1"] for c in ("grassland", "shrubland")) < 0.4, bands
    assert spatial["embedding"]["macro_f1"] > 0.3  # 7 classes, chance 0.14; today 0.40
    rows = json.loads((out / "demo.json").read_text())["metrics"]["evaluate"]["rows"]
    emb = next(r for r in rows if r["features"] == "embedding" and r["cv"] == "spatial")
    assert emb["texture_f1"] == pytest.approx(np.mean([
        spatial["embedding"]["per_class"][c]["f1"] for c in TEXTURE_CLASSES]))
    seg = json.loads((out / "segmentation_report.json").read_text())
    _check_segmentation_report(out, seg)
    for png in ("preview.png", "overview.png", "evaluation/learning_curve.png",
                "evaluation/confusion.png"):
        _png(out / png)
    assert _png(out / "preview.png").shape[2] == 4  # RGBA: nodata transparent


def _expected_similarity(out: Path) -> np.ndarray:
    """Cosine similarity to the unit mean of the first 3 grassland points' unit embeddings,
    recomputed from embeddings.tif."""
    pts = gpd.read_file(sample_data_dir() / "points.gpkg").to_crs(SCENE_CRS)
    pts = pts[pts["class"] == SIMILAR_CLASS]
    with rasterio.open(out / "embeddings.tif") as ds:
        emb = ds.read()
        rows, cols = rowcol(ds.transform, pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy())
    refs = emb[:, np.asarray(rows), np.asarray(cols)].T
    refs = refs[np.isfinite(refs).all(axis=1)][:3]
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    ref = refs.mean(axis=0) / np.linalg.norm(refs.mean(axis=0))
    return np.einsum("z,zhw->hw", ref, emb) / np.linalg.norm(emb, axis=0)


def _check_segmentation_report(out: Path, seg: dict) -> None:
    """The report's figures are those of segmentation.tif against the true crop classes."""
    with rasterio.open(out / "segmentation.tif") as ds:
        pred = ds.read(1)
    with rasterio.open(sample_data_dir() / "landcover.tif") as ds:
        truth = ds.read(1)
    valid = (pred != 255) & (truth != 255)
    crop, found = np.isin(truth, [3, 5])[valid], (pred == 1)[valid]
    tp, fp = int((crop & found).sum()), int((~crop & found).sum())
    fn, tn = int((crop & ~found).sum()), int((~crop & ~found).sum())
    assert seg["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert seg["pixels"] == valid.sum() == tn + fp + fn + tp
    assert seg["accuracy"] == pytest.approx((tp + tn) / valid.sum())
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert seg["classes"]["1"]["f1"] == pytest.approx(f1)
    demo_f1 = json.loads((out / "demo.json").read_text())["metrics"]["weak"]["pixel"]["crop_f1"]
    assert demo_f1 == pytest.approx(f1)
    assert f1 > 0.3  # one epoch on 64 labelled pixels: today 0.37


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
