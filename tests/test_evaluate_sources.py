"""`evaluate` with several embedding sources: names, same labels and folds, ranking, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli

from geoembed.errors import CRSError, InputError, RasterError
from geoembed.evaluation.config import EvaluateConfig
from geoembed.evaluation.evaluate import evaluate
from geoembed.evaluation.ranking import fold_scores, rank_sources, source_rankings
from geoembed.evaluation.sources import Source, expand_features, resolve_sources, split_name
from tests.conftest import write_raster
from tests.test_evaluation import (
    BLOCK,
    _embedding_raster,
    block_center_labels,
    class_scene,
    points,
    read_predictions,
    tiny_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUICK = {"block_size": BLOCK, "learning_curve_sizes": "none", "quiet": True, "plots": False}
TOP = 64  # the partial raster covers scene rows 0..63


def _partial_noise(path: Path) -> Path:
    """A 3-band noise 'embedding' on the scene's grid over rows 0..TOP-1 only."""
    rng = np.random.default_rng(5)
    return write_raster(path, rng.normal(0, 1, (3, TOP, 96)).astype(np.float32))


@pytest.fixture
def two_rasters(tmp_path):
    scene = class_scene(tmp_path)
    good = _embedding_raster(tmp_path / "good.tif", scene, dst_crs="EPSG:4326")
    noise = _partial_noise(tmp_path / "noise.tif")
    rows, cols, cls = block_center_labels(150, seed=4)
    return tmp_path, scene, good, noise, points(scene, rows, cols, [f"c{c}" for c in cls]), rows


# ----------------------------------------------------------------------------- names

def test_name_parsing_and_collisions(tmp_path):
    assert split_name("mine=runs/a.tif") == ("mine", "runs/a.tif")
    assert split_name("runs/a.tif") == (None, "runs/a.tif")
    assert split_name("https://h.org/e.tif?v=2") == (None, "https://h.org/e.tif?v=2")
    odd = tmp_path / "x=y.tif"
    odd.write_bytes(b"")
    assert split_name(str(odd)) == (None, str(odd))  # an existing file keeps its '='
    with pytest.raises(InputError, match="no path after '='"):
        split_name("mine=")
    # one plain path is "embedding"; several are named by their stems
    assert resolve_sources(None, "runs/a.tif") == [Source("embedding", "embeddings", "runs/a.tif")]
    got = resolve_sources("runs/ck.pt", ["ae=x/alpha.tif", Path("y/tessera.int8.tif")])
    assert [(s.name, s.kind) for s in got] == [("ck", "checkpoint"), ("ae", "embeddings"),
                                               ("tessera.int8", "embeddings")]
    assert [s.name for s in resolve_sources(None, {"p": "a.tif", "q": "b.tif"})] == ["p", "q"]
    assert EvaluateConfig(embeddings=("x=a.tif",)).sources()[0].name == "x"
    for bad, message in [({"embeddings": ["a/emb.tif", "b/emb.tif"]}, "named 'emb'"),
                         ({"embeddings": "x=a.tif", "checkpoint": "x=c.pt"}, "named 'x'"),
                         ({"embeddings": {"pca": "a.tif"}}, "'pca' is the name of a feature"),
                         ({"embeddings": ["bands=a.tif", "b.tif"]}, "'bands' is the name"),
                         ({"embeddings": {"a+b": "a.tif"}}, "source name 'a\\+b'")]:
        with pytest.raises(InputError, match=message):
            EvaluateConfig(**bad)
    # feature sets: one per source, random-encoder per checkpoint
    srcs = resolve_sources("ck=c.pt", ["a=a.tif"])
    assert [f for f, _, _ in expand_features(
        ["embedding", "bands", "random-encoder", "embedding+bands"], srcs)] == \
        ["ck", "a", "bands", "ck:random-encoder", "ck+bands", "a+bands"]
    one = resolve_sources("c.pt", None)
    assert [f for f, _, _ in expand_features(["embedding", "random-encoder", "embedding+bands"],
                                             one)] == ["embedding", "random-encoder",
                                                       "embedding+bands"]
    assert EvaluateConfig(embeddings=["a=a.tif", "b=b.tif"]).feature_names() == \
        ["embedding", "bands", "tile-stats", "pca", "embedding+bands"]


# ----------------------------------------------------------------------------- ranking maths

def test_fold_scores_known_answer():
    y = np.array([0, 0, 1, 1, 0, 1, 2])
    pred = np.array([0, 1, 1, 1, 0, 0, 2])
    fold = np.array([0, 0, 0, 1, 1, 1, 2])
    got = fold_scores(y, pred, fold, 3)
    assert got["fold"] == [0, 1, 2] and got["n_test"] == [3, 3, 1]
    np.testing.assert_allclose(got["accuracy"], [2 / 3, 2 / 3, 1.0])
    # macro-F1 over the classes in the fold's truth: class 2 is absent from folds 0 and 1
    np.testing.assert_allclose(got["macro_f1"], [2 / 3, 2 / 3, 1.0])


