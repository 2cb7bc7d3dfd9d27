"""Benchmark: `geoembed tile` vs. the original Tile2Vec procedure, as a user runs it.

Everything is timed as **whole processes** under ``/usr/bin/time -v`` (wall time and
"Maximum resident set size"; interpreter start-up and imports included):

- **baseline**: the published Tile2Vec procedure (tile2vec ``src/sample_tiles.py``:
  ``get_triplet_imgs`` + ``get_triplet_tiles``): every image is loaded whole
  (GDAL ``ReadAsArray()`` -> rasterio ``read()``), reflect-padded, the loop over *all*
  triplets runs once per image, and every tile is written with its own ``np.save``;
- **geoembed tile**: ``python -m geoembed.cli tile SCENE... --out DIR`` (one
  ``triplets.npy``, footprints GeoPackage, band statistics, meta.json);
- **read-once limit**: a process that reads every scene once, by whole block rows, with
  rasterio (GDAL_NUM_THREADS=ALL_CPUS) and writes the store's bytes (``n x 3 x C x T x T``
  in the scenes' dtype) once to a .npy.
  No sampler can be faster than reading its inputs and writing its output;
- **TorchGeo** (optional, ``--torchgeo-python VENV/bin/python``: the peer users would
  otherwise pick, run with its own interpreter so geoembed's environment never needs it): a
  ``RasterDataset`` over the scene folder (``*.tif``, all bands) + ``RandomGeoSampler``
  drawing ``3 x n_triplets`` patches of ``tile`` px (uniform random patches, not triplets:
  the same number of tiles as anchors + neighbors + distants), a ``DataLoader`` with
  ``collate_fn=stack_samples`` (batch 64), every batch written (in the scenes' dtype) to one
  .npy, the same bytes as geoembed's store. Method ``torchgeo`` runs the DataLoader with
  ``num_workers=0``, ``torchgeo-wN`` with N workers; ``--torchgeo-patches`` draws fewer
  patches (ratios then extrapolate: start-up and imports once, the rest per tile).

Cases (issue 11): (a) one 8192 x 8192 x 4 scene, 20,000 triplets of 50 px, neighborhood 100;
(b) 32 scenes of 2048 x 2048 x 4, 20,000 triplets. Inputs are written the way users get
them (``--layout``): ``cog512`` (``driver="COG"``, 512 px blocks, deflate, overviews: what
``gdal_translate -of COG`` writes), ``tiled256`` (GTiff tiled 256, deflate) or ``striped``
(GTiff strips, deflate); smooth synthetic content plus noise, in bench/_work/tile/ (removed
at the end unless ``--keep-inputs``). GDAL runs with its defaults in every process.

Usage:
    .venv/bin/python bench/bench_tile.py                        # full size, cog512
    .venv/bin/python bench/bench_tile.py --size-a 2048 --size-b 1024 --scenes-b 4 \
        --n-triplets 2000 --layout tiled256
    .venv/bin/python bench/bench_tile.py --profile              # cProfile of ours on (a)
    .venv/bin/python bench/bench_tile.py --before /tmp/old      # also time an older copy
        # (git archive OLD geoembed cli | tar -x -C /tmp/old; mv /tmp/old/cli /tmp/old/geoembed/)
    # TorchGeo in its own venv (python3 -m venv /tmp/tgvenv; /tmp/tgvenv/bin/pip install
    # torch torchgeo requests), alternating with geoembed tile:
    .venv/bin/python bench/bench_tile.py --methods ours,torchgeo,torchgeo-w2,readonce \
        --torchgeo-python /tmp/tgvenv/bin/python [--torchgeo-patches 6000]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "_work" / "tile"  # only ours: other benches keep caches in _work
LAYOUTS = ("cog512", "tiled256", "striped")


# ---------------------------------------------------------------- the original procedure


def load_img(img_file: str, val_type: str = "uint8", bands_only: bool = False,
             num_bands: int = 4) -> np.ndarray:
    """tile2vec's load_img (GDAL ReadAsArray replaced by rasterio's equivalent read())."""
    import rasterio  # in the child process only

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


def run_baseline(img_dir: str, out: str, n: int, tile: int, radius: int, dtype: str) -> None:
    """The original procedure (uint8 as published; float32, its other type, for uint16)."""
    random.seed(0)
    np.random.seed(0)
    img_triplets = get_triplet_imgs(img_dir, n_triplets=n)
    get_triplet_tiles(out, img_dir, img_triplets, tile_size=tile, neighborhood=radius,
                      val_type="uint8" if dtype == "uint8" else "float32")
    assert len(os.listdir(out)) == 3 * n


def run_read_once(img_dir: str, out: str, n: int, tile: int, dtype: str) -> None:
    """The read-once limit: decode every block of every scene once, write the store's bytes.

    Scenes are read by whole block rows (up to 64 MiB a read, GDAL decoding the blocks of a
    read on all cores, its cache small: nothing is decoded twice) and dropped.
    """
    import rasterio  # in the child process only
    from rasterio.windows import Window

    count = 0
    with rasterio.Env(GDAL_CACHEMAX=16 << 20, GDAL_NUM_THREADS="ALL_CPUS"):
        for path in sorted(Path(img_dir).glob("*.tif")):
            with rasterio.open(path) as ds:
                count = ds.count
                block_h = ds.block_shapes[0][0]
                row_bytes = ds.width * ds.count * np.dtype(ds.dtypes[0]).itemsize
                step = max(1, (64 << 20) // (row_bytes * block_h)) * block_h
                for r0 in range(0, ds.height, step):
                    ds.read(window=Window(0, r0, ds.width, min(step, ds.height - r0)))
    Path(out).mkdir(parents=True, exist_ok=True)
    shape = (n, 3, count, tile, tile)
    header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    chunk = np.ones(16 << 20, dtype=np.uint8)  # written 16 MiB at a time, like a writer
    left = int(np.prod(shape)) * np.dtype(dtype).itemsize
    with open(Path(out) / "triplets.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        while left > 0:
            f.write(chunk[:min(left, chunk.size)])
            left -= chunk.size


def run_torchgeo(img_dir: str, out: str, n_patches: int, tile: int, dtype: str,
                 workers: int, batch: int = 64) -> None:
    """TorchGeo's RasterDataset + RandomGeoSampler: ``n_patches`` random tiles to one .npy.

    Runs under the interpreter given by ``--torchgeo-python`` (TorchGeo >= 0.3: ``size``
    in pixels). Samples are uniform random patches, not triplets.
    """
    t0 = time.perf_counter()
    import torch  # in the child process only (TorchGeo's environment)
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import RandomGeoSampler

    class Scenes(RasterDataset):
        filename_glob = "*.tif"
        is_image = True

    t1 = time.perf_counter()
    torch.manual_seed(0)
    ds = Scenes(paths=img_dir)  # bands=None: every band of the files
    sampler = RandomGeoSampler(ds, size=tile, length=n_patches)
    loader = DataLoader(ds, sampler=sampler, batch_size=batch, num_workers=workers,
                        collate_fn=stack_samples)
    Path(out).mkdir(parents=True, exist_ok=True)
    count = _band_count(ds.index.filepath.iloc[0])
    header = {"descr": np.dtype(dtype).str, "fortran_order": False,
              "shape": (n_patches, count, tile, tile)}
    done = 0
    with open(Path(out) / "patches.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for sample in loader:
            image = sample["image"].numpy()
            assert image.shape[1:] == (count, tile, tile), image.shape
            f.write(image.astype(dtype).tobytes())
            done += len(image)
    assert done == n_patches, done
    # for timed(): imports vs. indexing + sampling + writing, inside the whole process
    print(f"bench-child import_s={t1 - t0:.2f} work_s={time.perf_counter() - t1:.2f}",
          file=sys.stderr)


def _band_count(path: str) -> int:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.count


def child(method: str, img_dir: str, out: str, n: int, tile: int, radius: int,
          dtype: str, patches: int | None = None) -> None:
    """Run one method in this (fresh) process."""
    if method == "baseline":
        run_baseline(img_dir, out, n, tile, radius, dtype)
    elif method.startswith("torchgeo"):
        run_torchgeo(img_dir, out, patches or 3 * n, tile, dtype, torchgeo_workers(method))
    else:
        run_read_once(img_dir, out, n, tile, dtype)


def torchgeo_workers(method: str) -> int:
    """DataLoader workers of a TorchGeo method: ``torchgeo`` 0, ``torchgeo-wN`` N."""
    return int(method.removeprefix("torchgeo-w")) if method.startswith("torchgeo-w") else 0


def make_inputs(folder: Path, n_scenes: int, size: int, seed: int, layout: str,
                dtype: str) -> None:
    """4-band GeoTIFFs with smooth content and noise, in the given layout (deflate)."""
    import rasterio
    import rasterio.shutil
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scale = 1 if dtype == "uint8" else 200
    for i in range(n_scenes):
        path = folder / f"scene_{i:02d}.tif"
        tmp = folder / f".scene_{i:02d}.tmp.tif"
        x0 = 400_000 + 30_000 * (i % 8)
        y0 = 4_600_000 - 30_000 * (i // 8)
        layout_opts = ({"tiled": True, "blockxsize": 256, "blockysize": 256}
                       if layout == "tiled256" else {})
        target = tmp if layout == "cog512" else path
        with rasterio.open(target, "w", driver="GTiff", width=size, height=size, count=4,
                           dtype=dtype, crs="EPSG:32615",
                           transform=from_origin(x0, y0, 2.0, 2.0), compress="deflate",
                           photometric="minisblack", **layout_opts) as ds:
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
                ds.write((block * scale).astype(dtype), window=Window(0, r0, size, len(yy)))
        if layout == "cog512":  # what `gdal_translate -of COG -co COMPRESS=DEFLATE` writes
            rasterio.shutil.copy(tmp, path, driver="COG", blocksize=512, compress="deflate")
            tmp.unlink()


def timed(cmd: list[str], out: Path, pythonpath: str | None = None) -> dict:
    """Run ``cmd`` under ``/usr/bin/time -v``: wall seconds, peak RSS (MiB), CPU seconds."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {}))
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                         cwd=ROOT if pythonpath is None else "/", env=env)
    shutil.rmtree(out, ignore_errors=True)
    if res.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{res.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", res.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    parts = [float(p) for p in wall.group(1).split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    cpu = sum(float(re.search(rf"{k} time \(seconds\): (\S+)", res.stderr).group(1))
              for k in ("User", "System"))
    inner = re.search(r"bench-child import_s=(\S+) work_s=(\S+)", res.stderr)
    split = {"import_s": float(inner.group(1)), "work_s": float(inner.group(2))} if inner else {}
    return {"seconds": seconds, "rss_mib": int(rss.group(1)) / 1024, "cpu_s": cpu, **split}


