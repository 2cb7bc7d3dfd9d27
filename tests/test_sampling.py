"""Triplet sampler: invariants on every sampled triplet, validity, AOI, determinism, errors."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.transform import from_origin
from shapely.geometry import box

from geoembed.errors import CRSError, InputError, RasterError
from geoembed.io.blocks import BlockLayout, band_shape
from geoembed.io.scenes import open_scene, open_scenes
from geoembed.samplers import triplets as sampling
from geoembed.samplers.aoi import aoi_cells
from geoembed.samplers.coverage import box_sums, integral
from geoembed.samplers.triplets import TripletSampler, sample_triplets
from tests.conftest import ORIGIN, PIXEL, UTM_CRS, write_raster


class Truth:
    """A scene's pixels and validity read whole (tiny test scenes) to check windows against."""

    def __init__(self, path: Path | str) -> None:
        with rasterio.open(path) as ds:
            self.data = ds.read()
            self.valid = (ds.read_masks() > 0).all(axis=0)
        if np.issubdtype(self.data.dtype, np.floating):
            self.valid &= np.isfinite(self.data).all(axis=0)

    def window(self, row: int, col: int, t: int) -> np.ndarray:
        return self.data[:, row:row + t, col:col + t]

    def bad_fraction(self, row: int, col: int, t: int) -> float:
        return 1.0 - self.valid[row:row + t, col:col + t].mean()


def check_triplets(out, scenes, t: int, r: float, max_nodata: float = 0.0) -> None:
    """Every invariant on every triplet: inside, distances, nodata fraction, pixels."""
    truth = [Truth(s.path) for s in scenes]
    for trip, px in out:
        assert px.shape == (3, scenes[0].count, t, t)
        a, n, d = trip.tiles
        for ref, p in zip(trip.tiles, px, strict=True):
            s = scenes[ref.scene]
            assert 0 <= ref.row <= s.height - t and 0 <= ref.col <= s.width - t
            assert truth[ref.scene].bad_fraction(ref.row, ref.col, t) <= max_nodata + 1e-9
            np.testing.assert_array_equal(p, truth[ref.scene].window(ref.row, ref.col, t))
        assert n.scene == a.scene
        assert np.hypot(n.row - a.row, n.col - a.col) <= r
        if d.scene == a.scene:
            assert np.hypot(d.row - a.row, d.col - a.col) > r


def test_invariants_nodata_border(make_raster):
    path = make_raster("s.tif", size=(96, 120), border=9)
    scenes = open_scenes([path])
    out = list(sample_triplets(scenes, 300, 16, 20, seed=3))
    assert len(out) == 300
    check_triplets(out, scenes, 16, 20)
    rows = np.array([tr.anchor.row for tr, _ in out])
    cols = np.array([tr.anchor.col for tr, _ in out])
    # the valid top-left range is [9, 96 - 9 - 16] x [9, 120 - 9 - 16]: reached at both ends
    assert 9 <= rows.min() < 12 and 9 <= cols.min() < 12
    assert 65 < rows.max() <= 71 and 88 < cols.max() <= 95


def test_max_nodata_allows_partial_windows(make_raster):
    path = make_raster("s.tif", size=(64, 64), border=6)
    scenes = open_scenes([path])
    out = list(sample_triplets(scenes, 200, 16, 12, seed=1, max_nodata=0.3))
    check_triplets(out, scenes, 16, 12, max_nodata=0.3)
    truth = Truth(path)
    fracs = [truth.bad_fraction(tr.anchor.row, tr.anchor.col, 16) for tr, _ in out]
    assert max(fracs) > 0.05  # partial windows are really drawn


