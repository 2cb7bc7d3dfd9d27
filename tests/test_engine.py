"""The sliding-window engine on its own: batching across rows, row order, acceptance, the
strip reader's own dataset handle, and blending against an in-memory accumulation."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.windows import Window

from geoembed.inference import strips
from geoembed.inference.engine import RowResult, predict_rows
from geoembed.inference.stitch import BlendBand, blend_rows, blend_weights
from geoembed.inference.strips import iter_grid_rows, read_grid_row
from geoembed.io.scenes import open_scene
from geoembed.samplers.grid import WindowGrid
from tests.conftest import write_raster


class MeanModel:
    """A fake model: each window's per-band mean of its valid pixels; records its batches."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, bool]] = []

    def launch(self, tiles: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        self.batches.append((len(tiles), valid is None))
        v = np.ones((len(tiles), *tiles.shape[-2:]), bool) if valid is None else valid
        x = np.where(v[:, None], tiles.astype(np.float64), 0.0)
        return (x.sum(axis=(2, 3)) / v.sum(axis=(1, 2))[:, None]).astype(np.float32)

    def collect(self, handle: np.ndarray) -> np.ndarray:
        return handle


@pytest.fixture
def holed(tmp_path):
    data = np.random.default_rng(0).integers(1, 200, (2, 60, 70)).astype(np.uint16)
    data[:, 20:40, 30:50] = 0  # nodata hole
    return write_raster(tmp_path / "holed.tif", data, nodata=0), data


def test_predict_rows_batches_across_rows_in_order(holed):
    path, data = holed
    scene = open_scene(path)
    grid = WindowGrid.for_scene(scene, 10, 5)  # 11 x 13 windows
    model = MeanModel()
    min_valid = 50  # half of a 10 x 10 window
    results = list(predict_rows(scene, grid, model, (2,), batch_size=7, min_valid=min_valid))
    assert [r.index for r in results] == list(range(grid.shape[0]))
    valid = data[0] != 0
    n_accepted = 0
    for res in results:
        r = grid.row_offsets[res.index]
        for j, c in enumerate(grid.col_offsets):
            v = valid[r:r + 10, c:c + 10]
            assert res.accepted[j] == (v.sum() >= min_valid)
            np.testing.assert_array_equal(res.valid[j], v)
            if res.accepted[j]:
                want = data[:, r:r + 10, c:c + 10][:, v].mean(axis=1)
                np.testing.assert_allclose(res.outputs[j], want, rtol=1e-6)
                n_accepted += 1
            else:
                assert np.isnan(res.outputs[j]).all()
    sizes = [n for n, _ in model.batches]
    assert sum(sizes) == n_accepted and 0 < n_accepted < grid.n_windows
    assert set(sizes[:-1]) == {7} and 1 <= sizes[-1] <= 7  # full batches across rows
    assert any(all_valid for _, all_valid in model.batches)  # no mask when all valid
    assert not all(all_valid for _, all_valid in model.batches)


def test_strip_reader_uses_its_own_handle(holed):
    path, _ = holed
    scene = open_scene(path)
    handle = scene.dataset
    grid = WindowGrid.for_scene(scene, 10, 10)
    rows = list(iter_grid_rows(scene, grid, prefetch=1))
    assert not handle.closed and scene.dataset is handle  # the caller's handle is untouched
    for row in rows:
        want = read_grid_row(scene, grid, row.index)
        np.testing.assert_array_equal(row.tiles, want.tiles)
        np.testing.assert_array_equal(row.valid, want.valid)


def test_strip_reader_reraises_in_the_consumer(holed, monkeypatch):
    def failing(scene, grid, i):
        if i == 2:
            raise OSError("disk gone")
        return read_grid_row(scene, grid, i)

    monkeypatch.setattr(strips, "read_grid_row", failing)
    scene = open_scene(holed[0])
    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for row in strips.iter_grid_rows(scene, WindowGrid.for_scene(scene, 10, 10)):
            seen.append(row.index)
    assert seen == [0, 1]


def test_blend_rows_equals_in_memory_weighted_average():
    rng = np.random.default_rng(1)
    h, w, t = 37, 29, 8
    offsets = (0, 6, 12, 18, 21)  # an irregular last window, flush with the edge (21 + 8 = 29)
    rows = (0, 6, 12, 18, 24, 29)
    grid = WindowGrid(t, 6, rows, offsets)
    outputs = rng.normal(size=(len(rows), len(offsets), 2, t, t)).astype(np.float32)
    valid = rng.random((len(rows), len(offsets), t, t)) > 0.1
    results = (RowResult(i, outputs[i], np.ones(len(offsets), bool), valid[i])
               for i in range(len(rows)))
    got = np.full((2, h, w), np.nan, np.float32)
    got_valid = np.zeros((h, w), bool)
    next_row = 0
    for block in blend_rows(results, grid, BlendBand(2, t, w), h):
        assert block.row == next_row  # blocks come in order, without gaps
        win = block.window
        got[:, win.row_off:win.row_off + win.height] = block.values
        got_valid[win.row_off:win.row_off + win.height] = block.valid
        next_row = block.row + block.values.shape[1]
    assert next_row == h
    acc, wsum, want_valid = np.zeros((2, h, w)), np.zeros((h, w)), np.zeros((h, w), bool)
    weight = blend_weights(t)
    for i, r in enumerate(rows):
        for j, c in enumerate(offsets):
            acc[:, r:r + t, c:c + t] += outputs[i, j] * weight
            wsum[r:r + t, c:c + t] += weight
            want_valid[r:r + t, c:c + t] |= valid[i, j]
    np.testing.assert_allclose(got, acc / wsum, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_valid, want_valid)
    # a pixel only one window covers is that window's output
    np.testing.assert_allclose(got[:, 0, 0], outputs[0, 0, :, 0, 0], rtol=1e-6)


def test_blend_weights_profile():
    w = blend_weights(4)
    # sin^2(pi (i + 0.5) / 4) = 0.1464..., 0.8535... per axis
    s = np.sin(np.pi * (np.arange(4) + 0.5) / 4) ** 2
    np.testing.assert_allclose(w, np.outer(s, s), rtol=1e-6)
    assert w[0, 0] == pytest.approx(0.14644661 ** 2, rel=1e-6)
    assert blend_weights(64).min() == pytest.approx(1e-3 ** 2)  # floored, never zero


def test_window_of_a_block_is_the_rows_it_holds():
    band = BlendBand(1, 4, 10)
    band.add(0, (0, 3, 6), np.ones((3, 1, 4, 4), np.float32), np.ones((3, 4, 4), bool))
    block = band.pop(3)
    assert block.window == Window(0, 0, 10, 3)
    np.testing.assert_allclose(block.values, 1.0, rtol=1e-6)  # a weighted mean of ones
    assert band.pop(3) is None  # nothing new is final