def command(method: str, img_dir: Path, out: Path, args: argparse.Namespace) -> list[str]:
    """The command line of one method."""
    if method in ("ours", "before"):
        memory = ["--memory", str(args.memory)] if args.memory and method == "ours" else []
        return [sys.executable, "-m", "geoembed.cli", "tile",
                *sorted(str(p) for p in img_dir.glob("*.tif")), "--out", str(out),
                "-n", str(args.n_triplets), "-t", str(args.tile), "-r", str(args.radius),
                "--seed", "0", "--quiet", *memory]
    python = sys.executable
    extra: list[str] = []
    if method.startswith("torchgeo"):
        python = args.torchgeo_python
        extra = ["--torchgeo-patches", str(n_tiles(method, args))]
    return [python, __file__, "--child", method, "--img-dir", str(img_dir),
            "--child-out", str(out), "--n-triplets", str(args.n_triplets), "--tile",
            str(args.tile), "--radius", str(args.radius), "--dtype", args.dtype, *extra]


def n_tiles(method: str, args: argparse.Namespace) -> int:
    """Tiles a method writes: 3 per triplet, or ``--torchgeo-patches`` for TorchGeo."""
    if method.startswith("torchgeo") and args.torchgeo_patches:
        return args.torchgeo_patches
    return 3 * args.n_triplets


