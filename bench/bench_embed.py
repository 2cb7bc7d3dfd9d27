"""Benchmark `geoembed embed`: windows/s, pipeline overhead vs. pure model forward, peak RSS.

Scenes: a synthetic 4096 x 4096 x 4 uint8 GeoTIFF (tiled 256, deflate; crops of 1024 and
2048 for the speed runs) and an 8192 x 8192 x 4 one, written once to a cache directory.

Speed: a random-init TileNet (base width 16, z_dim 64, tile 50; a CPU-sized model, the
paper's base width 64 / z_dim 512 is a GPU job). In one subprocess per configuration,
forward-only and end-to-end runs alternate ``--reps`` times and the best of each is kept
(the shared machine is noisy). End to end is ``embed()``: checkpoint load, reading,
nodata checks, normalisation, inference, quantisation, COG writing with overviews.
Forward only is the model on the same windows, already normalised and in memory, with the
same batch size.

Memory: peak RSS (``ru_maxrss``, includes importing torch) of ``embed()`` on the whole
4096^2 and 8192^2 scenes at stride 50, each in its own subprocess, with a tiny TileNet
(base width 2) so that the 26,569 windows of the larger scene run in minutes on a CPU.

Whole process (``--whole``, issue 11): ``/usr/bin/time -v geoembed embed`` on a 4096 x 4096 x 4
uint8 scene written as users get it (COG: 512 px blocks, deflate, overviews) against a
forward-only process run the same way in the same run: interpreter start-up, imports and
checkpoint load included in both; the forward-only process pushes the same number of windows
(one random normalised batch, reused) through the model.

    .venv/bin/python bench/bench_embed.py                        # shared 2-core CPU
    .venv/bin/python bench/bench_embed.py --whole --reps 2       # whole processes, COG input
    .venv/bin/python bench/bench_embed.py --ratio-size 4096 --device cuda --no-rss  # a GPU
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
RSS_BASE_WIDTH = 2  # the RSS runs embed whole 4096² and 8192² scenes: a tiny model


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


def make_checkpoint(path: Path, scene: Path, base_width: int, *, z_dim: int = Z_DIM,
                    tile: int = TILE) -> Path:
    """A random-init TileNet checkpoint (seed 0) with the band statistics of ``scene``."""
    import torch

    from geoembed.io.checkpoint import save_checkpoint
    from geoembed.io.scenes import band_statistics, open_scene
    from geoembed.models import build_encoder, encoder_config

    if path.exists():
        return path
    torch.manual_seed(0)
    model = build_encoder("tilenet", 4, z_dim=z_dim, base_width=base_width)
    stats = band_statistics([open_scene(scene)], n_windows=16, window_size=256)
    save_checkpoint(path, {
        "encoder": encoder_config("tilenet", 4, z_dim, base_width),
        "state_dict": model.state_dict(), "bands": [1, 2, 3, 4],
        "band_stats": stats.to_dict(), "tile_size": tile, "scenes": [str(scene)],
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
    from geoembed.inference.embedding import embed

    t0 = time.perf_counter()
    embed(ckpt, scene, out, stride=stride, batch_size=BATCH, dtype=dtype, device="cpu",
          overwrite=True, quiet=True)
    seconds = time.perf_counter() - t0
    import rasterio

    with rasterio.open(out) as ds:
        windows = ds.width * ds.height
    return {"seconds": seconds, "windows": windows, "rss_mb": _rss_mb()}


def part_forward(ckpt: str, n_windows: int, device: str) -> dict:
    """Forward-only process: the model on ``n_windows`` windows, batches of ``BATCH``."""
    import torch

    from geoembed.devices import autocast_context, resolve_device
    from geoembed.inference.embedding import load_embedding_model

    dev = resolve_device(device)
    em = load_embedding_model(ckpt)
    model = em.model.to(dev)
    x = torch.randn(BATCH, 4, em.tile, em.tile, generator=torch.Generator().manual_seed(0))
    x = x.to(dev)
    with torch.inference_mode(), autocast_context(dev, True):
        for k in range(0, n_windows, BATCH):
            model(x[:min(BATCH, n_windows - k)]).float().cpu()
    return {"windows": n_windows}


def make_cog(path: Path, src: Path) -> Path:
    """``src`` rewritten as ``gdal_translate -of COG -co COMPRESS=DEFLATE`` would (512 blocks)."""
    import rasterio.shutil

    if not path.exists():
        rasterio.shutil.copy(src, path, driver="COG", blocksize=512, compress="deflate")
    return path


def whole_process(cache: Path, ckpt: Path, reps: int, device: str) -> None:
    """``geoembed embed`` vs a forward-only process, both under ``/usr/bin/time -v``."""
    from bench_tile import timed  # bench/ is on sys.path when this file runs as a script

    cog = make_cog(cache / "scene_4096_cog512.tif", make_scene(cache / "scene_4096.tif", 4096))
    n = ((4096 - TILE) // 50 + 1) ** 2
    out = cache / "whole_out"
    embed_cmd = [sys.executable, "-m", "geoembed.cli", "embed", str(ckpt), str(cog), "--out",
                 str(out / "emb.tif"), "--stride", "50", "--batch-size", str(BATCH),
                 "--device", device, "--quiet"]
    fwd_cmd = [sys.executable, __file__, "--part", "forward", str(ckpt), str(n), device]
    rows = []
    for _ in range(reps):
        e = timed(embed_cmd, out)
        f = timed(fwd_cmd, out)
        rows.append((e, f))
        print(f"embed {e['seconds']:.1f} s {e['rss_mib']:.0f} MiB; forward {f['seconds']:.1f} s "
              f"{f['rss_mib']:.0f} MiB", file=sys.stderr)
    import torch

    print(f"Machine: {platform.system()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"device {device}, load average at the end {os.getloadavg()[0]:.1f}\n")
    print(f"Whole processes (/usr/bin/time -v), 4096² x 4 uint8 COG (512 blocks, deflate), "
          f"stride 50 ({n} windows), TileNet base width {BASE_WIDTH}, z_dim {Z_DIM}, "
          f"batch {BATCH}\n")
    print("| rep | geoembed embed s | forward-only process s | ratio (wall) | embed CPU s | "
          "forward CPU s | ratio (CPU) | embed peak RSS MiB | forward peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (e, f) in enumerate(rows, 1):
        print(f"| {i} | {e['seconds']:.1f} | {f['seconds']:.1f} | "
              f"{e['seconds'] / f['seconds']:.3f} | {e['cpu_s']:.1f} | {f['cpu_s']:.1f} | "
              f"{e['cpu_s'] / f['cpu_s']:.3f} | {e['rss_mib']:.0f} | {f['rss_mib']:.0f} |")
    best = {k: (min(e[k] for e, _ in rows), min(f[k] for _, f in rows))
            for k in ("seconds", "cpu_s")}
    print(f"| best | {best['seconds'][0]:.1f} | {best['seconds'][1]:.1f} | "
          f"{best['seconds'][0] / best['seconds'][1]:.3f} | {best['cpu_s'][0]:.1f} | "
          f"{best['cpu_s'][1]:.1f} | {best['cpu_s'][0] / best['cpu_s'][1]:.3f} | | |")


def _in_memory(em, scene: str, stride: int):
    """Every window of the grid, read and normalised, as one float32 tensor."""
    import torch

    from geoembed.inference.strips import read_grid_row
    from geoembed.io.scenes import normalize, open_scene
    from geoembed.samplers.grid import WindowGrid

    sc = open_scene(scene)
    grid = WindowGrid.for_scene(sc, em.tile, stride)
    parts = []
    for i in range(grid.shape[0]):
        r = read_grid_row(sc, grid, i)
        parts.append(normalize(r.tiles, em.band_stats, r.valid))
    return torch.from_numpy(np.concatenate(parts))


def part_ratio(ckpt: str, scene: str, stride: int, out: str, dtype: str, reps: int,
               device: str, threads: int) -> dict:
    """Interleaved forward-only and end-to-end runs in one process; best of ``reps``.

    Wall time and process CPU time (all threads: the background reader's work counts).
    """
    import torch

    if threads > 0:
        torch.set_num_threads(threads)

    from geoembed.devices import autocast_context, resolve_device
    from geoembed.inference.embedding import embed, load_embedding_model

    dev = resolve_device(device)
    em = load_embedding_model(ckpt)
    model = em.model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    x = _in_memory(em, scene, stride).to(dev)
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)

    def forward() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.inference_mode(), autocast_context(dev, True):
            for k in range(0, len(x), BATCH):
                y = model(x[k:k + BATCH])
            y.float().cpu()
        return time.perf_counter() - t0, time.process_time() - c0

    with torch.inference_mode():  # warm-up (allocator, cudnn)
        model(x[:BATCH]).float().cpu()
    fwd, e2e = [], []
    for _ in range(reps):
        fwd.append(forward())
        t0, c0 = time.perf_counter(), time.process_time()
        embed(ckpt, scene, out, stride=stride, batch_size=BATCH, dtype=dtype, device=device,
              overwrite=True, quiet=True)
        e2e.append((time.perf_counter() - t0, time.process_time() - c0))
    return {"windows": len(x), "threads": torch.get_num_threads(),
            "forward": min(f[0] for f in fwd), "e2e": min(e[0] for e in e2e),
            "forward_cpu": min(f[1] for f in fwd), "e2e_cpu": min(e[1] for e in e2e),
            "forward_all": fwd, "e2e_all": e2e}


def run_part(*args: str) -> dict:
    cmd = [sys.executable, __file__, "--part", *args]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/geoembed_bench", help="where scenes are kept")
    ap.add_argument("--ratio-size", type=int, default=1024, choices=[1024, 2048, 4096],
                    help="scene (crop) size of the speed/ratio runs (4096 on a quiet machine "
                         "or a GPU)")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of the ratio runs")
    ap.add_argument("--device", default="cpu", help="device of the speed/ratio runs")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads of the speed runs (0: torch's default)")
    ap.add_argument("--no-rss", action="store_true", help="skip the 4096/8192 RSS runs")
    ap.add_argument("--whole", action="store_true",
                    help="only the whole-process run: geoembed embed vs forward-only process")
    ap.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part:
        kind, *rest = args.part
        if kind == "forward":
            ckpt, n, device = rest
            print(json.dumps(part_forward(ckpt, int(n), device)))
        elif kind == "embed":
            ckpt, scene, stride, out, dtype = rest
            print(json.dumps(part_embed(ckpt, scene, int(stride), out, dtype)))
        else:
            ckpt, scene, stride, out, dtype, reps, device, threads = rest
            print(json.dumps(part_ratio(ckpt, scene, int(stride), out, dtype, int(reps),
                                        device, int(threads))))
        return

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    s4 = make_scene(cache / "scene_4096.tif", 4096)
    scenes = {4096: s4}
    for size in (1024, 2048):
        scenes[size] = crop(s4, cache / f"scene_{size}.tif", size)
    ckpt = make_checkpoint(cache / f"tilenet_w{BASE_WIDTH}_z{Z_DIM}.pt", s4, BASE_WIDTH)
    if args.whole:
        whole_process(cache, ckpt, args.reps, args.device)
        return
    out = str(cache / "out.tif")
    scene = scenes[args.ratio_size]
    speed = []
    for stride, dtype in ((50, "float32"), (50, "int8"), (25, "float32")):
        r = run_part("ratio", str(ckpt), str(scene), str(stride), out, dtype, str(args.reps),
                     args.device, str(args.threads))
        speed.append((f"{args.ratio_size}² stride {stride} {dtype}", r))
    rss = []
    if not args.no_rss:
        small = make_checkpoint(cache / f"tilenet_w{RSS_BASE_WIDTH}_z{Z_DIM}.pt", s4,
                                RSS_BASE_WIDTH)
        s8 = make_scene(cache / "scene_8192.tif", 8192, seed=1)
        for size, path in ((4096, s4), (8192, s8)):
            rss.append((size, run_part("embed", str(small), str(path), "50", out, "float32")))
    import torch

    print(f"Machine: {platform.system()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({speed[0][1]['threads']} threads), device {args.device}, load average at the end "
          f"{os.getloadavg()[0]:.1f}\n")
    print(f"Speed: TileNet base width {BASE_WIDTH}, z_dim {Z_DIM}, tile {TILE}, batch {BATCH}, "
          f"random init; best of {args.reps} interleaved runs\n")
    print("| run | windows | windows/s | end-to-end s | forward only s | ratio (wall) | "
          "end-to-end CPU s | forward CPU s | ratio (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in speed:
        print(f"| {name} | {r['windows']} | {r['windows'] / r['e2e']:.0f} | {r['e2e']:.1f} | "
              f"{r['forward']:.1f} | {r['e2e'] / r['forward']:.3f} | {r['e2e_cpu']:.1f} | "
              f"{r['forward_cpu']:.1f} | {r['e2e_cpu'] / r['forward_cpu']:.3f} |")
    if rss:
        print(f"\nPeak RSS (own process, includes torch): TileNet base width {RSS_BASE_WIDTH}, "
              f"z_dim {Z_DIM}, tile {TILE}, stride 50, float32\n")
        print("| scene | windows | seconds | peak RSS MB |")
        print("|---|---|---|---|")
        for size, r in rss:
            print(f"| {size}² x 4 uint8 | {r['windows']} | {r['seconds']:.0f} | "
                  f"{r['rss_mb']:.0f} |")
        print(f"\n8192² - 4096²: {rss[1][1]['rss_mb'] - rss[0][1]['rss_mb']:+.0f} MB")


if __name__ == "__main__":
    main()
