"""Random convolutional features (MOSAIKS) and the hgb classifier: known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from geoembed.errors import InputError
from geoembed.evaluation.features import tile_statistics
from geoembed.evaluation.random_features import (
    RandomConvFeatures,
    _check_tiles,
    _draw,
    fit_on_tile_sample,
)
from tests.test_evaluation import BLOCK, block_center_labels, class_scene, points


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One BLAS / OpenMP thread: on a shared 2-core machine HistGradientBoosting's OpenMP
    threads spin and the evaluate test is ten times slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def smooth_tiles(n: int = 16, bands: int = 3, size: int = 12, seed: int = 0) -> np.ndarray:
    """Correlated (bands and neighbours) random tiles: a non-trivial patch covariance."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, bands, size, size))
    x = x + 0.6 * np.roll(x, 1, axis=2) + 0.4 * np.roll(x, 1, axis=3)
    x[:, 1] += 0.8 * x[:, 0]
    return x.astype(np.float32)


def brute_force(rf: RandomConvFeatures, tile: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The definition, one position and one filter at a time, in float64."""
    p, k = rf.patch, len(rf.filters)
    pos, neg, n = np.zeros(k), np.zeros(k), 0
    for i in range(tile.shape[1] - p + 1):
        for j in range(tile.shape[2] - p + 1):
            if not valid[i:i + p, j:j + p].all():
                continue
            z = rf.whiten(tile[:, i:i + p, j:j + p].reshape(1, -1).astype(np.float64))[0]
            for f in range(k):
                r = float(np.dot(rf.filters[f].reshape(-1).astype(np.float64), z))
                pos[f] += max(r - rf.bias, 0.0)
                neg[f] += max(-r - rf.bias, 0.0)
            n += 1
    return np.concatenate([pos, neg]) / max(n, 1)


def test_whitened_patches_have_identity_covariance():
    tiles = smooth_tiles(n=100, seed=0)
    held_out = smooth_tiles(n=100, seed=1)  # same distribution, other pixels
    rf = RandomConvFeatures.fit(tiles, n_features=16, patch=3, seed=0)
    _, ok = _check_tiles(held_out, None, 3)
    patches = _draw(held_out, ok, 3, 10_000, np.random.default_rng(1))
    raw_cov = np.cov(patches, rowvar=False)
    assert np.abs(raw_cov - np.diag(np.diag(raw_cov))).max() > 0.5  # far from white before
    np.testing.assert_allclose(np.cov(rf.whiten(patches), rowvar=False), np.eye(27), atol=0.08)
    # on the patches it was fitted on (all 10,000 positions) with a tiny regulariser: exact
    exact = RandomConvFeatures.fit(tiles, n_features=16, regularizer=1e-6)
    _, ok = _check_tiles(tiles, None, 3)
    own = _draw(tiles, ok, 3, 10_000, np.random.default_rng(2))
    np.testing.assert_allclose(np.cov(exact.whiten(own), rowvar=False), np.eye(27), atol=1e-4)
    # the filters are whitened patches of unit norm
    np.testing.assert_allclose(np.linalg.norm(rf.filters.reshape(8, -1), axis=1), 1.0,
                               rtol=1e-5)


def test_features_equal_brute_force_with_invalid_pixels():
    tiles = smooth_tiles(n=6, bands=2, size=7, seed=3)
    valid = np.ones((6, 7, 7), dtype=bool)
    valid[0, :, :3] = False  # some positions excluded
    valid[1, 3, 3] = False
    valid[2] = False  # no valid position: zeros
    rf = RandomConvFeatures.fit(tiles[3:], n_features=10, patch=3, seed=5)
    got = rf.transform(tiles, valid)
    assert got.shape == (6, 10) and got.dtype == np.float32
    want = np.stack([brute_force(rf, t, v) for t, v in zip(tiles, valid, strict=True)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert (got[2] == 0).all() and got[0].max() > 0.05


def test_chunks_give_the_same_features(monkeypatch):
    import geoembed.evaluation.random_features as mod

    tiles = smooth_tiles(n=9, size=10)
    rf = RandomConvFeatures.fit(tiles, n_features=64, seed=2)
    whole = rf.transform(tiles)
    monkeypatch.setattr(mod, "CHUNK_ELEMENTS", 100)  # one tile, 3 positions at a time
    np.testing.assert_allclose(rf.transform(tiles), whole, rtol=1e-5, atol=1e-6)


def test_deterministic_for_a_seed():
    tiles = smooth_tiles()
    a = RandomConvFeatures.fit(tiles, n_features=32, seed=7)
    b = RandomConvFeatures.fit(tiles, n_features=32, seed=7)
    c = RandomConvFeatures.fit(tiles, n_features=32, seed=8)
    np.testing.assert_array_equal(a.filters, b.filters)
    np.testing.assert_array_equal(a.transform(tiles), b.transform(tiles))
    assert not np.allclose(a.filters, c.filters)


def test_invalid_pixels_do_not_change_features():
    tiles = smooth_tiles(n=4, size=12, seed=1)
    valid = np.ones((4, 12, 12), dtype=bool)
    valid[:, :, 6:] = False
    rf = RandomConvFeatures.fit(tiles, valid, n_features=64, seed=0)
    other = tiles.copy()
    other[:, :, :, 6:] = np.random.default_rng(9).normal(5, 3, other[:, :, :, 6:].shape)
    np.testing.assert_array_equal(rf.transform(tiles, valid), rf.transform(other, valid))
    assert not np.allclose(rf.transform(tiles), rf.transform(other))  # they count if valid
    # fitting never draws a patch that touches an invalid pixel
    rf2 = RandomConvFeatures.fit(other, valid, n_features=64, seed=0)
    np.testing.assert_array_equal(rf2.filters, rf.filters)


def test_two_textures_are_separated_perfectly():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    tiles, y = [], []
    for i in range(60):
        phase = rng.integers(0, 4)
        cls = i % 2
        cells = (xx + phase) // 2 if cls == 0 else (xx + phase) // 2 + (yy + phase) // 2
        pattern = np.where(cells % 2, 1.0, -1.0)  # 2-px stripes / 2-px checkerboard
        tiles.append(np.stack([pattern, -pattern]) + rng.normal(0, 0.3, (2, 16, 16)))
        y.append(cls)
    tiles, y = np.asarray(tiles, dtype=np.float32), np.asarray(y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    # both are +-1 with the same per-band mean and variance: tile statistics cannot tell them
    stats = tile_statistics(tiles, np.ones((60, 16, 16), dtype=bool))
    assert cross_val_score(model, stats, y, cv=5).mean() < 0.75
    rf = RandomConvFeatures.fit(tiles, n_features=64, seed=0)
    assert cross_val_score(model, rf.transform(tiles), y, cv=5).min() == 1.0


@pytest.mark.parametrize("n", [0, 1, 7, -2, 2.0, True])
def test_bad_n_features_raises(n):
    with pytest.raises(InputError, match="even number of at least 2"):
        RandomConvFeatures.fit(smooth_tiles(n=2), n_features=n)


def test_bad_shapes_and_no_valid_patch_raise():
    tiles = smooth_tiles(n=2, size=6)
    with pytest.raises(InputError, match="no 3x3 patch"):
        RandomConvFeatures.fit(tiles, np.zeros((2, 6, 6), dtype=bool), n_features=4)
    with pytest.raises(InputError, match="does not fit"):
        RandomConvFeatures.fit(tiles, patch=7, n_features=4)
    rf = RandomConvFeatures.fit(tiles, n_features=4)
    with pytest.raises(InputError, match="bands"):
        rf.transform(tiles[:, :2])


def test_fit_on_tile_sample_treats_all_zero_pixels_as_invalid():
    tiles = smooth_tiles(n=4, bands=2, size=8)
    tiles[:, :, :, 5:] = 0.0  # what normalize makes of invalid pixels
    valid = np.ones((4, 8, 8), dtype=bool)
    valid[:, :, 5:] = False
    a = fit_on_tile_sample(tiles.reshape(4, -1), 2, 8, n_features=8, seed=3)
    b = RandomConvFeatures.fit(tiles, valid, n_features=8, seed=3)
    np.testing.assert_array_equal(a.filters, b.filters)


def test_evaluate_random_features_with_hgb(tmp_path):
    from geoembed.evaluation.evaluate import evaluate

    scene = class_scene(tmp_path)
    rows, cols, cls = block_center_labels(150)
    gdf = points(scene, rows, cols, [f"c{c}" for c in cls])
    res = evaluate(scene, tmp_path / "out", labels=gdf, label_column="cls",
                   features=["random-features"], classifier="hgb", block_size=BLOCK,
                   learning_curve_sizes="none", tile_size=8, pca_tiles=20,
                   n_random_features=64, quiet=True, plots=False)
    (row,) = res.rows
    assert (row["features"], row["classifier"], row["n_features"]) == ("random-features",
                                                                        "hgb", 64)
    assert row["accuracy"] >= 0.9  # classes differ by band level: separable


def test_config_n_random_features_and_hgb():
    from geoembed.evaluation.config import EvaluateConfig

    assert EvaluateConfig(classifier="hgb").classifier == ("hgb",)
    assert EvaluateConfig(classifier="both").classifier == ("logreg", "rf")
    assert "random-features" not in EvaluateConfig().feature_names()  # opt-in
    assert EvaluateConfig(features="random-features").feature_names() == ["random-features"]
    with pytest.raises(InputError, match="--n-random-features must be an even number"):
        EvaluateConfig(n_random_features=3)
