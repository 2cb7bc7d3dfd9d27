"""Bad input gives a one-line error naming the input, exit status 2 and no output: damaged
rasters (truncated pixel data, a corrupt compressed tile: RasterErrors naming the file and the
window), and remote inputs that fail (HTTP 404 and 403, a connection reset mid-transfer, a
server answering 503 after GDAL's retries, an ``s3://`` path without credentials, a URL scheme
GDAL cannot open)."""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterator
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
from tests import loopback
from tests.conftest import ORIGIN, PIXEL, UTM_CRS
from tests.loopback import block_bytes, run_cli
from tests.test_embed import make_checkpoint

server, cog, checkpoint = loopback.server, loopback.cog, loopback.checkpoint  # fixtures

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


# --- remote inputs that fail: each is one line, exit status 2 and no output ---------------


def _assert_one_line_failure(code: int, output: str, start: str, tmp_path: Path,
                             outputs: list[Path]) -> None:
    """Exit 2, one line ``Error: <input>...``, no traceback, no output nor hidden temporary."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2, output
    assert len(lines) == 1 and "Traceback" not in output, output
    assert lines[0].startswith(start), (lines[0], start)
    assert not any(p.exists() for p in outputs), outputs
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _run_command(command: str, src: str, checkpoint: Path, tmp_path: Path) -> tuple[int, str]:
    """``geoembed tile`` (into ``tmp_path/store``) or ``geoembed embed`` (``tmp_path/emb.tif``)."""
    if command == "tile":
        return run_cli(["tile", src, "--out", tmp_path / "store", "-n", 10, "-t", 16, "--quiet"])
    return run_cli(["embed", checkpoint, src, "--out", tmp_path / "emb.tif", "--stride", 16,
                    "--quiet"])


def _tile_and_embed(src: str, checkpoint: Path, tmp_path: Path) -> Iterator[tuple[int, str]]:
    """Run ``geoembed tile`` and ``geoembed embed`` on ``src``."""
    for command in ("tile", "embed"):
        yield _run_command(command, src, checkpoint, tmp_path)


@pytest.mark.parametrize("name,code", [("missing.tif", 404), ("forbidden.tif", 403)])
def test_url_refused_is_one_line(server, checkpoint, tmp_path, make_raster, name, code):
    base, root, served = server
    if code == 403:
        (root / name).write_bytes(make_raster("src.tif", size=(64, 64)).read_bytes())
    url = f"{base}/{name}"
    with pytest.raises(RasterError, match=f"^{re.escape(url)}: cannot open it as a raster"):
        open_scene(url)
    for exit_code, output in _tile_and_embed(url, checkpoint, tmp_path):
        _assert_one_line_failure(exit_code, output, f"Error: {url}: cannot open it as a raster",
                                 tmp_path, [tmp_path / "store", tmp_path / "emb.tif"])
        # GDAL >= 3.6 names the HTTP status; GDAL 3.5 (rasterio 1.3's wheels) only says the
        # URL does not exist
        assert (f"HTTP response code: {code}" in output
                or "does not exist in the file system" in output), output
    assert served.log == []  # nothing but the error pages


@pytest.mark.parametrize("kind", ["drop", "busy"])
def test_failed_download_is_one_line(server, cog, checkpoint, tmp_path, monkeypatch, kind):
    """The server cuts every pixel download half-way (resetting the connection) or answers
    503 to it: the read fails in one line naming the URL and the window.

    GDAL retries a 503 (GDAL_HTTP_MAX_RETRY times, set small here); a 206 cut short is not
    retried as such: GDAL keeps the bytes it got and asks for the rest, which is cut again.
    """
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "2")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.01")
    base, root, served = server
    header, _ = block_bytes(cog)
    served.drop_from = header + 1  # the header downloads; pixel data does not
    for command in ("tile", "embed"):
        name = f"/{kind}_{command}.tif"
        (root / name[1:]).write_bytes(cog.read_bytes())
        url = base + name
        code, output = _run_command(command, url, checkpoint, tmp_path)
        _assert_one_line_failure(code, output, f"Error: {url}: cannot read pixels at window (",
                                 tmp_path, [tmp_path / "store", tmp_path / "emb.tif"])
        assert output.rstrip().endswith("the download failed or the file is truncated or "
                                         "corrupt"), output
        failed = [(start, n) for path, start, n in served.log
                  if path == name and start >= served.drop_from]
        if kind == "busy":  # the first try and GDAL's 2 retries, of the same range
            tries = collections.Counter(failed).values()  # measured: 3 ranges x 3 (tile)
            assert tries and all(n % 3 == 0 for n in tries), served.log
        else:
            assert failed and all(n > 0 for _, n in failed), served.log


def test_s3_without_credentials_is_one_line(server, checkpoint, tmp_path, monkeypatch):
    """No AWS_* variable, no credentials file: the one line says where credentials come from.
    The endpoint is the loopback server, so nothing could reach the internet."""
    base, _, served = server
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.aws/credentials
    monkeypatch.setenv("AWS_S3_ENDPOINT", base.removeprefix("http://"))
    monkeypatch.setenv("AWS_HTTPS", "NO")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CPL_AWS_AUTODETECT_EC2", "NO")
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "2")
    url = "s3://geoembed-test-bucket/scene.tif"
    for code, output in _tile_and_embed(url, checkpoint, tmp_path):
        _assert_one_line_failure(code, output, f"Error: {url}: cannot open it as a raster",
                                 tmp_path, [tmp_path / "store", tmp_path / "emb.tif"])
        assert re.search(r"credentials come from the environment: AWS_ACCESS_KEY_ID and "
                         r"AWS_SECRET_ACCESS_KEY.*AWS_PROFILE", output), output
    assert served.log == []


def test_unknown_scheme_is_one_line(checkpoint, tmp_path):
    url = "ftp://example.org/scene.tif"
    for code, output in _tile_and_embed(url, checkpoint, tmp_path):
        _assert_one_line_failure(code, output, f"Error: {url}: cannot read ftp:// URLs",
                                 tmp_path, [tmp_path / "store", tmp_path / "emb.tif"])
