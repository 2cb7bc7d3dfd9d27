"""Spatial CV grouped by polygon (--cv-groups): a polygon's pixels never straddle folds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from geoembed.cli import cli

from geoembed.errors import InputError, LabelError
from geoembed.evaluation.evaluate import evaluate
from geoembed.evaluation.folds import (
    cv_groups,
    make_folds,
    merge_groups,
    resolve_cv_groups,
    spatial_blocks,
)
from geoembed.io.labels import vector_pixel_labels
from geoembed.io.scenes import open_scene
from geoembed.mapping.map import map as make_map
from tests.conftest import write_raster
from tests.test_evaluation import (
    BLOCK,
    block_center_labels,
    class_layout,
    class_scene,
    points,
)
from tests.test_evaluation import block_polygons as polygons

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = {"features": "bands", "learning_curve_sizes": "none", "quiet": True, "plots": False}


def folds_by_polygon(out: Path) -> dict[tuple[int, int], set[int]]:
    """The spatial folds of each polygon's labels (a polygon = its 16 px class block)."""
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    found: dict[tuple[int, int], set[int]] = {}
    for r in rows:
        key = (int(r["row"]) // BLOCK, int(r["col"]) // BLOCK)
        found.setdefault(key, set()).add(int(r["fold_spatial"]))
    return found


# ----------------------------------------------------------------------------- unit pieces

def test_merge_groups_joins_blocks_through_shared_polygons():
    # blocks 0-1 share polygon 8, blocks 1-2 share polygon 9: one group; block 5 alone;
    # block 7 holds polygons 11 and 12 (two polygons in one block: one group)
    blocks = np.array([0, 1, 1, 2, 5, 7, 7])
    feats = np.array([8, 8, 9, 9, 10, 11, 12])
    assert merge_groups(blocks, feats).tolist() == [0, 0, 0, 0, 1, 2, 2]
    assert merge_groups(np.array([], int), np.array([], int)).tolist() == []


def test_polygon_spanning_blocks_is_split_by_blocks_not_by_polygons():
    # a 2 x 40 px strip polygon (id 0) crosses 10 blocks of 4 px; 40 point labels (ids
    # 1..40) fill 40 more blocks below it
    strip_r, strip_c = np.repeat([0, 1], 40), np.tile(np.arange(40), 2)
    pt_r, pt_c = np.repeat([8, 12, 16, 20], 10), np.tile(np.arange(0, 40, 4), 4)
    rows, cols = np.r_[strip_r, pt_r], np.r_[strip_c, pt_c]
    feature = np.r_[np.zeros(80, int), np.arange(1, 41)]
    y = np.r_[np.zeros(80, int), np.arange(40) % 2]
    strip = feature == 0

    blocks = cv_groups(rows, cols, 4, "blocks", feature)
    assert np.array_equal(blocks, spatial_blocks(rows, cols, 4))
    fold_b, _, _ = make_folds(y, "spatial", 5, seed=0, groups=blocks)
    assert len(np.unique(fold_b[strip])) > 1  # the leak: the strip is in train and test

    groups = cv_groups(rows, cols, 4, "polygons", feature)
    assert len(np.unique(groups)) == 41  # the strip's 10 blocks are one group
    fold_p, k, notes = make_folds(y, "spatial", 5, seed=0, groups=groups, grouping="polygons")
    assert k == 5 and not notes and len(np.unique(fold_p[strip])) == 1
    # one polygon joining every block: no spatial CV is possible, and the error says why
    with pytest.raises(LabelError, match="one group of polygons.*--cv-groups blocks"):
        make_folds(y[:80], "spatial", 5, groups=groups[:80], grouping="polygons")


def test_resolve_cv_groups():
    assert resolve_cv_groups("auto", "polygons") == "polygons"
    assert resolve_cv_groups("auto", "points+polygons") == "polygons"
    assert resolve_cv_groups("auto", "points") == "blocks"
    assert resolve_cv_groups("auto", "raster") == "blocks"
    assert resolve_cv_groups("blocks", "polygons") == "blocks"
    assert resolve_cv_groups("polygons", "points") == "polygons"
    with pytest.raises(InputError, match="label raster"):
        resolve_cv_groups("polygons", "raster")
    with pytest.raises(InputError, match="--cv-groups"):
        resolve_cv_groups("polygon", "polygons")


def test_vector_labels_record_their_geometry(tmp_path):
    scene_path = class_scene(tmp_path)
    scene = open_scene(scene_path)
    polys = polygons(scene_path).iloc[:2]
    pts = points(scene_path, [5, 40], [5, 40], ["c0", "c1"])
    mixed = gpd.GeoDataFrame(pd.concat([polys, pts], ignore_index=True), crs=scene.crs)
    assert vector_pixel_labels(polys, scene, "cls").geometry == "polygons"
    assert vector_pixel_labels(pts, scene, "cls").geometry == "points"
    got = vector_pixel_labels(mixed, scene, "cls", polygon_samples=3, seed=0)
    assert got.geometry == "points+polygons"
    assert sorted(got.source_index.tolist()) == [0, 0, 0, 1, 1, 1, 2, 3]


# ----------------------------------------------------------------------------- evaluate

def test_evaluate_auto_keeps_each_polygon_in_one_fold_and_blocks_split_them(tmp_path):
    scene = class_scene(tmp_path)
    gdf = polygons(scene)
    # 8 px blocks: each polygon (pixels 2..13 of its 16 px block) spans 4 blocks
    auto = evaluate(scene, tmp_path / "auto", labels=gdf, label_column="cls",
                    polygon_samples=10, block_size=8, **FAST)
    assert auto.report["cv_groups"] == {"by": "polygons", "option": "auto", "n_groups": 36}
    assert all(len(f) == 1 for f in folds_by_polygon(tmp_path / "auto").values())
    saved = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert saved["cv_groups"]["by"] == "polygons"

    blocks = evaluate(scene, tmp_path / "blocks", labels=gdf, label_column="cls",
                      polygon_samples=10, block_size=8, cv_groups="blocks", **FAST)
    assert blocks.report["cv_groups"]["by"] == "blocks"
    assert blocks.report["cv_groups"]["n_groups"] > 36
    assert any(len(f) > 1 for f in folds_by_polygon(tmp_path / "blocks").values())


def test_evaluate_merges_polygons_that_share_blocks_and_notes_fewer_folds(tmp_path):
    scene = class_scene(tmp_path)
    # 24 px blocks: polygons of rows/cols 18..29 and 66..77 join blocks 0-1 and 2-3 in
    # each direction, so 2 x 2 = 4 groups, fewer than the 5 folds
    res = evaluate(scene, tmp_path / "out", labels=polygons(scene), label_column="cls",
                   polygon_samples=10, block_size=24, cv_groups="polygons", **FAST)
    assert res.report["cv_groups"]["n_groups"] == 4
    assert res.report["folds"] == {"spatial": 4}
    assert any("only 4 groups of polygons and blocks hold labels, so 4 folds" in w
               for w in res.report["warnings"])


def test_labels_raster_refuses_polygon_groups_and_auto_is_blocks(tmp_path):
    scene = class_scene(tmp_path)
    lab = write_raster(tmp_path / "labels.tif", (class_layout()[None] + 1).astype("uint8"),
                       nodata=0)
    with pytest.raises(InputError, match="label raster has no polygons"):
        evaluate(scene, tmp_path / "bad", labels_raster=lab, max_labels=120,
                 cv_groups="polygons", block_size=BLOCK, **FAST)
    assert not (tmp_path / "bad").exists()
    res = evaluate(scene, tmp_path / "ok", labels_raster=lab, max_labels=120,
                   block_size=BLOCK, **FAST)
    assert res.report["cv_groups"] == {"by": "blocks", "option": "auto", "n_groups": 36}


def test_cli_evaluate_cv_groups(tmp_path):
    scene = class_scene(tmp_path)
    polygons(scene).to_file(tmp_path / "polys.gpkg")
    res = CliRunner().invoke(cli, [
        "evaluate", "--scene", str(scene), "--labels", str(tmp_path / "polys.gpkg"),
        "--label-column", "cls", "--polygon-samples", "4", "--features", "bands",
        "--block-size", "8", "--cv-groups", "blocks", "--learning-curve", "none",
        "--out", str(tmp_path / "out"), "--quiet"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["cv_groups"]["by"] == "blocks" and report["cv_groups"]["option"] == "blocks"
    assert "spatial groups: blocks" in res.output
    bad = CliRunner().invoke(cli, ["evaluate", "--scene", str(scene), "--labels", "x.gpkg",
                                   "--label-column", "cls", "--cv-groups", "polygon",
                                   "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--cv-groups" in bad.output


# ----------------------------------------------------------------------------- map

def test_map_records_its_groups_and_refuses_polygons_on_a_label_raster(tmp_path):
    scene = class_scene(tmp_path)
    run = make_map(scene, tmp_path / "map.tif", labels=polygons(scene), label_column="cls",
                   polygon_samples=10, features="bands", block_size=24, quiet=True)
    cv = json.loads((tmp_path / "map.json").read_text())["cv"]
    assert (cv["groups"], cv["n_groups"], cv["folds"]) == ("polygons", 4, 4)
    assert "groups: polygons" in run.summary()
    assert json.loads((tmp_path / "map.json").read_text())["options"]["cv_groups"] == "auto"

    rows, cols, cls = block_center_labels(60)
    pts = points(scene, rows, cols, [f"c{c}" for c in cls])
    make_map(scene, tmp_path / "pts.tif", labels=pts, label_column="cls", features="bands",
             block_size=BLOCK, quiet=True)
    assert json.loads((tmp_path / "pts.json").read_text())["cv"]["groups"] == "blocks"

    lab = write_raster(tmp_path / "labels.tif", (class_layout()[None] + 1).astype("uint8"),
                       nodata=0)
    with pytest.raises(InputError, match="label raster has no polygons"):
        make_map(scene, tmp_path / "bad.tif", labels_raster=lab, max_labels=100,
                 features="bands", cv_groups="polygons", quiet=True)
    assert not (tmp_path / "bad.tif").exists()