def test_float_nan_and_internal_mask(tmp_path, make_raster):
    fpath = make_raster("f.tif", size=(64, 64), dtype="float32", border=5)
    data = np.full((2, 64, 64), 7, dtype=np.uint8)
    mpath = tmp_path / "m.tif"
    with rasterio.open(mpath, "w", driver="GTiff", width=64, height=64, count=2,
                       dtype="uint8", crs=UTM_CRS,
                       transform=from_origin(*ORIGIN, PIXEL, PIXEL)) as ds:
        ds.write(data)
        mask = np.full((64, 64), 255, dtype=np.uint8)
        mask[:, :30] = 0
        ds.write_mask(mask)
    for path, kind in ((fpath, "nodata"), (mpath, "mask")):
        scenes = open_scenes([path])
        sampler = TripletSampler(scenes, 8, 10)
        assert sampler.reader.validity[0].kind == kind
        out = list(sampler.sample(60, seed=0))
        check_triplets(out, scenes, 8, 10)
        if kind == "mask":
            assert min(tr.anchor.col for tr, _ in out) >= 30
        else:
            assert all(np.isfinite(px).all() for _, px in out)


def test_float_nan_without_nodata(tmp_path):
    data = np.ones((1, 48, 48), dtype="float32")
    data[:, :, :20] = np.nan
    path = write_raster(tmp_path / "n.tif", data)
    scenes = open_scenes([path])
    out = list(sample_triplets(scenes, 40, 8, 8, seed=0))
    assert all(np.isfinite(px).all() for _, px in out)
    assert min(tr.distant.col for tr, _ in out) >= 20


def test_same_seed_same_triplets_and_grouping_does_not_matter(make_raster, monkeypatch):
    path = make_raster("s.tif", size=(80, 80), border=4)
    scenes = open_scenes([path])
    sampler = TripletSampler(scenes, 12, 15)
    first = list(sampler.sample(700, seed=5))  # two chunks
    again = list(sampler.sample(700, seed=5))
    assert [t for t, _ in first] == [t for t, _ in again]
    other = list(sampler.sample(700, seed=6))
    assert [t for t, _ in first] != [t for t, _ in other]
    # bulk groups (used by the store) give the same triplets and pixels
    groups = list(sampler.iter_groups(700, 5, keep_pixels=True, group_chunks=8))
    pos = np.concatenate([g[1] for g in groups])
    assert [sampling._triplet(p) for p in pos] == [t for t, _ in first]
    np.testing.assert_array_equal(groups[0][2], np.stack([p for _, p in first]))
    # a memory budget of one block row per pass (kept rows carry windows across): same result
    ds = scenes[0].dataset
    block_h, block_w = ds.block_shapes[0]
    assert block_w == 80  # a striped file: full-width blocks
    one_row = 80 * 4 * 2 * (block_h + 11)  # a block row and the T - 1 rows kept above it
    assert band_shape(BlockLayout.of(ds), 4 * 2, 12, one_row) == (block_h, 80)
    thin = TripletSampler(open_scenes([path]), 12, 15, memory=one_row)
    stripped = list(thin.sample(700, seed=5))
    assert [t for t, _ in stripped] == [t for t, _ in first]
    np.testing.assert_array_equal(np.stack([p for _, p in stripped]),
                                  np.stack([p for _, p in first]))


def test_draw_one(make_raster):
    path = make_raster("s.tif", size=(64, 64))
    sampler = TripletSampler(open_scenes([path]), 8, 10)
    trip, px = sampler.draw(np.random.default_rng(1))
    trip2, px2 = sampler.draw(np.random.default_rng(1))
    assert trip == trip2
    np.testing.assert_array_equal(px, px2)
    check_triplets([(trip, px)], sampler.scenes, 8, 10)


