"""geoembed.evaluation: folds, features, known answers, reports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import Point

from geoembed.errors import CRSError, InputError, OutputExistsError, RasterError
from geoembed.evaluation.classifiers import cross_val_predict, learning_curve
from geoembed.evaluation.config import DEFAULT_SIZES, EvaluateConfig
from geoembed.evaluation.evaluate import evaluate
from geoembed.evaluation.features import read_tile, tile_statistics
from geoembed.evaluation.folds import make_folds, spatial_blocks
from geoembed.io.georef import rowcol_to_xy
from geoembed.io.scenes import open_scene
from geoembed.metrics import ConfusionAccumulator, class_metrics, scores
from tests.conftest import write_raster

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
BLOCK = 16  # class blocks of the constructed scenes


# ----------------------------------------------------------------------------- helpers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_checkpoint(path: Path, scene_path: Path, tile: int = 8, z_dim: int = 8,
                    seed: int = 1) -> Path:
    """A tile2vec checkpoint with an untrained tiny TileNet (what `geoembed train` writes)."""
    import torch

    from geoembed.io.checkpoint import save_checkpoint
    from geoembed.io.scenes import band_statistics
    from geoembed.models import build_encoder, encoder_config

    scene = open_scene(scene_path)
    stats = band_statistics([scene], n_windows=8, window_size=64)
    torch.manual_seed(seed)
    model = build_encoder("tilenet", scene.count, z_dim=z_dim, base_width=8)
    save_checkpoint(path, {"encoder": encoder_config("tilenet", scene.count, z_dim, 8),
                           "state_dict": model.state_dict(), "bands": list(scene.bands),
                           "band_stats": stats.to_dict(), "tile_size": tile}, kind="tile2vec")
    return path


def class_layout(size: int = 96) -> np.ndarray:
    """Class (0, 1, 2) of each pixel: 16 px blocks, every class in many blocks."""
    yy, xx = np.mgrid[0:size, 0:size]
    return ((yy // BLOCK) + 2 * (xx // BLOCK)) % 3


def class_scene(tmp_path: Path, size: int = 96, seed: int = 0) -> Path:
    """2-band uint16 scene whose first band is set by the class (separable), second is noise."""
    rng = np.random.default_rng(seed)
    cls = class_layout(size)
    b1 = 200 + 300 * cls + rng.normal(0, 20, cls.shape)
    b2 = 500 + rng.normal(0, 50, cls.shape)
    return write_raster(tmp_path / "classes.tif", np.stack([b1, b2]).astype("uint16"))


def points(scene_path: Path, rows, cols, labels, crs: str | None = None,
           column: str = "cls") -> gpd.GeoDataFrame:
    scene = open_scene(scene_path)
    x, y = rowcol_to_xy(scene.transform, np.asarray(rows), np.asarray(cols))
    gdf = gpd.GeoDataFrame({column: list(labels)},
                           geometry=[Point(a, b) for a, b in zip(x, y, strict=True)],
                           crs=scene.crs)
    return gdf.to_crs(crs) if crs else gdf


def block_center_labels(n: int, size: int = 96, seed: int = 0):
    """Random pixels at least 4 px from any class-block edge, with their classes."""
    rng = np.random.default_rng(seed)
    rows = (rng.integers(0, size // BLOCK, n) * BLOCK + rng.integers(4, BLOCK - 4, n))
    cols = (rng.integers(0, size // BLOCK, n) * BLOCK + rng.integers(4, BLOCK - 4, n))
    return rows, cols, class_layout(size)[rows, cols]


def read_predictions(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- unit pieces

def test_spatial_folds_keep_blocks_together():
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 400, 500), rng.integers(0, 300, 500)
    y = rng.integers(0, 3, 500)
    groups = spatial_blocks(rows, cols, 50)
    # block id is a function of (row // 50, col // 50) and nothing else
    keys = {(r // 50, c // 50): g for r, c, g in zip(rows, cols, groups, strict=True)}
    assert len(set(keys.values())) == len(keys)
    fold, k, notes = make_folds(y, "spatial", 5, seed=0, groups=groups)
    assert k == 5 and not notes and set(fold) == set(range(5))
    for g in np.unique(groups):
        assert len(np.unique(fold[groups == g])) == 1
    # random folds do split blocks (that is the leak spatial CV avoids)
    rfold, _, _ = make_folds(y, "random", 5, seed=0)
    assert any(len(np.unique(rfold[groups == g])) > 1 for g in np.unique(groups))
    # fewer blocks than folds: folds reduced, with a note
    fold2, k2, notes2 = make_folds(y[:40], "spatial", 5, groups=np.arange(40) % 3)
    assert k2 == 3 and "3 folds" in notes2[0] and set(fold2) == {0, 1, 2}


def test_read_tile_outside_scene_and_tile_stats(make_raster):
    scene = open_scene(make_raster(size=(32, 32), border=2))
    data, valid = read_tile(scene, 0, 31, 8)  # corner: only a quarter inside
    assert data.shape == (4, 8, 8) and valid.shape == (8, 8)
    assert not valid[:4].any() and not valid[:, 4:].any()   # outside the scene
    # inside: scene rows 0-3 x cols 27-30; the 2-px nodata border takes rows 0-1 and col 30
    assert valid[6:8, 0:3].all() and valid.sum() == 6
    assert (data[:, :4] == 0).all()
    full = scene.read()[:, 0:4, 27:31]
    np.testing.assert_array_equal(data[:, 4:, :4], full)
    norm = np.stack([data.astype(float)])
    stats = tile_statistics(norm, valid[None])
    px = data[:, valid].astype(float)
    np.testing.assert_allclose(stats[0], np.r_[px.mean(1), px.std(1)])


def test_learning_curve_caps_sizes_and_adds_all():
    y = np.repeat([0, 1], 30)
    fold = np.arange(60) % 3  # 10 labels of each class per fold
    # a feature that determines the class: every training subset (stratified) separates it
    lc = learning_curve(y[:, None].astype(float), y, fold, "logreg", [4, 10, 1000, "all"],
                        repeats=3, seed=0, n_classes=2)
    assert [p["n_train"] for p in lc] == [4, 10, 40]
    assert lc[-1]["all"] and lc[0]["repeats"] == 3 and lc[-1]["repeats"] == 1
    assert [(p["accuracy_mean"], p["accuracy_std"], p["macro_f1_mean"]) for p in lc] == \
        [(1.0, 0.0, 1.0)] * 3
    # a feature that says nothing: balanced training parts, zero decision function, every
    # label predicted as class 0 -> accuracy 1/2, macro-F1 (2/3 + 0) / 2
    lc = learning_curve(np.zeros((60, 1)), y, fold, "logreg", [4, "all"], repeats=2, seed=0,
                        n_classes=2)
    for p in lc:
        assert p["accuracy_mean"] == 0.5 and p["accuracy_std"] == 0.0
        assert p["macro_f1_mean"] == pytest.approx(1 / 3)


def test_out_of_fold_predictions_are_sklearns_with_the_same_folds():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import PredefinedSplit
    from sklearn.model_selection import cross_val_predict as sk_cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 90)
    x = y[:, None] + rng.normal(0, 1.5, (90, 3))
    fold, _, _ = make_folds(y, "random", 3, seed=0)
    want = sk_cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                                x, y, cv=PredefinedSplit(fold))
    np.testing.assert_array_equal(cross_val_predict(x, y, fold, "logreg"), want)
    # a training part with a single class predicts that class everywhere
    one = np.array([0, 0, 0, 1])
    np.testing.assert_array_equal(cross_val_predict(np.ones((4, 1)), one, np.array([0, 0, 0, 1]),
                                                    "rf"), [1, 1, 1, 0])


def test_class_metrics_known_confusion_matrix():
    # rows = truth, columns = prediction; class 2 never occurs (left out of the means)
    cm = [[5, 1, 0], [2, 3, 0], [0, 0, 0]]
    m = class_metrics(cm)
    assert m.accuracy == pytest.approx(8 / 11)
    np.testing.assert_allclose(m.precision, [5 / 7, 3 / 4, 0])
    np.testing.assert_allclose(m.recall, [5 / 6, 3 / 5, 0])
    np.testing.assert_allclose(m.f1, [10 / 13, 2 / 3, 0])
    np.testing.assert_allclose(m.iou, [5 / 8, 1 / 2, 0])
    assert m.macro_f1 == pytest.approx((10 / 13 + 2 / 3) / 2)
    assert m.mean_iou == pytest.approx(9 / 16)
    acc = ConfusionAccumulator(3)
    truth = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    pred = np.array([0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1])
    acc.add(truth[:4], pred[:4])  # chunk by chunk
    acc.add(truth[4:], pred[4:])
    rep = acc.report(["a", "b", "c"])
    assert rep["confusion_matrix"] == cm and rep["pixels"] == 11
    assert rep["classes"]["a"] == pytest.approx({"precision": 5 / 7, "recall": 5 / 6,
                                                 "f1": 10 / 13, "iou": 5 / 8, "support": 6})
    assert rep["mean_iou"] == pytest.approx(9 / 16)
    sc = scores(truth, pred, ["a", "b"])
    assert sc["accuracy"] == pytest.approx(8 / 11)
    assert sc["macro_f1"] == pytest.approx((10 / 13 + 2 / 3) / 2)
    assert sc["per_class"]["b"] == pytest.approx({"precision": 3 / 4, "recall": 3 / 5,
                                                   "f1": 2 / 3, "support": 5})


def test_config_checks_values_from_python_callers(tmp_path):
    cfg = EvaluateConfig(classifier="both", cv=["random"], features="bands, pca",
                         learning_curve_sizes="10,ALL")
    assert cfg.classifier == ("logreg", "rf") and cfg.cv == ("random",)
    assert cfg.features == ("bands", "pca") and cfg.learning_curve_sizes == (10, "all")
    assert EvaluateConfig(learning_curve_sizes="none").learning_curve_sizes == ()
    assert EvaluateConfig(learning_curve_sizes=None).learning_curve_sizes == DEFAULT_SIZES
    for bad, message in [({"classifier": "svm"}, "unknown classifier"),
                         ({"cv": ("spatial", "leave-one-out")}, "unknown CV scheme"),
                         ({"features": ["bands", "ndvi"]}, "unknown feature set"),
                         ({"learning_curve_sizes": [10, "x"]}, "'x' is not a number"),
                         ({"learning_curve_sizes": [1]}, "too small"),
                         ({"folds": 1}, "--folds must be at least 2"),
                         ({"repeats": 0}, "--repeats must be at least 1")]:
        with pytest.raises(InputError, match=message):
            EvaluateConfig(**bad)
    with pytest.raises(InputError, match="need --checkpoint or --embeddings"):
        EvaluateConfig(features=["embedding"]).feature_names()
    assert EvaluateConfig().feature_names() == ["bands", "tile-stats", "pca"]


# ----------------------------------------------------------------------------- known answers

def test_separable_by_band_value_gives_accuracy_one(tmp_path):
    scene = class_scene(tmp_path)
    rows, cols, cls = block_center_labels(150)
    gdf = points(scene, rows, cols, [f"c{c}" for c in cls])
    res = evaluate(scene, tmp_path / "out", labels=gdf, label_column="cls",
                   features="bands", classifier="both", block_size=BLOCK,
                   learning_curve_sizes="none", tile_size=8, pca_tiles=20, quiet=True,
                   plots=False)
    by = {(r["features"], r["classifier"]): r for r in res.rows}
    assert by[("bands", "logreg")]["accuracy"] == 1.0
    assert by[("bands", "rf")]["accuracy"] == 1.0
    assert by[("bands", "logreg")]["macro_f1"] == 1.0
    assert res.report["n_labels"] == 150 and res.report["n_dropped"] == 0


def test_random_labels_are_near_chance(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import PredefinedSplit
    from sklearn.model_selection import cross_val_predict as sk_cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scene = class_scene(tmp_path)
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 96, 240), rng.integers(0, 96, 240)
    labels = rng.integers(0, 3, 240)
    gdf = points(scene, rows, cols, labels)
    res = evaluate(scene, tmp_path / "out", labels=gdf, label_column="cls", features="bands",
                   block_size=BLOCK, learning_curve_sizes="none", quiet=True, seed=1)
    # no learning curve asked: no empty learning_curve.png, the confusion matrix still drawn
    assert {q.name for q in (tmp_path / "out").iterdir()} == {
        "report.json", "predictions.csv", "confusion.png"}
    acc = res.rows[0]["accuracy"]
    assert 0.2 < acc < 0.5, acc  # chance is 1/3
    # the exact number: the scene's band values at the labelled pixels, the written spatial
    # folds, a plain scikit-learn pipeline
    preds = read_predictions(tmp_path / "out" / "predictions.csv")
    r = np.array([int(p["row"]) for p in preds])
    c = np.array([int(p["col"]) for p in preds])
    with rasterio.open(scene) as ds:
        x = ds.read().astype(float)[:, r, c].T
    true = np.array([p["true"] for p in preds])
    fold = np.array([int(p["fold_spatial"]) for p in preds])
    want = sk_cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                                x, true, cv=PredefinedSplit(fold))
    np.testing.assert_array_equal([p["bands|logreg|spatial"] for p in preds], want)
    assert acc == np.mean(want == true)
    assert sorted(zip(r, c, strict=True)) == sorted(zip(rows, cols, strict=True))


# ----------------------------------------------------------------------------- sample data

@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """One evaluate run on sample_data (a quarter of the points, tiny random encoder)."""
    if not (SAMPLE / "scene.tif").exists():
        pytest.skip("sample_data is missing")
    tmp = tmp_path_factory.mktemp("sample")
    ckpt = tiny_checkpoint(tmp / "tiny.pt", SAMPLE / "scene.tif", tile=16)
    pts = gpd.read_file(SAMPLE / "points.gpkg").iloc[::4]
    pts.to_file(tmp / "pts.gpkg")  # still EPSG:4326
    res = evaluate(SAMPLE / "scene.tif", tmp / "out", labels=tmp / "pts.gpkg",
                   label_column="class", checkpoint=ckpt, cv="both", pca_tiles=64,
                   learning_curve_sizes="20,all", repeats=1, device="cpu", quiet=True)
    return res, pts


def test_report_recomputes_from_predictions(sample_run):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    res, pts = sample_run
    out = res.out_dir
    assert {p.name for p in out.iterdir()} == {"report.json", "predictions.csv",
                                               "learning_curve.png", "confusion.png"}
    report = json.loads((out / "report.json").read_text())
    preds = read_predictions(out / "predictions.csv")
    assert len(preds) == report["n_labels"] == len(pts)
    assert {c["name"]: c["count"] for c in report["classes"]} == \
        pts["class"].value_counts().to_dict()
    assert set(report["feature_sets"]) == {"embedding", "bands", "tile-stats", "random-encoder",
                                           "pca", "embedding+bands"}
    assert len(report["results"]) == 6 * 2
    true = [p["true"] for p in preds]
    for row in report["results"]:
        pred = [p[f"{row['features']}|{row['classifier']}|{row['cv']}"] for p in preds]
        assert row["accuracy"] == pytest.approx(accuracy_score(true, pred))
        assert row["macro_f1"] == pytest.approx(f1_score(true, pred, average="macro"))
        order = row["class_order"]
        np.testing.assert_array_equal(row["confusion_matrix"],
                                      confusion_matrix(true, pred, labels=order))
        # per-class recall by hand
        for c in order:
            idx = [i for i, t in enumerate(true) if t == c]
            hits = sum(pred[i] == c for i in idx)
            assert row["per_class"][c]["recall"] == pytest.approx(hits / len(idx))
        lc = row["learning_curve"]
        assert lc[0]["n_train"] == 20 and lc[-1]["all"]
        assert lc[-1]["macro_f1_mean"] == pytest.approx(row["macro_f1"])
    assert report["best"]["cv"] == "spatial"


def test_points_in_4326_land_on_their_true_pixels(sample_run):
    res, pts = sample_run
    preds = read_predictions(res.out_dir / "predictions.csv")
    with rasterio.open(SAMPLE / "landcover.tif") as ds:
        cover = ds.read(1)
    names = {c["id"]: c["name"] for c in json.loads((SAMPLE / "classes.json").read_text())}
    for p in preds:
        assert names[int(cover[int(p["row"]), int(p["col"])])] == p["true"]
    # and the map coordinates written are those of the points (scene CRS, pixel centers)
    utm = pts.to_crs(open_scene(SAMPLE / "scene.tif").crs)
    got = sorted((round(float(p["x"])), round(float(p["y"]))) for p in preds)
    want = sorted((round(g.x), round(g.y)) for g in utm.geometry)
    assert got == want


def test_spatial_folds_of_the_report_never_split_a_block(sample_run):
    res, _ = sample_run
    bs = res.report["block_size"]
    assert bs == 4 * 16  # default: 4 tiles
    preds = read_predictions(res.out_dir / "predictions.csv")
    fold_of_block: dict = {}
    for p in preds:
        key = (int(p["row"]) // bs, int(p["col"]) // bs)
        fold_of_block.setdefault(key, set()).add(p["fold_spatial"])
    assert all(len(f) == 1 for f in fold_of_block.values())
    assert len({p["fold_spatial"] for p in preds}) == res.report["folds"]["spatial"] == 5


# ----------------------------------------------------------------------------- drops, rare classes

def test_nodata_and_outside_labels_are_dropped_and_counted(make_raster, tmp_path):
    path = make_raster(size=(64, 64), border=4)
    rng = np.random.default_rng(0)
    rows = list(rng.integers(8, 56, 30)) + [1, 2, 62] + [-5, 70]
    cols = list(rng.integers(8, 56, 30)) + [30, 1, 20] + [10, 10]
    labels = ["a", "b"] * 15 + ["a", "b", "a", "b", "a"]
    gdf = points(path, rows, cols, labels, crs="EPSG:4326")
    res = evaluate(path, tmp_path / "out", labels=gdf, label_column="cls", features="bands",
                   folds=2, block_size=8, learning_curve_sizes="none", quiet=True, plots=False)
    rep = res.report
    assert rep["dropped"] == {"outside": 2, "nodata": 3, "no_embedding": 0}
    assert rep["n_dropped"] == 5 and rep["n_labels"] == 30 and rep["n_input"] == 35


def test_class_with_fewer_labels_than_folds_is_left_out(tmp_path):
    scene = class_scene(tmp_path)
    rows, cols, cls = block_center_labels(60)
    labels = [f"c{c}" for c in cls]
    gdf = points(scene, list(rows) + [5, 40], list(cols) + [5, 40], labels + ["rare", "rare"])
    res = evaluate(scene, tmp_path / "out", labels=gdf, label_column="cls", features="bands",
                   folds=3, block_size=BLOCK, learning_curve_sizes="none", quiet=True, plots=False)
    rep = res.report
    assert rep["excluded_classes"] == ["rare"]
    assert any("rare (2)" in w for w in rep["warnings"])
    assert rep["n_labels"] == 60 and "rare" not in rep["results"][0]["class_order"]
    assert [c["in_cv"] for c in rep["classes"] if c["name"] == "rare"] == [False]


def block_polygons(scene_path: Path) -> gpd.GeoDataFrame:
    """One square polygon inside each 16 px class block (pixels 2..13 of it), 36 in all."""
    from shapely.geometry import box

    scene = open_scene(scene_path)
    cls = class_layout()
    geoms, names = [], []
    for bi in range(0, 96, BLOCK):
        for bj in range(0, 96, BLOCK):
            x0, y0 = scene.transform @ (bj + 2, bi + 2)
            x1, y1 = scene.transform @ (bj + BLOCK - 2, bi + BLOCK - 2)
            geoms.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
            names.append(f"c{cls[bi, bj]}")
    return gpd.GeoDataFrame({"cls": names}, geometry=geoms, crs=scene.crs)


def test_polygons_with_polygon_samples(tmp_path):
    scene_path = class_scene(tmp_path)
    gdf = block_polygons(scene_path).to_crs("EPSG:3857")
    res = evaluate(scene_path, tmp_path / "out", labels=gdf, label_column="cls",
                   polygon_samples=5, features="bands", block_size=BLOCK,
                   learning_curve_sizes="none", quiet=True, plots=False)
    assert res.report["n_input"] == 36 * 5 and res.report["n_labels"] == 180
    assert res.rows[0]["accuracy"] == 1.0


# ----------------------------------------------------------------------------- embedding rasters

def _embedding_raster(path: Path, scene_path: Path, *, dst_crs: str, int8: bool = False,
                      shift: float = 0.0) -> Path:
    """A 3-band 'embedding' raster (one-hot of the class), reprojected to ``dst_crs``."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from geoembed.io.embeddings import quantize

    scene = open_scene(scene_path)
    onehot = np.eye(3, dtype=np.float32)[class_layout()].transpose(2, 0, 1)
    left, bottom, right, top = scene.dataset.bounds
    transform, w, h = calculate_default_transform(scene.crs, dst_crs, scene.width,
                                                  scene.height, left, bottom, right, top)
    dst = np.full((3, h, w), np.nan, np.float32)
    reproject(onehot, dst, src_transform=scene.transform, src_crs=scene.crs,
              dst_transform=transform, dst_crs=dst_crs, resampling=Resampling.nearest,
              dst_nodata=np.nan)
    transform = transform @ rasterio.Affine.translation(shift, 0)
    if int8:
        return write_raster(path, quantize(dst), crs=dst_crs, transform=transform, nodata=-128)
    return write_raster(path, dst, crs=dst_crs, transform=transform, nodata=np.nan)


