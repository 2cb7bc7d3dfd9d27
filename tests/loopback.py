"""A loopback HTTP server for remote-input tests: Range requests, byte counts, failures on
demand (403, a connection reset mid-body, 503), and the small 512-tiled COG it serves.

The fixtures (``server``, ``cog``, ``checkpoint``) are imported by the test modules that use
them."""

from __future__ import annotations

import math
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli
from rasterio.transform import from_origin

from tests.conftest import ORIGIN, PIXEL, UTM_CRS
from tests.test_embed import make_checkpoint

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
COG_SIZE, COG_BLOCK, COG_BORDER = 1024, 512, 8


@dataclass
class Served:
    """What the loopback server sent: one ``(path, first byte, body bytes)`` per response."""

    log: list[tuple[str, int, int]] = field(default_factory=list)
    drop_from: int = 1 << 62  # GETs of drop*/busy* files from this byte on fail

    def bytes_of(self, path: str) -> int:
        return sum(n for p, _, n in self.log if p == path)


class RangeHandler(BaseHTTPRequestHandler):
    """Serves the files of ``root`` with ``Range: bytes=a-b`` (206) and counts the bytes sent.

    ``forbidden*`` files answer 403. A GET from ``served.drop_from`` on of a ``drop*`` file
    announces the whole range, sends half of it and resets the connection; of a ``busy*``
    file it answers 503 (which GDAL retries).
    """

    root: Path
    served: Served

    def log_message(self, *args) -> None:  # quiet
        pass

    def _target(self) -> Path | None:
        path = self.root / self.path.lstrip("/").split("?")[0]
        if path.name.startswith("forbidden"):
            self.send_error(403)
            return None
        if not path.is_file():
            self.send_error(404)
            return None
        return path

    def do_HEAD(self) -> None:
        path = self._target()
        if path is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

    def do_GET(self) -> None:
        path = self._target()
        if path is None:
            return
        body, start = path.read_bytes(), 0
        match = _RANGE.match(self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
        if path.name.startswith("busy") and start >= self.served.drop_from:
            self.served.log.append((self.path, start, 0))
            self.send_error(503)
            return
        if match:
            end = min(int(match.group(2)) if match.group(2) else len(body) - 1, len(body) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            body = body[start:end + 1]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if path.name.startswith("drop") and start >= self.served.drop_from:
            body = body[:len(body) // 2]
            self.wfile.write(body)
            self.wfile.flush()
            # RST instead of FIN: the client sees the connection reset mid-body
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True
        else:
            self.wfile.write(body)
        self.served.log.append((self.path, start, len(body)))


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, Path, Served]]:
    """(base URL, served directory, what was sent) of a loopback HTTP server."""
    root = tmp_path / "served"
    root.mkdir()
    served = Served()
    handler = type("Handler", (RangeHandler,), {"root": root, "served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def cog(tmp_path_factory) -> Path:
    """A 1024 x 1024 x 4 uint8 COG in 512 x 512 deflate tiles (no overviews), an 8-px nodata
    border (0): smooth bands plus noise, so each block compresses to ~0.9 MB."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:COG_SIZE, 0:COG_SIZE]
    data = np.stack([120 + 60 * np.sin(xx / (7 + b) + b) * np.cos(yy / (11 + b))
                     + rng.normal(0, 12, (COG_SIZE, COG_SIZE)) for b in range(4)])
    data = data.clip(1, 255).astype("uint8")
    b = COG_BORDER
    data[:, :b], data[:, -b:], data[:, :, :b], data[:, :, -b:] = 0, 0, 0, 0
    path = tmp_path_factory.mktemp("cog") / "scene.tif"
    with rasterio.open(path, "w", driver="COG", width=COG_SIZE, height=COG_SIZE, count=4,
                       dtype="uint8", crs=UTM_CRS, nodata=0, blocksize=COG_BLOCK,
                       compress="deflate", overviews="NONE",
                       transform=from_origin(*ORIGIN, PIXEL, PIXEL)) as ds:
        ds.write(data)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt.pt", tile=16)[0]


def block_bytes(path: Path) -> tuple[int, dict[tuple[int, int], int]]:
    """(bytes before the first block: header and IFD, {(block row, block col): bytes})."""
    with rasterio.open(path) as ds:
        assert ds.block_shapes[0] == (COG_BLOCK, COG_BLOCK) and ds.profile["interleave"] == "pixel"
        n = math.ceil(ds.height / COG_BLOCK)
        tag = lambda kind, r, c: int(ds.get_tag_item(f"BLOCK_{kind}_{c}_{r}", "TIFF", bidx=1))  # noqa: E731
        sizes = {(r, c): tag("SIZE", r, c) for r in range(n) for c in range(n)}
        first = min(tag("OFFSET", r, c) for r, c in sizes)
    return first, sizes


def run_cli(args: list) -> tuple[int, str]:
    """``geoembed ARGS`` (items made strings) in process: (exit code, stdout and stderr)."""
    res = CliRunner().invoke(cli, [str(a) for a in args])
    return res.exit_code, res.output