def profile_ours(img_dir: Path, args: argparse.Namespace) -> None:
    """cProfile of `geoembed tile` in this process (top functions by cumulative time)."""
    import cProfile
    import pstats

    from geoembed.samplers.tiling import tile

    out = WORK / "out_profile"
    shutil.rmtree(out, ignore_errors=True)
    paths = sorted(str(p) for p in img_dir.glob("*.tif"))
    prof = cProfile.Profile()
    prof.enable()
    tile(paths, out, n_triplets=args.n_triplets, tile_size=args.tile,
         neighborhood=args.radius, seed=0, quiet=True)
    prof.disable()
    shutil.rmtree(out, ignore_errors=True)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)


METHODS = {"baseline": "Tile2Vec original (baseline)", "before": "geoembed tile, before",
           "ours": "geoembed tile", "readonce": "read-once limit"}


def method_label(method: str) -> str:
    """The table's name of a method (TorchGeo with its DataLoader workers)."""
    if method.startswith("torchgeo"):
        return f"TorchGeo RandomGeoSampler ({torchgeo_workers(method)} workers)"
    return METHODS[method]


def run_case(key: str, label: str, n_scenes: int, size: int, args: argparse.Namespace
             ) -> list[dict]:
    img_dir = WORK / f"inputs_{key}_{args.layout}_{args.dtype}_{size}_{n_scenes}"
    if not img_dir.exists():
        t0 = time.perf_counter()
        make_inputs(img_dir, n_scenes, size, seed=ord(key), layout=args.layout,
                    dtype=args.dtype)
        print(f"{label}: inputs written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.profile:
        profile_ours(img_dir, args)
        return []
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for method in args.methods.split(","):
            if (method == "before" and not args.before) or (
                    method.startswith("torchgeo") and not args.torchgeo_python):
                continue
            out = WORK / f"out_{method}"
            r = timed(command(method, img_dir, out, args), out,
                      args.before if method == "before" else None)
            args.loads.append(os.getloadavg()[0])
            print(f"  {label} {method}: {r} load {args.loads[-1]:.1f}", file=sys.stderr)
            if method not in best or r["seconds"] < best[method]["seconds"]:
                best[method] = r
    return [row(method, r, best, label, args) for method, r in best.items()]


def row(method: str, r: dict, best: dict[str, dict], label: str,
        args: argparse.Namespace) -> dict:
    """One table row; ratios per tile (TorchGeo may draw fewer: --torchgeo-patches)."""
    nan = float("nan")
    base, once, ours = best.get("baseline"), best.get("readonce"), best.get("ours")
    tiles = n_tiles(method, args)
    scale = 3 * args.n_triplets / tiles  # to the run's tile count: only the per-tile work
    fixed = r["seconds"] - r.get("work_s", r["seconds"])  # start-up and imports, once
    seconds = fixed + (r["seconds"] - fixed) * scale
    return {"label": label, "layout": args.layout, "method": method_label(method),
            "tiles": tiles, "tiles_s": tiles / r["seconds"], "seconds": r["seconds"],
            "rss": r["rss_mib"], "cpu": r["cpu_s"],
            "speed": base["seconds"] / seconds if base else nan,
            "vs_once": seconds / once["seconds"] if once else nan,
            "rss_ratio": r["rss_mib"] / base["rss_mib"] if base else nan,
            "ours_lead": seconds / ours["seconds"] if ours else nan,
            "import_s": r.get("import_s", nan),
            "ours_lead_work": (r["work_s"] * scale / ours["seconds"]
                               if ours and "work_s" in r else nan)}


def fmt(value: float, spec: str, suffix: str = "") -> str:
    """A table cell: ``—`` for a figure the run did not measure."""
    return "—" if value != value else f"{value:{spec}}{suffix}"


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
    ap.add_argument("--layout", default="cog512", choices=LAYOUTS)
    ap.add_argument("--dtype", default="uint8", choices=["uint8", "uint16"])
    ap.add_argument("--methods", default="baseline,before,ours,readonce,torchgeo",
                    help="comma list; torchgeo-wN: TorchGeo with N DataLoader workers")
    ap.add_argument("--memory", type=int, default=None, help="--memory MiB for ours")
    ap.add_argument("--before", help="a copy of an earlier geoembed (a folder holding the "
                    "geoembed package, cli/ as geoembed/cli) timed as method 'before'")
    ap.add_argument("--profile", action="store_true", help="cProfile ours instead of timing")
    ap.add_argument("--results", type=Path, default=None, help="write the table here")
    ap.add_argument("--keep-inputs", action="store_true")
    ap.add_argument("--torchgeo-python", help="an interpreter with TorchGeo installed (e.g. "
                    "/tmp/tgvenv/bin/python): times methods torchgeo / torchgeo-wN "
                    "(skipped without it)")
    ap.add_argument("--torchgeo-patches", type=int, default=None,
                    help="patches TorchGeo draws (default 3 x --n-triplets)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--img-dir", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.loads = []
    if args.child:
        child(args.child, args.img_dir, args.child_out, args.n_triplets, args.tile,
              args.radius, args.dtype, args.torchgeo_patches)
        return

    cases = {
        "a": (f"(a) 1 scene {args.size_a}²x4 {args.dtype}", 1, args.size_a),
        "b": (f"(b) {args.scenes_b} scenes {args.size_b}²x4 {args.dtype}", args.scenes_b,
              args.size_b),
    }
    load = os.getloadavg()[0]
    rows = []
    try:
        for key in args.cases:
            rows += run_case(key, *cases[key], args)
    finally:
        if not args.keep_inputs:
            shutil.rmtree(WORK, ignore_errors=True)
    if not args.profile:
        text = table(rows, args, load)
        print(text)
        if args.results:
            with args.results.open("a") as f:
                f.write(text + "\n")


def table(rows: list[dict], args: argparse.Namespace, load: float) -> str:
    """The markdown table of one run."""
    during = f"{min(args.loads):.1f}-{max(args.loads):.1f}" if args.loads else "n/a"
    lines = [
        f"{args.n_triplets:,} triplets of {args.tile} x {args.tile} px, neighborhood "
        f"{args.radius} px; whole processes under `/usr/bin/time -v` (start-up and imports "
        f"included), best of {args.repeat}; load average (1 min) before the run "
        f"{load:.1f}, after each process {during}.",
        "",
        "| case | layout | method | tiles | tiles/s | wall s | CPU s | peak RSS (MiB) "
        "| speed vs. baseline | wall vs. read-once | RSS vs. baseline "
        "| geoembed tile's lead per tile | of which imports s "
        "| lead per tile, imports excluded |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['layout']} | {r['method']} | {r['tiles']:,} "
            f"| {r['tiles_s']:,.0f} | {r['seconds']:.1f} | {r['cpu']:.1f} | {r['rss']:,.0f} "
            f"| {fmt(r['speed'], '.1f', 'x')} | {fmt(r['vs_once'], '.2f')} "
            f"| {fmt(r['rss_ratio'], '.2f')} | {fmt(r['ours_lead'], '.1f', 'x')} "
            f"| {fmt(r['import_s'], '.1f')} | {fmt(r['ours_lead_work'], '.1f', 'x')} |")
    if any(r["method"].startswith("TorchGeo") for r in rows):
        lines.append("\nTorchGeo draws uniform random patches, not triplets: tiles/s is the "
                     "comparable rate (geoembed writes 3 tiles a triplet). Ratios use wall "
                     "time scaled to 3 x n_triplets tiles (start-up and imports once, the rest per "
                     "tile). 'Imports excluded': TorchGeo's "
                     "time after `import torchgeo` (indexing, sampling, writing) against "
                     "geoembed tile's whole process.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
