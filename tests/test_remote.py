"""Remote inputs: URLs served over HTTP with Range requests read like local files; URL
schemes map to GDAL's virtual file systems; GDAL's cloud settings yield to the user's
environment; outputs stay local."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli
from rasterio.env import get_gdal_config
from rasterio.windows import Window

from geoembed.errors import InputError, RasterError
from geoembed.io.gdal_env import CLOUD_DEFAULTS, read_env
from geoembed.io.outputs import check_output
from geoembed.io.paths import gdal_path, is_remote
from geoembed.io.scenes import open_scene
from tests.test_embed import make_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning")

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeHandler(BaseHTTPRequestHandler):
    """Serves files of ``root`` with ``Range: bytes=a-b`` (206); counts the bytes sent."""

    root: Path
    sent: list[int]

    def log_message(self, *args) -> None:  # quiet
        pass

    def _target(self) -> Path | None:
        path = self.root / self.path.lstrip("/").split("?")[0]
        return path if path.is_file() else None

    def do_HEAD(self) -> None:
        path = self._target()
        if path is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self) -> None:
        path = self._target()
        if path is None:
            self.send_error(404)
            return
        body = path.read_bytes()
        match = _RANGE.match(self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else len(body) - 1, len(body) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            body = body[start:end + 1]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)
        self.sent.append(len(body))


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, Path, list[int]]]:
    """(base URL, served directory, bytes sent per response) of a loopback server."""
    root = tmp_path / "served"
    root.mkdir()
    sent: list[int] = []
    handler = type("Handler", (RangeHandler,), {"root": root, "sent": sent})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, sent
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_scheme_mapping():
    assert gdal_path("s3://bucket/key.tif") == "/vsis3/bucket/key.tif"
    assert gdal_path("gs://bucket/a/b.tif") == "/vsigs/bucket/a/b.tif"
    assert gdal_path("az://container/b.tif") == "/vsiaz/container/b.tif"
    assert gdal_path("https://h.org/c.tif") == "/vsicurl/https://h.org/c.tif"
    assert gdal_path("/vsizip/a.zip/b.tif") == "/vsizip/a.zip/b.tif"
    assert gdal_path("data/scene.tif") == "data/scene.tif"
    assert is_remote("s3://b/k.tif") and is_remote("/vsicurl/http://h/x.tif")
    assert not is_remote("data/scene.tif") and not is_remote("C:/data/scene.tif")
    with pytest.raises(InputError, match=r"ftp://h/x.tif: cannot read ftp:// URLs"):
        gdal_path("ftp://h/x.tif")


def test_outputs_stay_local(tmp_path):
    for out in ["s3://bucket/out.tif", Path("https://h.org/out.tif"), "/vsimem/out.tif"]:
        with pytest.raises(InputError, match="must be a local path"):
            check_output(out, overwrite=True)
    assert check_output(tmp_path / "x.tif", overwrite=False) == tmp_path / "x.tif"


def test_user_environment_wins(monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "7")
    monkeypatch.delenv("GDAL_HTTP_RETRY_DELAY", raising=False)
    with read_env("https://h.org/x.tif"):
        assert get_gdal_config("GDAL_HTTP_MAX_RETRY") == 7  # the user's
        assert get_gdal_config("GDAL_HTTP_RETRY_DELAY") == CLOUD_DEFAULTS["GDAL_HTTP_RETRY_DELAY"]
        assert get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN") == "EMPTY_DIR"


def test_url_reads_the_same_pixels(server, make_raster):
    base, root, sent = server
    local = make_raster("scene.tif", size=(96, 80), border=4)
    (root / "scene.tif").write_bytes(local.read_bytes())
    remote = open_scene(f"{base}/scene.tif")
    scene = open_scene(local)
    assert (remote.width, remote.height, remote.crs, remote.transform) == (
        scene.width, scene.height, scene.crs, scene.transform)
    win = Window(3, 5, 60, 70)
    np.testing.assert_array_equal(remote.read(win), scene.read(win))
    np.testing.assert_array_equal(remote.read_valid(win), scene.read_valid(win))
    assert sum(sent) > 0


def test_cli_embed_url_equals_local(server, make_raster, tmp_path):
    base, root, _ = server
    local = make_raster("scene.tif", size=(64, 64), border=3)
    (root / "scene.tif").write_bytes(local.read_bytes())
    ckpt, _, _ = make_checkpoint(tmp_path / "ckpt.pt", tile=16)
    outs = {}
    for name, src in {"local": local, "remote": f"{base}/scene.tif"}.items():
        outs[name] = tmp_path / f"{name}.tif"
        res = CliRunner().invoke(cli, ["embed", str(ckpt), str(src), "--out", str(outs[name]),
                                       "--stride", "8", "--quiet"])
        assert res.exit_code == 0, res.output
    with rasterio.open(outs["local"]) as a, rasterio.open(outs["remote"]) as b:
        assert (a.crs, a.transform, a.count) == (b.crs, b.transform, b.count)
        np.testing.assert_array_equal(a.read(), b.read())


def test_missing_url_is_one_line(server, tmp_path):
    base, _, _ = server
    url = f"{base}/missing.tif"
    with pytest.raises(RasterError, match=f"^{re.escape(url)}: cannot open it as a raster"):
        open_scene(url)
    res = CliRunner().invoke(cli, ["tile", url, "--out", str(tmp_path / "store"), "-n", "10",
                                   "-t", "8", "--quiet"])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {url}: cannot open it as a raster")
    assert "404" in lines[0], lines[0]
    assert not (tmp_path / "store").exists()