def test_anchors_follow_valid_area(tmp_path, make_raster):
    """Scenes are chosen in proportion to their valid area; anchors uniform within it."""
    full = make_raster("full.tif", size=(64, 64), seed=1)
    data = np.full((1, 64, 64), 5, dtype=np.uint16)
    data[:, :, 40:] = 0  # valid columns 0..39
    half = write_raster(tmp_path / "half.tif", data, nodata=0)
    data1 = np.full((1, 64, 64), 5, dtype=np.uint16)
    full1 = write_raster(tmp_path / "full1.tif", data1)
    scenes = open_scenes([full1, half])
    del full
    t = 8
    n = 3000
    out = list(TripletSampler(scenes, t, 10, distant_other_scene_prob=0.5).sample(n, seed=2))
    check_triplets(out[:100], scenes, t, 10)
    # valid top-left positions: 57 x 57 in the full scene, 57 x 33 in the half scene
    expected = (57 * 33) / (57 * 57 + 57 * 33)
    frac_half = np.mean([tr.anchor.scene == 1 for tr, _ in out])
    assert abs(frac_half - expected) < 0.035
    cols = np.array([tr.anchor.col for tr, _ in out if tr.anchor.scene == 1])
    assert cols.max() == 32 and cols.min() == 0
    assert abs(cols.mean() - 16) < 1.0  # uniform over 0..32
    # distant tiles: about half from the other scene, never all from the anchor's
    other = np.mean([tr.distant.scene != tr.anchor.scene for tr, _ in out])
    assert 0.4 < other < 0.6


def test_distant_other_scene_probability(make_raster):
    a = make_raster("a.tif", size=(48, 48), seed=1)
    b = make_raster("b.tif", size=(48, 48), seed=2)
    scenes = open_scenes([a, b])
    for p in (0.0, 1.0):
        out = list(TripletSampler(scenes, 8, 10, distant_other_scene_prob=p).sample(200, 0))
        check_triplets(out[:50], scenes, 8, 10)
        other = np.mean([tr.distant.scene != tr.anchor.scene for tr, _ in out])
        assert other == p


def test_small_scene_never_loops(make_raster):
    # 40 x 40 px, tile 8, radius 30: anchors near the middle have no room for a distant tile
    path = make_raster("s.tif", size=(40, 40))
    scenes = open_scenes([path])
    out = list(TripletSampler(scenes, 8, 30).sample(200, seed=0))
    check_triplets(out, scenes, 8, 30)
    # with a larger second scene the distant tile moves there instead
    big = make_raster("big.tif", size=(128, 128), seed=3)
    scenes2 = open_scenes([path, big])
    out2 = list(TripletSampler(scenes2, 8, 60, distant_other_scene_prob=0.0).sample(200, 0))
    check_triplets(out2, scenes2, 8, 60)
    assert all(tr.distant.scene == 1 for tr, _ in out2 if tr.anchor.scene == 0)


def test_aoi_in_another_crs(tmp_path, make_raster):
    path = make_raster("s.tif", size=(100, 100))  # UTM 10N, 10 m pixels
    t = 10
    # AOI: pixel columns 20..60, rows 10..50 of the scene, given in EPSG:4326
    x0, y0 = ORIGIN
    utm_box = box(x0 + 20 * PIXEL, y0 - 50 * PIXEL, x0 + 60 * PIXEL, y0 - 10 * PIXEL)
    aoi = gpd.GeoDataFrame(geometry=[utm_box], crs=UTM_CRS).to_crs("EPSG:4326")
    aoi_path = tmp_path / "aoi.gpkg"
    aoi.to_file(aoi_path)
    scenes = open_scenes([path])
    out = list(sample_triplets(scenes, 300, t, 15, seed=0, aoi=aoi_path))
    check_triplets(out[:50], scenes, t, 15)
    cr = np.array([tr.anchor.row for tr, _ in out]) + t / 2
    cc = np.array([tr.anchor.col for tr, _ in out]) + t / 2
    # the box's edges are slightly curved in EPSG:4326: allow half a pixel
    assert cc.min() >= 19.5 and cc.max() <= 60.5
    assert cr.min() >= 9.5 and cr.max() <= 50.5
    assert cc.min() < 23 and cc.max() > 57 and cr.min() < 13 and cr.max() > 47
    # exactly: every anchor's center is in the AOI read back and reprojected to the scene
    region = gpd.read_file(aoi_path).to_crs(UTM_CRS).union_all()
    xs, ys = rasterio.transform.xy(scenes[0].transform, cr, cc, offset="ul")
    assert shapely.intersects_xy(region, np.asarray(xs), np.asarray(ys)).all()
    # neighbors and distant tiles are not restricted
    dc = np.array([tr.distant.col for tr, _ in out]) + t / 2
    assert dc.max() > 61 or dc.min() < 19
    # a GeoDataFrame works as well, and an AOI outside every scene is an error
    out2 = list(sample_triplets(scenes, 300, t, 15, seed=0, aoi=aoi))
    assert [a for a, _ in out2] == [a for a, _ in out]
    far = gpd.GeoDataFrame(geometry=[box(10, 10, 11, 11)], crs="EPSG:4326")
    with pytest.raises(InputError, match="AOI does not overlap"):
        TripletSampler(scenes, t, 15, aoi=far)
    with pytest.raises(CRSError, match="no CRS"):
        TripletSampler(scenes, t, 15, aoi=gpd.GeoDataFrame(geometry=[utm_box]))


