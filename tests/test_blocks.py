"""Block-aware reading (geoembed.io.blocks, geoembed.io.tiles): each block decoded once per
pass, tiles equal to direct rasterio reads, on 512/256-tiled, striped and band-interleaved
files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoembed.io import tiles as tiles_mod
from geoembed.io.blocks import BlockLayout, band_shape, plan_passes
from geoembed.io.scenes import open_scene
from geoembed.io.tiles import TileReader
from tests.conftest import write_raster

T = 20
LAYOUTS = {
    "cog512": {"tiled": True, "blockxsize": 512, "blockysize": 512},
    "tiled256": {"tiled": True, "blockxsize": 256, "blockysize": 256},
    "striped": {"blockysize": 16},
    "band-interleaved": {"tiled": True, "blockxsize": 256, "blockysize": 256,
                         "interleave": "band"},
}


def write_layout(path: Path, layout: str, size: tuple[int, int] = (1100, 1300),
                 nodata: int | None = None) -> Path:
    """A 3-band uint16 deflate GeoTIFF in ``layout`` (partial blocks on the right and bottom)."""
    h, w = size
    rng = np.random.default_rng(7)
    data = rng.integers(1, 4000, (3, h, w), dtype=np.uint16)
    if nodata is not None:
        data[:, 300:420, 500:700] = nodata
    write_raster(path, data, nodata=nodata)
    with rasterio.open(path) as src:
        profile = dict(src.profile, compress="deflate", **LAYOUTS[layout])
        out = path.with_name(f"{layout}_{path.name}")
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read())
    return out


def add_mask(path: Path) -> None:
    """An internal mask instead of nodata: the same 120 x 200 block invalid."""
    with rasterio.open(path, "r+") as ds:
        m = np.full((1100, 1300), 255, dtype=np.uint8)
        m[300:420, 500:700] = 0
        ds.write_mask(m)


def windows(n: int, size: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, size[0] - T + 1, n), rng.integers(0, size[1] - T + 1, n)


def blocks_read(passes, layout: BlockLayout, groups: bool = False) -> Counter:
    """How many times each (block row, block column) is read by the planned passes
    (``groups``: column groups, whose right edge may cut a block)."""
    seen: Counter = Counter()
    for p in passes:
        for r in p.reads:
            w = r.window
            # whole blocks: reads start on block edges and end on one or on the raster's edge
            assert w.row_off % layout.block_h == 0 and w.col_off % layout.block_w == 0
            end_r, end_c = w.row_off + w.height, w.col_off + w.width
            assert end_r % layout.block_h == 0 or end_r == layout.height
            assert end_c % layout.block_w == 0 or end_c == layout.width or groups
            for br in range(w.row_off // layout.block_h, -(-end_r // layout.block_h)):
                for bc in range(w.col_off // layout.block_w, -(-end_c // layout.block_w)):
                    seen[br, bc] += 1
    return seen


def touched(rows: np.ndarray, cols: np.ndarray, layout: BlockLayout) -> set:
    """The blocks under the windows, one window at a time."""
    return {(br, bc) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
            for br in range(r // layout.block_h, (r + T - 1) // layout.block_h + 1)
            for bc in range(c // layout.block_w, (c + T - 1) // layout.block_w + 1)}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_block_read_once_and_windows_inside_their_pass(tmp_path, name):
    path = write_layout(tmp_path / "s.tif", name)
    with rasterio.open(path) as ds:
        layout = BlockLayout.of(ds)
        assert (layout.block_h, layout.block_w) == {
            "cog512": (512, 512), "tiled256": (256, 256), "striped": (16, 1300),
            "band-interleaved": (256, 256)}[name]
    rows, cols = windows(400, (1100, 1300))
    bpp = 3 * 2
    memory = 1300 * bpp * (layout.block_h + T - 1)  # one block row per band
    assert band_shape(layout, bpp, T, memory) == (layout.block_h, 1300)
    passes = list(plan_passes(layout, rows, cols, T, bpp, memory))
    seen = blocks_read(passes, layout)
    assert max(seen.values()) == 1  # every block decoded at most once in the pass
    assert set(seen) == touched(rows, cols, layout)  # exactly the blocks under the windows
    # each window in exactly one pass, whole inside its buffer
    owner = np.concatenate([p.windows for p in passes])
    assert sorted(owner.tolist()) == list(range(400))
    for p in passes:
        r, c = rows[p.windows] - p.origin[0], cols[p.windows] - p.origin[1]
        assert (r >= 0).all() and (c >= 0).all()
        assert (r + T <= p.shape[0]).all() and (c + T <= p.shape[1]).all()


def test_sparse_windows_read_only_their_blocks(tmp_path):
    layout = BlockLayout(height=4096, width=4096, block_h=512, block_w=512)
    rows, cols = np.array([10, 3000]), np.array([500, 2000])  # the first spans 2 blocks
    seen = blocks_read(plan_passes(layout, rows, cols, T, 4, 64 << 20), layout)
    assert dict(seen) == {(0, 0): 1, (0, 1): 1, (5, 3): 1}


def test_over_budget_block_rows_split_in_column_groups():
    layout = BlockLayout(height=1024, width=4096, block_h=512, block_w=512)
    # 3 blocks and T - 1 columns of one block row (plus T - 1 kept rows) fit
    memory = (512 + T - 1) * 2 * (3 * 512 + T - 1)
    assert band_shape(layout, 2, T, memory) == (512, 1536)
    rows, cols = windows(500, (1024, 4096), seed=3)
    passes = list(plan_passes(layout, rows, cols, T, 2, memory))
    seen = blocks_read(passes, layout, groups=True)
    # only blocks on a group's right edge are read again (by the next group)
    assert {k for k, v in seen.items() if v > 1} <= {(r, c) for r in (0, 1) for c in (3, 6)}
    assert max(seen.values()) == 2
    assert sorted(np.concatenate([p.windows for p in passes]).tolist()) == list(range(500))


@pytest.mark.parametrize(("name", "rows_in_budget", "mask"), [
    *[(name, 512, False) for name in LAYOUTS],
    ("cog512", 300, False),  # under one block row: column groups
    ("cog512", 512, True),  # an internal mask instead of nodata
])
def test_tiles_equal_direct_reads(tmp_path, monkeypatch, name, rows_in_budget, mask):
    path = write_layout(tmp_path / "s.tif", name, nodata=None if mask else 0)
    if mask:
        add_mask(path)
    scene = open_scene(path)
    rows, cols = windows(300, (1100, 1300), seed=1)
    planned = []

    def spy(*args, **kwargs):
        out = list(plan_passes(*args, **kwargs))
        planned.extend(out)
        return out

    monkeypatch.setattr(tiles_mod, "plan_passes", spy)
    memory = 1300 * 6 * (rows_in_budget + T - 1)  # passes of 512 rows, rows kept across
    reader = TileReader([scene], T, max_nodata=1.0, memory=memory)
    got: dict[int, np.ndarray] = {}

    def sink(t, r, tiles):
        for i, tile in zip(t.tolist(), tiles, strict=True):
            got[i] = tile.copy()

    n = len(rows)
    frac = reader.fetch(np.zeros(n, dtype=int), rows, cols, np.arange(n), np.zeros(n, int),
                        sink)
    assert len(planned) > 1 and reader.reads == sum(len(p.reads) for p in planned)
    with rasterio.open(path) as ds:
        layout = BlockLayout.of(ds)
        seen = blocks_read(planned, layout, groups=rows_in_budget < 512)
        assert max(seen.values()) == (1 if rows_in_budget >= 512 else 2)
        assert set(seen) == touched(rows, cols, layout)
        assert (reader.validity[0].kind == "mask") == mask
        for i in range(n):
            win = Window(int(cols[i]), int(rows[i]), T, T)
            expected = ds.read(window=win)
            np.testing.assert_array_equal(got[i], expected)
            # the nodata fraction from the pixels read (a 120 x 200 block of zeros)
            assert frac[i] == pytest.approx((ds.read_masks(1, window=win) == 0).mean())
    assert frac.max() > 0  # some windows do overlap the nodata block


@pytest.mark.parametrize("mask", [False, True])
def test_read_windows_pixels_and_validity_equal_direct_reads(tmp_path, mask):
    """read_windows (evaluate's label tiles): pixels and per-pixel validity equal rasterio's
    reads and masks, for windows inside, across the nodata block and off the scene's edge."""
    path = write_layout(tmp_path / "s.tif", "cog512", nodata=None if mask else 0)
    if mask:
        add_mask(path)
    scene = open_scene(path)
    rows, cols = windows(200, (1100, 1300), seed=3)
    rows = np.r_[rows, -5, 1090, 410, 0]  # off the top, off the bottom, on the nodata block
    cols = np.r_[cols, 40, 1290, 490, -T]  # ..., one wholly outside (left)
    data, valid = tiles_mod.read_windows(scene, rows, cols, T, memory=1300 * 6 * 600)
    with rasterio.open(path) as ds:
        for i in range(len(rows)):
            win = Window(int(cols[i]), int(rows[i]), T, T)
            expected = ds.read(window=win, boundless=True, fill_value=0)
            ok = ds.read_masks(1, window=win, boundless=True) > 0
            np.testing.assert_array_equal(valid[i], ok)
            np.testing.assert_array_equal(np.where(ok, data[i], 0), np.where(ok, expected, 0))
    assert not valid[-1].any() and 0 < valid[-2].mean() < 1 and valid[:200].mean() > 0.9