def test_paired_differences_known_answer():
    table = {
        "b": {"accuracy": [0.8, 0.8, 0.6, 0.7], "macro_f1": [0.7, 0.6, 0.6, 0.5]},
        "a": {"accuracy": [0.9, 0.8, 0.7, 0.9], "macro_f1": [0.8, 0.7, 0.6, 0.9]},
        # same mean macro-F1 as b, better accuracy: ranked before b
        "c": {"accuracy": [0.9, 0.9, 0.9, 0.9], "macro_f1": [0.6, 0.6, 0.6, 0.6]},
    }
    ranked = rank_sources(table)
    assert [(r["source"], r["rank"]) for r in ranked] == [("a", 1), ("c", 2), ("b", 3)]
    a, c, b = ranked
    assert a["macro_f1_mean"] == pytest.approx(0.75)
    assert a["macro_f1_std"] == pytest.approx(np.sqrt(0.05 / 3))  # sample std of .8 .7 .6 .9
    assert a["vs_best"]["macro_f1"] == {"mean_diff": 0.0, "std_diff": 0.0, "best_wins": 0}
    # b - a per fold: macro-F1 -.1 -.1 0 -.4 ; accuracy -.1 0 -.1 -.2
    assert b["vs_best"]["macro_f1"]["mean_diff"] == pytest.approx(-0.15)
    assert b["vs_best"]["macro_f1"]["std_diff"] == pytest.approx(np.sqrt(0.09 / 3))
    assert b["vs_best"]["macro_f1"]["best_wins"] == 3  # fold 2 is a tie
    assert b["vs_best"]["accuracy"]["mean_diff"] == pytest.approx(-0.1)
    assert b["vs_best"]["accuracy"]["std_diff"] == pytest.approx(np.sqrt(0.02 / 3))
    assert b["vs_best"]["accuracy"]["best_wins"] == 3
    # c's accuracy is never below a's: c - a = 0, .1, .2, 0
    assert c["vs_best"]["accuracy"]["best_wins"] == 0
    assert c["vs_best"]["accuracy"]["mean_diff"] == pytest.approx(0.075)
    assert c["n_folds"] == 4
    with pytest.raises(ValueError, match="different numbers of folds"):
        rank_sources({"a": {"accuracy": [1, 1], "macro_f1": [1, 1]},
                      "b": {"accuracy": [1], "macro_f1": [1]}})
    assert source_rankings([], ["a"]) == []  # one source: nothing to rank


# ----------------------------------------------------------------------------- evaluate

def test_two_sources_use_the_same_labels_and_folds(two_rasters):
    tmp, scene, good, noise, gdf, rows = two_rasters
    res = evaluate(scene, tmp / "both", labels=gdf, label_column="cls",
                   embeddings={"good": good, "noise": noise},
                   features="embedding,bands,embedding+bands", folds=3, **QUICK)
    rep = res.report
    # the labels the partial raster misses are dropped for both sources
    assert rep["dropped"]["no_embedding"] == int((rows >= TOP).sum()) > 0
    assert rep["n_labels"] == int((rows < TOP).sum())
    assert [(s["name"], s["not_covered"]) for s in rep["sources"]] == \
        [("good", 0), ("noise", int((rows >= TOP).sum()))]
    assert rep["embeddings"] == [str(good), str(noise)] and rep["checkpoint"] is None
    assert rep["feature_sets"] == {"good": 3, "noise": 3, "bands": 2, "good+bands": 5,
                                   "noise+bands": 5}
    preds = read_predictions(tmp / "both" / "predictions.csv")
    fold = np.array([int(p["fold_spatial"]) for p in preds])
    true = np.array([p["true"] for p in preds])
    by = {r["features"]: r for r in rep["results"]}
    for name in ("good", "noise"):
        pf = by[name]["per_fold"]
        assert pf["n_test"] == np.bincount(fold).tolist()  # the written folds, for both
        pred = np.array([p[f"{name}|logreg|spatial"] for p in preds])
        np.testing.assert_allclose(pf["accuracy"],
                                   [np.mean(pred[fold == k] == true[fold == k]) for k in range(3)])
    # the ranking: the one-hot raster first, the noise behind it in every fold
    (group,) = rep["ranking"]
    assert (group["cv"], group["classifier"]) == ("spatial", "logreg")
    best, worst = group["sources"]
    assert best["source"] == "good" and best["macro_f1_mean"] == 1.0
    assert worst["source"] == "noise" and worst["vs_best"]["macro_f1"]["best_wins"] == 3
    want = np.array(by["noise"]["per_fold"]["macro_f1"]) - 1.0
    assert worst["vs_best"]["macro_f1"]["mean_diff"] == pytest.approx(want.mean())
    assert worst["vs_best"]["macro_f1"]["std_diff"] == pytest.approx(want.std(ddof=1))
    assert "| 1 | good | 1.000 ± 0.000 | 1.000 ± 0.000 | best | best | - |" in \
        res.ranking_table()
    # the noise raster alone (a plain path): feature "embedding", the same labels, the same
    # fold of every label and the same predictions as in the two-source run
    one = evaluate(scene, tmp / "one", labels=gdf, label_column="cls", embeddings=noise,
                   features="embedding", folds=3, **QUICK)
    assert list(one.report["feature_sets"]) == ["embedding"] and one.report["ranking"] == []
    preds1 = read_predictions(tmp / "one" / "predictions.csv")
    assert [(p["row"], p["col"], p["fold_spatial"]) for p in preds1] == \
        [(p["row"], p["col"], p["fold_spatial"]) for p in preds]
    assert [p["embedding|logreg|spatial"] for p in preds1] == \
        [p["noise|logreg|spatial"] for p in preds]