def test_bad_options(tmp_path, make_raster):
    path = make_raster("s.tif", size=(32, 48))
    scenes = open_scenes([path])
    with pytest.raises(RasterError, match="larger than the scene"):
        TripletSampler(scenes, 40, 10)
    with pytest.raises(InputError, match="neighborhood must be at least 1"):
        TripletSampler(scenes, 8, 0.5)
    with pytest.raises(InputError, match="max nodata"):
        TripletSampler(scenes, 8, 10, max_nodata=1.5)
    with pytest.raises(InputError, match="at least two scenes"):
        TripletSampler(scenes, 8, 10, distant_other_scene_prob=0.5)
    with pytest.raises(InputError, match="no tile can be farther"):
        TripletSampler(scenes, 8, 100)
    with pytest.raises(InputError, match="seed"):
        next(TripletSampler(scenes, 8, 10).sample(3, seed=-1))
    # nodata everywhere, or valid area smaller than the tile
    empty = write_raster(tmp_path / "e.tif", np.zeros((1, 32, 32), np.uint8), nodata=0)
    with pytest.raises(RasterError, match="no valid 8 x 8"):
        TripletSampler([open_scene(empty)], 8, 10)
    small = np.zeros((1, 32, 32), np.uint8)
    small[:, 5:11, 5:20] = 9
    small_path = write_raster(tmp_path / "small.tif", small, nodata=0)
    with pytest.raises(RasterError, match="no valid 8 x 8"):
        TripletSampler([open_scene(small_path)], 8, 10)


def test_gives_up_after_max_tries(tmp_path):
    # scattered nodata: valid 8 x 8 windows exist but are rare
    rng = np.random.default_rng(0)
    data = np.where(rng.random((1, 64, 64)) < 0.05, 0, 9).astype(np.uint8)
    data[:, :8, :8] = 9
    path = write_raster(tmp_path / "holes.tif", data, nodata=0)
    sampler = TripletSampler([open_scene(path)], 8, 10, max_tries=2)
    with pytest.raises(RasterError, match="could not draw a valid triplet in 2 tries"):
        list(sampler.sample(50, seed=0))


def test_coverage_helpers_known_values():
    """Summed-area tables and box sums; AOI cells are the touched cells dilated by one."""
    a = np.arange(12).reshape(3, 4)
    table = integral(a)
    assert table.shape == (4, 5) and table[-1, -1] == a.sum()
    assert table[2, 3] == 0 + 1 + 2 + 4 + 5 + 6
    np.testing.assert_array_equal(box_sums(table, 2, 2),
                                  [[10, 14, 18], [26, 30, 34]])  # e.g. 0+1+4+5 = 10
    # a 10 x 10 grid of unit cells (north-up, origin at (0, 10)); the AOI covers cell (4, 6)
    grid = Affine(1, 0, 0, 0, -1, 10)
    cells = aoi_cells(box(6.2, 5.2, 6.8, 5.8), grid, (10, 10))
    expected = np.zeros((10, 10), bool)
    expected[3:6, 5:8] = True
    np.testing.assert_array_equal(cells, expected)
    assert not aoi_cells(box(0, 0, 0, 0).buffer(0), grid, (10, 10)).any()  # empty AOI
