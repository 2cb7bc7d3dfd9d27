"""Whole-scene segmentation: stitching, seams, streaming, outputs, reference scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from sklearn.metrics import f1_score, jaccard_score, precision_score

from geoembed.errors import InputError, OutputExistsError, RasterError
from geoembed.inference.config import SegmentConfig
from geoembed.inference.segmentation import NODATA, WeakPredictor, segment
from geoembed.inference.stitch import blend_weights
from geoembed.io.checkpoint import load_checkpoint
from geoembed.io.scenes import open_scene
from geoembed.samplers.grid import grid_offsets
from geoembed.trainers.weak import weak_train
from tests.conftest import write_raster
from tests.test_weak import TINY, point_labels, weak_scene

TILE = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A tiny pixel-label model trained for a few epochs on the checkerboard scene."""
    tmp = tmp_path_factory.mktemp("seg")
    path, mask = weak_scene(tmp)
    points = point_labels(tmp, mask, n=64)
    res = weak_train(path, points, tmp / "run", label_type="pixel", label_column="crop",
                     tile_size=TILE, epochs=5, batch_size=16, lr=3e-3, quiet=True,
                     device="cpu", **TINY)
    return {"dir": tmp, "scene": path, "mask": mask, "ckpt": res.checkpoint}


def _scene(tmp: Path, shape: tuple[int, int], seed: int = 1, border: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    cls = ((yy // 24 + xx // 24) % 2 == 0)
    data = np.stack([1000 + 300.0 * cls * (0.5 + (xx % 4 < 2)) + rng.normal(0, 40, (h, w))
                     for _ in range(4)]).astype(np.uint16)
    nodata = None
    if border:
        data[:, :, :border] = 0
        nodata = 0
    return write_raster(tmp / f"s{h}x{w}_{seed}_{border}.tif", data, nodata=nodata)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def _window_probs(predictor: WeakPredictor, scene_path: Path, r: int, c: int, t: int
                  ) -> np.ndarray:
    scene = open_scene(scene_path, bands=predictor.bands)
    data, valid = scene.read_with_mask(Window(c, r, t, t))
    x = predictor.normalize(data[None], valid[None])
    return predictor.probabilities(predictor.logits(x))[0]


def test_stitched_equals_the_single_window_prediction_without_overlap(trained, tmp_path):
    scene = _scene(tmp_path, (100, 70))  # 100 = 3 * 32 + 4: a last, overlapping window row
    out = tmp_path / "seg.tif"
    res = segment(trained["ckpt"], scene, out, stride=TILE, probabilities=True, quiet=True,
                  device="cpu")
    probs = _read(res.probabilities)
    predictor = WeakPredictor.load(trained["ckpt"], device="cpu")
    # windows at rows 0, 32 (rows < 68 are covered by them alone), cols 0 (cols < 38)
    for r in (0, 32):
        expected = _window_probs(predictor, scene, r, 0, TILE)
        got = probs[:, r:r + TILE, 0:TILE]
        rows_alone = min(TILE, 68 - r)
        np.testing.assert_allclose(got[:, :rows_alone, :38], expected[:, :rows_alone, :38],
                                   atol=1e-5)
    classes = _read(out)[0]
    assert set(np.unique(classes)) <= {0, 1}
    np.testing.assert_array_equal(classes, (probs[1] > 0.5).astype(np.uint8))


def test_streaming_equals_whole_scene_accumulation(trained, tmp_path):
    scene = _scene(tmp_path, (101, 77), seed=2)
    t, stride = TILE, 12  # irregular: offsets 0, 12, ..., 60 and a last one flush at 69
    res = segment(trained["ckpt"], scene, tmp_path / "seg.tif", stride=stride,
                  probabilities=True, quiet=True, device="cpu")
    predictor = WeakPredictor.load(trained["ckpt"], device="cpu")
    expected = _whole_scene_probabilities(predictor, scene, t, stride)
    np.testing.assert_allclose(_read(res.probabilities), expected, atol=1e-5)


def _whole_scene_probabilities(predictor: WeakPredictor, scene: Path, t: int, stride: int
                               ) -> np.ndarray:
    """Every window predicted on its own, blended over the whole scene in memory."""
    sc = open_scene(scene, bands=predictor.bands)
    acc = np.zeros((1 if predictor.binary else predictor.n_classes, sc.height, sc.width))
    wsum = np.zeros((sc.height, sc.width))
    w = blend_weights(t)
    for r in grid_offsets(sc.height, t, stride, cover_end=True):
        for c in grid_offsets(sc.width, t, stride, cover_end=True):
            data, valid = sc.read_with_mask(Window(c, r, t, t))
            logits = predictor.logits(predictor.normalize(data[None], valid[None]))[0]
            acc[:, r:r + t, c:c + t] += logits * w
            wsum[r:r + t, c:c + t] += w
    return predictor.probabilities((acc / wsum)[None].astype(np.float32))[0]


def test_blending_leaves_no_seams(trained, tmp_path, monkeypatch):
    """A model whose output is one constant per window (worst case for seams): blended
    windows give a continuous map, unblended ones jump at every window border."""

    def constant_per_window(self, x, batch_size=32):
        value = x[:, :1].mean(axis=(2, 3), keepdims=True) * 4.0
        return np.broadcast_to(value, (x.shape[0], 1, *x.shape[2:])).astype(np.float32)

    monkeypatch.setattr(WeakPredictor, "logits", constant_per_window)
    scene = _scene(tmp_path, (128, 128), seed=3)

    def field(stride: int) -> np.ndarray:
        res = segment(trained["ckpt"], scene, tmp_path / f"s{stride}.tif", stride=stride,
                      probabilities=True, quiet=True, device="cpu")
        p = _read(res.probabilities)[1].astype(np.float64)
        return np.log(p / (1 - p))

    def max_jump(f: np.ndarray) -> float:
        return max(np.abs(np.diff(f, axis=0)).max(), np.abs(np.diff(f, axis=1)).max())

    hard, blended = field(TILE), field(TILE // 2)
    spread = blended.max() - blended.min()
    assert max_jump(hard) > 0.3 * spread  # the test can fail: unblended windows jump
    # sin^2 weights: the blended field changes by at most ~pi / tile of the spread per pixel
    assert max_jump(blended) < 1.2 * np.pi / TILE * spread
    assert max_jump(blended) < 0.3 * max_jump(hard)


def test_trained_model_has_no_seam_at_window_borders(trained, tmp_path):
    """Adjacent-pixel changes of the stitched logits are no larger at window borders than
    elsewhere (within tolerance)."""
    def border_ratio(stride: int) -> float:
        res = segment(trained["ckpt"], trained["scene"], tmp_path / f"s{stride}.tif",
                      stride=stride, probabilities=True, quiet=True, device="cpu")
        p = np.clip(_read(res.probabilities)[1].astype(np.float64), 1e-6, 1 - 1e-6)
        logit = np.log(p / (1 - p))
        jumps = np.abs(np.diff(logit, axis=1)).mean(axis=0)  # per column boundary c|c+1
        borders = [c - 1 for c in range(stride, logit.shape[1], stride)]
        return float(jumps[borders].mean() / np.median(jumps))

    assert border_ratio(TILE // 2) < 2.0
    assert border_ratio(TILE) > 2.0  # without overlap the window borders do show


def test_outputs_nodata_georeference_probabilities_and_report(trained, tmp_path):
    scene = _scene(tmp_path, (96, 96), seed=4, border=5)  # 5 nodata columns on the west
    yy, xx = np.mgrid[0:96, 0:96]
    truth = ((yy // 24 + xx // 24) % 2 == 0).astype(np.uint8) * 3 + 1  # values 1 and 4
    truth[:4, :] = 200  # not a class: not scored
    ref = write_raster(tmp_path / "ref.tif", truth[None], nodata=255)
    out = tmp_path / "seg.tif"
    res = segment(trained["ckpt"], scene, out, reference=ref, reference_map={4: 1, 1: "0"},
                  probabilities=True, quiet=True, device="cpu")
    classes = _read(out)[0]
    probs = _read(res.probabilities)
    with rasterio.open(out) as ds, rasterio.open(scene) as src:
        assert ds.crs == src.crs and ds.transform == src.transform
        assert ds.nodata == NODATA and ds.dtypes[0] == "uint8"
        tags = ds.tags()
        assert json.loads(tags["classes"]) == ["0", "1"]
        assert tags["checkpoint_sha256"] == res.report["checkpoint_sha256"]
        assert ds.descriptions == ("class",)
    assert (classes[:, :5] == NODATA).all() and (classes[:, 5:] != NODATA).all()
    assert np.isnan(probs[:, :, :5]).all()
    np.testing.assert_allclose(probs[:, :, 5:].sum(axis=0), 1.0, atol=1e-5)
    # the report equals sklearn's scores on the scored pixels
    assert res.report_path == tmp_path / "seg_report.json"
    report = json.loads(res.report_path.read_text())
    scored = (classes != NODATA) & (truth != 200)
    y_true = (truth[scored] == 4).astype(int)
    y_pred = classes[scored].astype(int)
    assert report["pixels"] == scored.sum()
    assert report["unmapped_pixels"] == int(((truth == 200) & (classes != NODATA)).sum())
    assert report["accuracy"] == pytest.approx((y_true == y_pred).mean())
    one = report["classes"]["1"]
    assert one["f1"] == pytest.approx(f1_score(y_true, y_pred))
    assert one["iou"] == pytest.approx(jaccard_score(y_true, y_pred))
    assert one["precision"] == pytest.approx(precision_score(y_true, y_pred))
    assert report["accuracy"] > 0.8  # the tiny model learnt the checkerboard


def test_cam_model_probability_is_sigmoid_of_cam_minus_threshold(tmp_path):
    from tests.test_weak import tile_labels

    path, mask = weak_scene(tmp_path)
    tiles = tile_labels(tmp_path, mask)
    res = weak_train(path, tiles, tmp_path / "run", label_type="image", label_column="crop",
                     tile_size=TILE, epochs=1, batch_size=8, quiet=True, device="cpu", **TINY)
    predictor = WeakPredictor.load(res.checkpoint, device="cpu")
    assert predictor.threshold == pytest.approx(res.threshold)
    scene = open_scene(path)
    data, valid = scene.read_with_mask(Window(0, 0, TILE, TILE))
    x = predictor.normalize(data[None], valid[None])
    cam = predictor.model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(predictor.logits(x), cam - res.threshold, atol=1e-5)
    p = predictor.probabilities(predictor.logits(x))
    np.testing.assert_allclose(p[:, 1], 1 / (1 + np.exp(-(cam[:, 0] - res.threshold))),
                               atol=1e-5)


def test_segment_bad_inputs(trained, tmp_path):
    out = tmp_path / "seg.tif"
    other = write_raster(tmp_path / "ref.tif", np.ones((1, 50, 50), np.uint8))
    with pytest.raises(RasterError, match="not on the scene's grid"):
        segment(trained["ckpt"], trained["scene"], out, reference=other, quiet=True,
                device="cpu")
    assert not out.exists()
    with pytest.raises(InputError, match="stride"):
        segment(trained["ckpt"], trained["scene"], out, stride=TILE + 1, quiet=True)
    three = write_raster(tmp_path / "three.tif", np.ones((3, 64, 64), np.uint16))
    with pytest.raises(RasterError, match="bands"):
        segment(trained["ckpt"], three, out, quiet=True, device="cpu")
    segment(trained["ckpt"], trained["scene"], out, quiet=True, device="cpu")
    with pytest.raises(OutputExistsError):
        segment(trained["ckpt"], trained["scene"], out, quiet=True, device="cpu")
    assert load_checkpoint(trained["ckpt"], kind="weak")["label_type"] == "pixel"


def test_multiclass_cam_model_segments_by_argmax(tmp_path):
    import geopandas as gpd

    from tests.test_weak import tile_labels

    path, mask = weak_scene(tmp_path)
    tiles = gpd.read_file(tile_labels(tmp_path, mask))
    tiles["kind"] = np.select([tiles["frac"] < 0.4, tiles["frac"] > 0.6], ["low", "high"], "mid")
    assert tiles["kind"].nunique() == 3
    res = weak_train(path, tiles, tmp_path / "run", label_type="image", label_column="kind",
                     tile_size=TILE, epochs=1, batch_size=8, quiet=True, device="cpu", **TINY)
    assert res.class_names == ["high", "low", "mid"] and res.threshold is None
    seg = segment(res.checkpoint, path, tmp_path / "seg.tif", probabilities=True, quiet=True,
                  device="cpu")
    classes = _read(seg.path)[0]
    probs = _read(seg.probabilities)
    predictor = WeakPredictor.load(res.checkpoint, device="cpu")
    # softmax of the blended 3-channel logits, exactly as a whole-scene accumulation
    expected = _whole_scene_probabilities(predictor, path, TILE, TILE // 2)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(classes, probs.argmax(axis=0))
    assert len(np.unique(classes)) >= 2  # the map is not one constant class


def test_segment_config_and_keywords_give_the_same_map(trained, tmp_path):
    config = SegmentConfig(stride=TILE, quiet=True, device="cpu", probabilities=True)
    a = segment(trained["ckpt"], trained["scene"], tmp_path / "a.tif", config)
    b = segment(trained["ckpt"], trained["scene"], tmp_path / "b.tif", config, stride=8,
                probabilities=False)
    c = segment(trained["ckpt"], trained["scene"], tmp_path / "c.tif", stride=8, quiet=True,
                device="cpu")
    assert a.probabilities is not None and b.probabilities is None and config.stride == TILE
    np.testing.assert_array_equal(_read(b.path), _read(c.path))
    with rasterio.open(a.path) as da, rasterio.open(b.path) as db:
        assert da.tags()["stride"] == str(TILE) and db.tags()["stride"] == "8"
    with pytest.raises(TypeError, match="strides"):
        segment(trained["ckpt"], trained["scene"], tmp_path / "d.tif", strides=8)
    with pytest.raises(InputError, match="need --reference"):
        SegmentConfig(reference_positive=["3"])
    with pytest.raises(InputError, match="--tile"):
        SegmentConfig(tile=0)
