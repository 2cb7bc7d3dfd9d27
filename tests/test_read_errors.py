"""Damaged rasters (truncated pixel data, a corrupt compressed tile) give one-line
RasterErrors naming the file and the window, exit status 2 and no output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli
from rasterio.transform import from_origin
from rasterio.windows import Window

from geoembed.errors import RasterError
from geoembed.io.embeddings import read_embeddings
from geoembed.io.scenes import open_scene
from geoembed.samplers.tiling import tile
from tests.conftest import ORIGIN, PIXEL, UTM_CRS
from tests.test_embed import make_checkpoint

SIZE, BLOCK = 256, 64


def write_tiled(path: Path, seed: int = 0) -> np.ndarray:
    """A 4-band uint16 256 x 256 GeoTIFF in 64 x 64 deflate tiles (noise: tiles stay large)."""
    data = np.random.default_rng(seed).integers(1, 4000, (4, SIZE, SIZE)).astype("uint16")
    with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=4,
                       dtype="uint16", crs=UTM_CRS, compress="deflate", tiled=True,
                       blockxsize=BLOCK, blockysize=BLOCK,
                       transform=from_origin(*ORIGIN, PIXEL, PIXEL)) as ds:
        ds.write(data)
    return data


def truncated(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Cut to 60 % of its size: GDAL wrote the header and IFD first, so it still opens."""
    path = tmp_path / "truncated.tif"
    data = write_tiled(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * 0.6)])
    return path, data


def corrupt(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Valid header, and the compressed bytes of tile (row 1, col 1) scrambled."""
    path = tmp_path / "corrupt.tif"
    data = write_tiled(path)
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    raw = bytearray(path.read_bytes())
    raw[offset + 2:offset + size - 4] = bytes(b ^ 0x5A for b in raw[offset + 2:offset + size - 4])
    path.write_bytes(bytes(raw))
    return path, data


DAMAGED = {"truncated": truncated, "corrupt": corrupt}


def leftovers(directory: Path) -> list[str]:
    """Temporary siblings an atomic write would leave behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("kind", DAMAGED)
def test_python_api_raises_raster_error_naming_file_and_window(tmp_path, kind):
    path, data = DAMAGED[kind](tmp_path)
    with rasterio.open(path) as ds:  # the damage is past the header: open succeeds
        assert (ds.width, ds.count) == (SIZE, 4)
    scene = open_scene(path)
    # an intact tile reads back exactly
    np.testing.assert_array_equal(scene.read(Window(0, 0, BLOCK, BLOCK)), data[:, :BLOCK, :BLOCK])
    bad = Window(BLOCK, BLOCK, BLOCK, BLOCK) if kind == "corrupt" else Window(0, 192, 256, 64)
    with pytest.raises(RasterError) as info:
        scene.read(bad)
    err = info.value
    assert isinstance(err, OSError)
    msg = str(err)
    where = ("window (col 64, row 64, 64 x 64)" if kind == "corrupt"
             else "window (col 0, row 192, 256 x 64)")
    assert msg.startswith(f"{path}: cannot read pixels at {where}: ")
    assert msg.endswith("the file may be truncated or corrupt")
    assert "\n" not in msg
    # the Python entry points raise the same error
    with pytest.raises(RasterError, match="cannot read pixels"):
        tile([path], tmp_path / "store", n_triplets=50, tile_size=16, neighborhood=24,
             quiet=True)
    assert not (tmp_path / "store").exists() and leftovers(tmp_path) == []
    with pytest.raises(RasterError, match="cannot read pixels"):
        read_embeddings(path)


@pytest.mark.parametrize("kind", DAMAGED)
def test_cli_tile_and_embed_exit_2_with_one_line(tmp_path, kind):
    path, _ = DAMAGED[kind](tmp_path)
    ckpt, _, _ = make_checkpoint(tmp_path / "ckpt.pt", tile=16)
    runs = {
        "tile": ["tile", path, "--out", tmp_path / "store", "-n", 50, "-t", 16, "-r", 24,
                 "--quiet"],
        "embed": ["embed", ckpt, path, "--out", tmp_path / "emb.tif", "--stride", 16,
                  "--quiet"],
    }
    for name, args in runs.items():
        res = CliRunner().invoke(cli, [str(a) for a in args])
        assert res.exit_code == 2, (name, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.output, (name, res.output)
        assert lines[0].startswith(f"Error: {path}: cannot read pixels at window (col ")
        assert lines[0].endswith("the file may be truncated or corrupt")
    assert not (tmp_path / "store").exists() and not (tmp_path / "emb.tif").exists()
    assert leftovers(tmp_path) == []
