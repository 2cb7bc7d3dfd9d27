"""Benchmark `geoembed embed`: windows/s, pipeline overhead vs. pure model forward, peak RSS.

Scenes: synthetic 4096 x 4096 x 4 and 8192 x 8192 x 4 uint8 GeoTIFFs (tiled 256, deflate),
written once to a cache directory. Model: a random-init TileNet (base width 16, z_dim 64,
tile 50) -- a CPU-sized model; the paper's (base width 64, z_dim 512) is a GPU job.

Every measurement runs in its own subprocess (peak RSS = that process's ru_maxrss, which
includes importing torch). The ratio compares `embed()` end to end (checkpoint load,
reading, nodata checks, normalisation, inference, quantisation, COG writing) with the model's
forward pass alone on the same windows, already normalised and in memory, with the same
batch size, in the same run.

    .venv/bin/python bench/bench_embed.py                 # the full table
    .venv/bin/python bench/bench_embed.py --small   # stride 25 on a 2048 crop
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TILE = 50
BASE_WIDTH = 16
Z_DIM = 64
BATCH = 256


def make_scene(path: Path, size: int, bands: int = 4, seed: int = 0) -> Path:
    """A smooth-plus-noise uint8 scene written strip by strip (never whole in memory)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".part.tif")
    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype="uint8",
                   crs="EPSG:32610", transform=from_origin(500_000, 4_200_000, 1.0, 1.0),
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    xx = np.arange(size)[None, :]
    with rasterio.open(tmp, "w", **profile) as ds:
        for r in range(0, size, 512):
            yy = np.arange(r, min(size, r + 512))[:, None]
            strip = np.stack([
                120 + 60 * np.sin(xx / (37 + 9 * b)) * np.cos(yy / (53 + 7 * b))
                + rng.normal(0, 12, (len(yy), size)) for b in range(bands)
            ])
            ds.write(np.clip(strip, 1, 255).astype(np.uint8), window=Window(0, r, size, len(yy)))
    tmp.rename(path)
    return path


def make_checkpoint(path: Path, scene: Path) -> Path:
    import torch

    from geoembed.checkpoint import save_checkpoint
    from geoembed.models import build_encoder, encoder_config
    from geoembed.raster import band_statistics, open_scene

    if path.exists():
        return path
    torch.manual_seed(0)
    model = build_encoder("tilenet", 4, z_dim=Z_DIM, base_width=BASE_WIDTH)
    stats = band_statistics([open_scene(scene)], n_windows=16, window_size=256)
    save_checkpoint(path, {
        "encoder": encoder_config("tilenet", 4, Z_DIM, BASE_WIDTH),
        "state_dict": model.state_dict(), "bands": [1, 2, 3, 4],
        "band_stats": stats.to_dict(), "tile_size": TILE, "scenes": [str(scene)],
        "options": {}, "epoch": 0,
    }, kind="tile2vec")
    return path


def crop(src: Path, dst: Path, size: int) -> Path:
    import rasterio
    from rasterio.windows import Window

    if dst.exists():
        return dst
    with rasterio.open(src) as ds:
        profile = ds.profile | {"width": size, "height": size,
                                "transform": ds.window_transform(Window(0, 0, size, size))}
        data = ds.read(window=Window(0, 0, size, size))
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def part_embed(ckpt: str, scene: str, stride: int, out: str, dtype: str) -> dict:
    from geoembed.embed import embed

    t0 = time.perf_counter()
    embed(ckpt, scene, out, stride=stride, batch_size=BATCH, dtype=dtype, device="cpu",
          overwrite=True, quiet=True)
    seconds = time.perf_counter() - t0
    import rasterio

    with rasterio.open(out) as ds:
        windows = ds.width * ds.height
    return {"seconds": seconds, "windows": windows, "rss_mb": _rss_mb()}


def part_forward(ckpt: str, scene: str, stride: int) -> dict:
    import torch

    from geoembed.embed import load_embedding_model
    from geoembed.grid import WindowGrid, read_grid_row
    from geoembed.raster import normalize, open_scene

    em = load_embedding_model(ckpt)
    sc = open_scene(scene)
    grid = WindowGrid.for_scene(sc, em.tile, stride)
    rows = [read_grid_row(sc, grid, i) for i in range(grid.shape[0])]
    x = torch.from_numpy(np.concatenate([normalize(r.tiles, em.band_stats, r.valid)
                                         for r in rows]))
    del rows
    model = em.model
    t0 = time.perf_counter()
    with torch.inference_mode():
        for k in range(0, len(x), BATCH):
            model(x[k:k + BATCH])
    return {"seconds": time.perf_counter() - t0, "windows": len(x), "rss_mb": _rss_mb()}


def run_part(*args: str) -> dict:
    cmd = [sys.executable, __file__, "--part", *args]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/geoembed_bench", help="where scenes are kept")
    ap.add_argument("--small", action="store_true",
                    help="run stride 25 on a 2048 x 2048 crop (shared CPUs)")
    ap.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part:
        kind, *rest = args.part
        if kind == "embed":
            ckpt, scene, stride, out, dtype = rest
            print(json.dumps(part_embed(ckpt, scene, int(stride), out, dtype)))
        else:
            ckpt, scene, stride = rest
            print(json.dumps(part_forward(ckpt, scene, int(stride))))
        return

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    s4 = make_scene(cache / "scene_4096.tif", 4096)
    s8 = make_scene(cache / "scene_8192.tif", 8192, seed=1)
    s2 = crop(s4, cache / "scene_2048.tif", 2048)
    ckpt = make_checkpoint(cache / "tilenet_w16_z64.pt", s4)
    out = str(cache / "out.tif")
    s25 = s2 if args.small else s4
    rows = []
    for scene, stride in ((s4, 50), (s25, 25)):
        fwd = run_part("forward", str(ckpt), str(scene), str(stride))
        e2e = run_part("embed", str(ckpt), str(scene), str(stride), out, "float32")
        e8 = run_part("embed", str(ckpt), str(scene), str(stride), out, "int8")
        size = scene.stem.split("_")[1]
        for name, r in (("float32", e2e), ("int8", e8)):
            rows.append((f"{size}² stride {stride} {name}", r["windows"],
                         r["windows"] / r["seconds"], r["seconds"], fwd["seconds"],
                         r["seconds"] / fwd["seconds"], r["rss_mb"]))
    big = run_part("embed", str(ckpt), str(s8), "50", out, "float32")
    rows.append(("8192² stride 50 float32", big["windows"], big["windows"] / big["seconds"],
                 big["seconds"], float("nan"), float("nan"), big["rss_mb"]))
    import torch

    print(f"Machine: {platform.system()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; TileNet base width {BASE_WIDTH}, z_dim {Z_DIM}, "
          f"tile {TILE}, batch {BATCH}, random init, CPU\n")
    print("| run | windows | windows/s | end-to-end s | forward only s | ratio | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for name, n, wps, sec, fsec, ratio, rss in rows:
        f = "–" if np.isnan(fsec) else f"{fsec:.1f}"
        r = "–" if np.isnan(ratio) else f"{ratio:.3f}"
        print(f"| {name} | {n} | {wps:.0f} | {sec:.1f} | {f} | {r} | {rss:.0f} |")
    print(f"\nPeak RSS 8192² - 4096² (stride 50, float32): {big['rss_mb'] - rows[0][6]:+.0f} MB")


if __name__ == "__main__":
    main()