@pytest.mark.parametrize("int8", [False, True])
def test_embedding_geotiff_in_another_crs_is_sampled_at_the_labels(tmp_path, int8):
    scene = class_scene(tmp_path)
    emb = _embedding_raster(tmp_path / "emb.tif", scene, dst_crs="EPSG:4326", int8=int8)
    rows, cols, cls = block_center_labels(90, seed=2)
    gdf = points(scene, rows, cols, cls)
    res = evaluate(scene, tmp_path / "out", labels=gdf, label_column="cls", embeddings=emb,
                   features="embedding,pca", block_size=BLOCK, tile_size=8, pca_tiles=30,
                   learning_curve_sizes="none", quiet=True, plots=False)
    by = {r["features"]: r for r in res.rows}
    assert by["embedding"]["accuracy"] == 1.0
    assert res.report["feature_sets"]["embedding"] == 3


def test_embedding_geotiff_errors(tmp_path):
    scene = class_scene(tmp_path)
    rows, cols, cls = block_center_labels(40)
    gdf = points(scene, rows, cols, cls)
    far = _embedding_raster(tmp_path / "far.tif", scene, dst_crs="EPSG:32610", shift=1e6)
    with pytest.raises(RasterError, match="covers none of the 40 labels"):
        evaluate(scene, tmp_path / "o1", labels=gdf, label_column="cls", embeddings=far,
                 learning_curve_sizes="none", quiet=True, plots=False)
    nocrs = write_raster(tmp_path / "nocrs.tif", np.zeros((3, 8, 8), np.float32), crs=None)
    with pytest.raises(CRSError, match="no CRS"):
        evaluate(scene, tmp_path / "o2", labels=gdf, label_column="cls", embeddings=nocrs,
                 learning_curve_sizes="none", quiet=True, plots=False)
    with pytest.raises(InputError, match="random-encoder need --checkpoint"):
        evaluate(scene, tmp_path / "o3", labels=gdf, label_column="cls",
                 embeddings=tmp_path / "far.tif", features="random-encoder", quiet=True)
    assert not any(p.name.startswith(("o1", "o2", "o3", ".o")) for p in tmp_path.iterdir())


def test_existing_output_refused(tmp_path):
    scene = class_scene(tmp_path)
    (tmp_path / "out").mkdir()
    rows, cols, cls = block_center_labels(40)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        evaluate(scene, tmp_path / "out", labels=points(scene, rows, cols, cls),
                 label_column="cls", features="bands", quiet=True)
