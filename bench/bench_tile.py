"""Benchmark: `geoembed tile` vs. the original Tile2Vec triplet sampling procedure.

The baseline re-implements the published Tile2Vec procedure (tile2vec ``src/sample_tiles.py``:
``get_triplet_imgs`` + ``get_triplet_tiles``): every image is loaded whole into memory
(GDAL ``ReadAsArray().astype(uint8)`` -> rasterio ``read()``), reflect-padded, then the loop
over *all* triplets runs once per image, and every tile is written with its own ``np.save``
(three files per triplet). Ours is :func:`geoembed.samplers.tiling.tile` (one ``triplets.npy``,
footprints GeoPackage, metadata).

Cases (from the issue): (a) one 8192 x 8192 x 4 uint8 GeoTIFF, 20,000 triplets of 50 x 50 px;
(b) 32 scenes of 2048 x 2048 x 4, 20,000 triplets. Inputs are tiled (256 px) GeoTIFFs
(``--compress deflate`` or ``none``) with smooth synthetic content, written to bench/_work/tile/
and removed at the end. Each method runs in its own subprocess: peak RSS is that process's
VmHWM (imports included; ru_maxrss would also count the parent's peak), time is the sampling
call alone (imports excluded). Both run with GDAL_CACHEMAX = 32 MiB, so that GDAL's block
cache inflates neither.

Usage:
    .venv/bin/python bench/bench_tile.py                    # full size (a few minutes)
    .venv/bin/python bench/bench_tile.py --size-a 4096 --size-b 1024 --n-triplets 5000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "_work" / "tile"  # only ours: other benches keep caches in _work
GDAL_CACHE = str(32 * 2**20)


# ---------------------------------------------------------------- the original procedure


def load_img(img_file: str, val_type: str = "uint8", bands_only: bool = False,
             num_bands: int = 4) -> np.ndarray:
    """tile2vec's load_img (GDAL ReadAsArray replaced by rasterio's equivalent read())."""
    import rasterio

    with rasterio.open(img_file) as obj:
        if val_type == "uint8":
            img = obj.read().astype(np.uint8)
        elif val_type == "float32":
            img = obj.read().astype(np.float32)
        else:
            raise ValueError("Invalid val_type for image values. Try uint8 or float32.")
    img = np.moveaxis(img, 0, -1)
    if bands_only:
        img = img[:, :, :num_bands]
    return img


def get_triplet_imgs(img_dir: str, img_ext: str = ".tif", n_triplets: int = 1000
                     ) -> np.ndarray:
    img_names = []
    for filename in os.listdir(img_dir):
        if filename.endswith(img_ext):
            img_names.append(filename)
    img_triplets = list(map(lambda _: random.choice(img_names), range(2 * n_triplets)))
    img_triplets = np.array(img_triplets)
    return img_triplets.reshape((-1, 2))


def sample_anchor(img_shape, tile_radius):
    w_padded, h_padded, c = img_shape
    w = w_padded - 2 * tile_radius
    h = h_padded - 2 * tile_radius
    xa = np.random.randint(0, w) + tile_radius
    ya = np.random.randint(0, h) + tile_radius
    return xa, ya


def sample_neighbor(img_shape, xa, ya, neighborhood, tile_radius):
    w_padded, h_padded, c = img_shape
    w = w_padded - 2 * tile_radius
    h = h_padded - 2 * tile_radius
    xn = np.random.randint(max(xa - neighborhood, tile_radius),
                           min(xa + neighborhood, w + tile_radius))
    yn = np.random.randint(max(ya - neighborhood, tile_radius),
                           min(ya + neighborhood, h + tile_radius))
    return xn, yn


def sample_distant_same(img_shape, xa, ya, neighborhood, tile_radius):
    w_padded, h_padded, c = img_shape
    w = w_padded - 2 * tile_radius
    h = h_padded - 2 * tile_radius
    xd, yd = xa, ya
    while (xd >= xa - neighborhood) and (xd <= xa + neighborhood):
        xd = np.random.randint(0, w) + tile_radius
    while (yd >= ya - neighborhood) and (yd <= ya + neighborhood):
        yd = np.random.randint(0, h) + tile_radius
    return xd, yd


def sample_distant_diff(img_shape, tile_radius):
    return sample_anchor(img_shape, tile_radius)


def extract_tile(img_padded, x0, y0, tile_radius):
    w_padded, h_padded, c = img_padded.shape
    row_min = x0 - tile_radius
    row_max = x0 + tile_radius
    col_min = y0 - tile_radius
    col_max = y0 + tile_radius
    assert row_min >= 0
    assert row_max <= w_padded
    assert col_min >= 0
    assert col_max <= h_padded
    return img_padded[row_min:row_max + 1, col_min:col_max + 1, :]


def get_triplet_tiles(tile_dir, img_dir, img_triplets, tile_size=50, neighborhood=100,
                      val_type="uint8", bands_only=False, save=True, verbose=False):
    if not os.path.exists(tile_dir):
        os.makedirs(tile_dir)
    size_even = (tile_size % 2 == 0)
    tile_radius = tile_size // 2

    n_triplets = img_triplets.shape[0]
    unique_imgs = np.unique(img_triplets)
    tiles = np.zeros((n_triplets, 3, 2), dtype=np.int16)

    for img_name in unique_imgs:
        img = load_img(os.path.join(img_dir, img_name), val_type=val_type,
                       bands_only=bands_only)
        img_padded = np.pad(img, pad_width=[(tile_radius, tile_radius),
                                            (tile_radius, tile_radius), (0, 0)],
                            mode="reflect")
        img_shape = img_padded.shape

        for idx, row in enumerate(img_triplets):
            if row[0] == img_name:
                xa, ya = sample_anchor(img_shape, tile_radius)
                xn, yn = sample_neighbor(img_shape, xa, ya, neighborhood, tile_radius)
                tile_anchor = extract_tile(img_padded, xa, ya, tile_radius)
                tile_neighbor = extract_tile(img_padded, xn, yn, tile_radius)
                if size_even:
                    tile_anchor = tile_anchor[:-1, :-1]
                    tile_neighbor = tile_neighbor[:-1, :-1]
                if save:
                    np.save(os.path.join(tile_dir, f"{idx}anchor.npy"), tile_anchor)
                    np.save(os.path.join(tile_dir, f"{idx}neighbor.npy"), tile_neighbor)
                tiles[idx, 0, :] = xa - tile_radius, ya - tile_radius
                tiles[idx, 1, :] = xn - tile_radius, yn - tile_radius
                if row[1] == img_name:
                    xd, yd = sample_distant_same(img_shape, xa, ya, neighborhood, tile_radius)
                    tile_distant = extract_tile(img_padded, xd, yd, tile_radius)
                    if size_even:
                        tile_distant = tile_distant[:-1, :-1]
                    if save:
                        np.save(os.path.join(tile_dir, f"{idx}distant.npy"), tile_distant)
                    tiles[idx, 2, :] = xd - tile_radius, yd - tile_radius
            elif row[1] == img_name:
                xd, yd = sample_distant_diff(img_shape, tile_radius)
                tile_distant = extract_tile(img_padded, xd, yd, tile_radius)
                if size_even:
                    tile_distant = tile_distant[:-1, :-1]
                if save:
                    np.save(os.path.join(tile_dir, f"{idx}distant.npy"), tile_distant)
                tiles[idx, 2, :] = xd - tile_radius, yd - tile_radius
    return tiles


def run_baseline(img_dir: str, out: str, n: int, tile: int, radius: int) -> None:
    random.seed(0)
    np.random.seed(0)
    img_triplets = get_triplet_imgs(img_dir, n_triplets=n)
    get_triplet_tiles(out, img_dir, img_triplets, tile_size=tile, neighborhood=radius)
    assert len(os.listdir(out)) == 3 * n


def run_ours(img_dir: str, out: str, n: int, tile: int, radius: int) -> None:
    from geoembed.samplers.tiling import tile as tile_store

    paths = sorted(str(p) for p in Path(img_dir).glob("*.tif"))
    store = tile_store(paths, out, n_triplets=n, tile_size=tile, neighborhood=radius, seed=0,
                       quiet=True)
    assert store.triplets.shape[0] == n


# ---------------------------------------------------------------- driver


def child(method: str, img_dir: str, out: str, n: int, tile: int, radius: int) -> None:
    """Run one method in this (fresh) process; print seconds and peak RSS as JSON."""
    import rasterio

    fn = {"baseline": run_baseline, "ours": run_ours}[method]
    if method == "ours":  # import time is not sampling time
        import geoembed.samplers.tiling  # noqa: F401
    with rasterio.Env(GDAL_CACHEMAX=int(GDAL_CACHE)):
        t0 = time.perf_counter()
        fn(img_dir, out, n, tile, radius)
        seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "rss_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """Peak RSS of this process: VmHWM (ru_maxrss also counts the parent's peak before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_inputs(folder: Path, n_scenes: int, size: int, seed: int, compress: str) -> None:
    """Tiled 4-band uint8 GeoTIFFs with smooth content and noise."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_scenes):
        path = folder / f"scene_{i:02d}.tif"
        x0 = 400_000 + 30_000 * (i % 8)
        y0 = 4_600_000 - 30_000 * (i // 8)
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=4,
                           dtype="uint8", crs="EPSG:32615",
                           transform=from_origin(x0, y0, 2.0, 2.0), tiled=True,
                           blockxsize=256, blockysize=256, compress=compress,
                           photometric="minisblack") as ds:
            xx = np.arange(size)
            periods = rng.uniform(20, 90, (4, 2))
            for r0 in range(0, size, 512):
                yy = np.arange(r0, min(size, r0 + 512))
                block = np.stack([
                    120 + 50 * np.cos(yy / periods[b, 0])[:, None]
                    * np.sin(xx / periods[b, 1] + b)[None, :]
                    for b in range(4)
                ])
                block += rng.integers(-6, 7, block.shape)
                ds.write(block.astype(np.uint8), window=Window(0, r0, size, len(yy)))


def measure(method: str, img_dir: Path, n: int, tile: int, radius: int) -> dict:
    out = WORK / f"out_{method}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", method, "--img-dir", str(img_dir),
           "--child-out", str(out), "--n-triplets", str(n), "--tile", str(tile),
           "--radius", str(radius)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    shutil.rmtree(out, ignore_errors=True)
    if res.returncode != 0:
        raise SystemExit(f"{method} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-a", type=int, default=8192, help="side of the case (a) scene")
    ap.add_argument("--size-b", type=int, default=2048, help="side of the case (b) scenes")
    ap.add_argument("--scenes-b", type=int, default=32, help="number of case (b) scenes")
    ap.add_argument("--n-triplets", type=int, default=20_000)
    ap.add_argument("--tile", type=int, default=50)
    ap.add_argument("--radius", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=1, help="runs per method (best is kept)")
    ap.add_argument("--cases", default="ab")
    ap.add_argument("--compress", default="deflate", choices=["deflate", "none"],
                    help="compression of the input GeoTIFFs")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "tile.md")
    ap.add_argument("--keep-inputs", action="store_true")
    ap.add_argument("--child", choices=["baseline", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--img-dir", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.img_dir, args.child_out, args.n_triplets, args.tile,
              args.radius)
        return

    cases = {
        "a": (f"(a) 1 scene {args.size_a}x{args.size_a}x4 uint8", 1, args.size_a),
        "b": (f"(b) {args.scenes_b} scenes {args.size_b}x{args.size_b}x4 uint8",
              args.scenes_b, args.size_b),
    }
    rows = []
    try:
        for key in args.cases:
            label, n_scenes, size = cases[key]
            img_dir = WORK / f"inputs_{key}"
            t0 = time.perf_counter()
            make_inputs(img_dir, n_scenes, size, seed=ord(key), compress=args.compress)
            print(f"{label}: inputs written in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)
            best: dict[str, dict] = {}
            for _ in range(args.repeat):
                for method in ("baseline", "ours"):
                    r = measure(method, img_dir, args.n_triplets, args.tile, args.radius)
                    print(f"  {method}: {r}", file=sys.stderr)
                    if method not in best or r["seconds"] < best[method]["seconds"]:
                        best[method] = r
            if not args.keep_inputs:
                shutil.rmtree(img_dir, ignore_errors=True)
            base, ours = best["baseline"], best["ours"]
            for method, r in (("Tile2Vec original (baseline)", base), ("geoembed tile", ours)):
                rows.append((label, method, args.n_triplets / r["seconds"], r["seconds"],
                             r["rss_mib"], base["seconds"] / r["seconds"],
                             r["rss_mib"] / base["rss_mib"]))
    finally:
        if not args.keep_inputs:
            shutil.rmtree(WORK, ignore_errors=True)

    lines = [
        "## Triplet sampling (`geoembed tile`) vs. the original Tile2Vec procedure",
        "",
        "Machine: Linux, 2 cores (shared), 24 GiB, no GPU, torch 2.14.1 CPU. "
        f"{args.n_triplets:,} triplets of {args.tile} x {args.tile} px, neighborhood "
        f"{args.radius} px, best of {args.repeat} run(s) per method, each in its own "
        "process (peak RSS = VmHWM of that process, imports included; time = the "
        f"sampling call, imports excluded). Inputs: tiled (256 px) GeoTIFFs, compression "
        f"{args.compress}; GDAL_CACHEMAX 32 MiB for both. Baseline: the published Tile2Vec "
        "`get_triplet_imgs` + `get_triplet_tiles` (whole image in memory, reflect pad, loop "
        "over all triplets per image, one `np.save` per tile). Ours: "
        "`geoembed.samplers.tiling.tile` (one triplets.npy, footprints.gpkg, meta.json, band "
        "statistics included).",
        "",
        "| case | method | triplets/s | seconds | peak RSS (MiB) | speed vs. baseline "
        "| RSS vs. baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, method, tps, sec, rss, speed, rss_ratio in rows:
        lines.append(f"| {label} | {method} | {tps:,.0f} | {sec:.1f} | {rss:,.0f} | "
                     f"{speed:.1f}x | {rss_ratio:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)


if __name__ == "__main__":
    main()
