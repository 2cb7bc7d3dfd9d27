"""``geoembed weak train`` and ``geoembed segment`` through click's CliRunner."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli

from geoembed.trainers.fit import read_metrics
from tests.conftest import write_raster
from tests.test_weak import point_labels, tile_labels, weak_scene

TINY_ARGS = ["--tile-size", "32", "--encoder-depth", "3", "--decoder-channels", "16,8,4",
             "--batch-size", "8", "--device", "cpu", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_weak_train_then_segment_with_reference(tmp_path):
    scene, mask = weak_scene(tmp_path)
    tiles = tile_labels(tmp_path, mask, crs="EPSG:3857")
    run = tmp_path / "run"
    r = _run(["weak", "train", str(scene), "--labels", str(tiles), "--label-column", "crop",
              "--label-type", "image", "--out", str(run), "--epochs", "1", *TINY_ARGS])
    assert r.exit_code == 0, r.output
    assert (run / "checkpoint.pt").is_file() and (run / "metrics.csv").is_file()
    # resume to 2 epochs
    r = _run(["weak", "train", str(scene), "--labels", str(tiles), "--label-column", "crop",
              "--label-type", "image", "--out", str(run), "--epochs", "2", "--resume",
              *TINY_ARGS])
    assert r.exit_code == 0, r.output
    assert len(read_metrics(run / "metrics.csv")) == 2
    ref = write_raster(tmp_path / "landcover.tif", (mask * 3 + 2)[None].astype(np.uint8),
                       nodata=255)
    out = tmp_path / "crop.tif"
    r = _run(["segment", str(run / "checkpoint.pt"), str(scene), "--out", str(out),
              "--reference", str(ref), "--reference-positive", "5", "--probabilities",
              "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output and "F1" in r.output
    report = json.loads((tmp_path / "crop_report.json").read_text())
    assert report["pixels"] == mask.size
    assert report["classes"]["1"]["support"] == int(mask.sum())
    with rasterio.open(out) as ds, rasterio.open(scene) as src:
        assert ds.count == 1 and ds.nodata == 255
        assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)
        pred = ds.read(1)
    # the report's figures are those of the written class map against the reference
    tp, fp = int(((pred == 1) & (mask == 1)).sum()), int(((pred == 1) & (mask == 0)).sum())
    fn = int(((pred != 1) & (mask == 1)).sum())
    assert report["accuracy"] == pytest.approx((pred == mask).mean())
    assert report["classes"]["1"]["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    with rasterio.open(tmp_path / "crop_probabilities.tif") as ds:
        assert ds.count == 2 and ds.descriptions == ("p_0", "p_1")
    # the output exists: refused without --overwrite, exit status 2, one line
    r = _run(["segment", str(run / "checkpoint.pt"), str(scene), "--out", str(out)])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "--overwrite" in r.output


def test_weak_train_pixel_labels_summary(tmp_path):
    scene, mask = weak_scene(tmp_path)
    points = point_labels(tmp_path, mask, n=20)
    r = _run(["weak", "train", str(scene), "--labels", str(points), "--label-column", "crop",
              "--label-type", "pixel", "--out", str(tmp_path / "run"), "--epochs", "1",
              "--max-labels", "12", *[a for a in TINY_ARGS if a != "--quiet"]])
    assert r.exit_code == 0, r.output
    assert "pixel labels: 12 training items from 20" in r.output
    assert "classes: 0, 1" in r.output


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    scene, mask = weak_scene(tmp_path)
    tiles = tile_labels(tmp_path, mask)
    far = tile_labels(tmp_path, mask, name="far.gpkg", shift=5e5)
    ones = tmp_path / "ones.gpkg"
    g = gpd.read_file(tiles)
    g["crop"] = 0
    g.to_file(ones)
    lab = write_raster(tmp_path / "lab.tif", mask[None, :64, :64].copy())
    base = ["weak", "train", str(scene), "--out", str(tmp_path / "run"), *TINY_ARGS]
    cases = [
        (["--labels", str(tiles), "--label-column", "nope"], "no column 'nope'"),
        (["--labels", str(far), "--label-column", "crop"], "inside"),
        (["--labels", str(ones), "--label-column", "crop"], "only one class"),
        (["--labels", str(lab), "--label-type", "dense"], "not on the scene's grid"),
        (["--labels", str(tiles), "--label-column", "crop", "--positive", "7"],
         "no label equals"),
        (["--labels", str(tmp_path / "missing.gpkg"), "--label-column", "crop"],
         "no such file"),
    ]
    for extra, message in cases:
        r = _run([*base, *extra])
        assert r.exit_code == 2, (extra, r.output)
        assert r.output.startswith("Error:") and r.output.count("\n") == 1, r.output
        assert message in r.output, r.output
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_help_lists_options():
    r = _run(["weak", "train", "--help"])
    assert r.exit_code == 0 and "--label-type" in r.output and "--max-labels" in r.output
    r = _run(["segment", "--help"])
    assert r.exit_code == 0 and "--reference-positive" in r.output and "--stride" in r.output