def test_checkpoints_and_a_raster_together(tmp_path):
    scene = class_scene(tmp_path)
    ck1 = tiny_checkpoint(tmp_path / "ck1.pt", scene, tile=8, seed=1)
    ck2 = tiny_checkpoint(tmp_path / "ck2.pt", scene, tile=8, seed=2)
    emb = _embedding_raster(tmp_path / "emb.tif", scene, dst_crs="EPSG:32610")
    rows, cols, cls = block_center_labels(60, seed=1)
    gdf = points(scene, rows, cols, cls)
    common = dict(labels=gdf, label_column="cls", folds=3, device="cpu", pca_tiles=16, **QUICK)
    res = evaluate(scene, tmp_path / "all", checkpoint=[f"one={ck1}", ck2],
                   embeddings={"onehot": emb}, features="embedding,random-encoder", **common)
    rep = res.report
    assert rep["feature_sets"] == {"one": 8, "ck2": 8, "onehot": 3, "one:random-encoder": 8,
                                   "ck2:random-encoder": 8}
    assert [s["kind"] for s in rep["sources"]] == ["checkpoint", "checkpoint", "embeddings"]
    assert [r["source"] for r in rep["ranking"][0]["sources"]][0] == "onehot"
    # a checkpoint among others gives what it gives alone (same labels, folds, features)
    alone = evaluate(scene, tmp_path / "alone", checkpoint=ck1, features="embedding", **common)
    got = read_predictions(tmp_path / "all" / "predictions.csv")
    want = read_predictions(tmp_path / "alone" / "predictions.csv")
    assert [p["one|logreg|spatial"] for p in got] == [p["embedding|logreg|spatial"] for p in want]
    assert alone.report["checkpoint"] == str(ck1)


def test_source_errors_name_the_source(two_rasters):
    tmp, scene, good, noise, gdf, rows = two_rasters
    far = _embedding_raster(tmp / "far.tif", scene, dst_crs="EPSG:32610", shift=1e6)
    nocrs = write_raster(tmp / "nocrs.tif", np.zeros((3, 8, 8), np.float32), crs=None)
    bottom = write_raster(tmp / "bottom.tif", np.ones((3, 96 - TOP, 96), np.float32),
                          transform=rasterio.transform.from_origin(
                              500_000.0, 4_200_000.0 - 10.0 * TOP, 10.0, 10.0))
    for emb, err, message in [
            ({"good": good, "far": far}, RasterError, "embeddings source 'far': .*covers none"),
            ([str(good), str(nocrs)], CRSError, "embeddings source 'nocrs': .*no CRS"),
            ({"top": noise, "bottom": bottom}, RasterError,
             "rasters top, bottom cover none of the 150 labels together")]:
        with pytest.raises(err, match=message):
            evaluate(scene, tmp / "o", labels=gdf, label_column="cls", embeddings=emb,
                     features="embedding", **QUICK)
    assert not any(p.name in ("o", ".o") or p.name.startswith(".o.") for p in tmp.iterdir())


def test_cli_two_embeddings_ranked(two_rasters):
    tmp, scene, good, noise, gdf, _ = two_rasters
    gpkg = tmp / "pts.gpkg"
    gdf.to_file(gpkg)
    base = ["evaluate", "--scene", str(scene), "--labels", str(gpkg), "--label-column", "cls",
            "--features", "embedding", "--learning-curve", "none", "--folds", "3",
            "--block-size", str(BLOCK), "--quiet"]
    res = CliRunner().invoke(cli, [*base, "--embeddings", f"good={good}", "--embeddings",
                                   f"noise={noise}", "--out", str(tmp / "out")])
    assert res.exit_code == 0, res.output
    assert "| good | logreg | spatial | 1.000 | 1.000 |" in res.output
    assert "sources ranked by macro-F1 (spatial CV, logreg; mean ± std over 3 folds" in res.output
    assert "| 2 | noise |" in res.output and "| 3/3 |" in res.output
    report = json.loads((tmp / "out" / "report.json").read_text())
    assert [r["source"] for r in report["ranking"][0]["sources"]] == ["good", "noise"]
    assert [r["features"] for r in report["results"]] == ["good", "noise"]
    res = CliRunner().invoke(cli, [*base, "--embeddings", str(good), "--embeddings", str(good),
                                   "--out", str(tmp / "out2")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "Error: two embedding sources are named 'good'; name each one with NAME=PATH "
        "(e.g. --embeddings mine=emb.tif)"]
    assert not (tmp / "out2").exists()
