"""Sharded, resumable embed (issue 15): 1 shard vs 2 shards in parallel, and the cost of the
resumability check.

16 scenes (512 x 512 x 4 uint8, written as users get them: 512-tiled deflate COGs) and a
tiny TileNet checkpoint (base width 8, z_dim 16, tile 16). Every run is a whole
``python -m geoembed.cli embed`` process under ``/usr/bin/time -v`` (``timed`` from
bench_tile.py), with one torch thread (``OMP_NUM_THREADS=1``):

* **empty**: a shard with no inputs (``--shard 16/17``): start-up, imports, checkpoint load
  and hash, input expansion; the fixed cost of a process.
* **1 shard**: the 16 scenes in one process.
* **2 shards**: ``--shard 0/2`` and ``--shard 1/2`` started together into the same folder;
  wall time from the first start to the last end. Their outputs are checked byte-identical
  to the 1-shard run's.
* **rerun, all done**: the 1-shard command again over the finished folder: every scene is
  skipped after the resumability check (open the output, compare its checkpoint and options
  tags, look for stale temporaries, append a manifest line).

The per-scene cost of a skip is also timed in process (``embed()`` over the finished folder
minus ``embed()`` of an empty shard, median of ``--reps``), which the process start-up noise
of the shared machine does not blur. Writes bench/results/shards.md.

    .venv/bin/python bench/bench_shards.py            # ~1-2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from bench_embed import make_checkpoint as make_embed_checkpoint
from machine import machine_line

ROOT = Path(__file__).resolve().parents[1]
TILE, Z_DIM, BASE_WIDTH = 16, 16, 8


def make_scene(path: Path, size: int, seed: int) -> Path:
    """A smooth-plus-noise 4-band uint8 COG in 512 px deflate tiles."""
    import rasterio
    from rasterio.transform import from_origin

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    data = np.stack([120 + 60 * np.sin(xx / (17 + 5 * b + seed)) * np.cos(yy / (23 + 3 * b))
                     + rng.normal(0, 12, (size, size)) for b in range(4)])
    tmp = path.with_name(path.stem + ".part.tif")
    x0 = 500_000 + seed * size * 10  # scenes side by side, 10 m pixels
    with rasterio.open(tmp, "w", driver="COG", width=size, height=size, count=4, dtype="uint8",
                       crs="EPSG:32610", transform=from_origin(x0, 4_200_000, 10.0, 10.0),
                       blocksize=512, compress="deflate") as ds:
        ds.write(np.clip(data, 1, 255).astype("uint8"))
    tmp.rename(path)
    return path


def make_checkpoint(path: Path, scene: Path) -> Path:
    """The tiny TileNet of this benchmark (bench_embed's checkpoint maker)."""
    return make_embed_checkpoint(path, scene, BASE_WIDTH, z_dim=Z_DIM, tile=TILE)


def embed_cmd(ckpt: Path, listing: Path, out: Path, stride: int, shard: str | None) -> list[str]:
    return [sys.executable, "-m", "geoembed.cli", "embed", str(ckpt), f"@{listing}", "--out",
            str(out), "--stride", str(stride), "--device", "cpu", "--quiet",
            *(["--shard", shard] if shard else [])]


def parallel(cmds: list[list[str]], scratch: Path) -> tuple[float, list[dict]]:
    """Run the commands at once, each under ``timed``: (wall from first start to last end,
    each process's measures)."""
    from bench_tile import timed  # bench/ is on sys.path when this file runs as a script

    results: list[dict | None] = [None] * len(cmds)

    def run(i: int) -> None:
        results[i] = timed(cmds[i], scratch / f"dummy{i}")  # timed clears its `out`: a dummy

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(cmds))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if any(r is None for r in results):
        raise SystemExit("a shard failed")
    return wall, results  # type: ignore[return-value]


def in_process_skip(ckpt: Path, scenes: list[str], out: Path, stride: int, reps: int
                    ) -> tuple[float, float]:
    """Median seconds of ``embed()`` over the finished folder and of an empty shard."""
    import torch

    from geoembed.inference.embedding import embed
    from geoembed.io.inputs import Shard

    torch.set_num_threads(1)
    done, empty = [], []
    for _ in range(reps):
        t = time.perf_counter()
        embed(ckpt, scenes, out, stride=stride, device="cpu", quiet=True)
        done.append(time.perf_counter() - t)
        t = time.perf_counter()
        embed(ckpt, scenes, out, stride=stride, device="cpu", quiet=True,
              shard=Shard(len(scenes), len(scenes) + 1))
        empty.append(time.perf_counter() - t)
    return statistics.median(done), statistics.median(empty)


THREADS = "1 thread per process"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-scenes", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--stride", type=int, default=8, help="window step (tile 16)")
    ap.add_argument("--reps", type=int, default=5, help="in-process skip timings (median)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "_work" / "shards")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "shards.md")
    args = ap.parse_args()
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    import shutil

    from bench_tile import timed

    started = time.perf_counter()
    work = args.work
    (work / "scenes").mkdir(parents=True, exist_ok=True)
    scenes = [make_scene(work / "scenes" / f"scene_{i:02d}.tif", args.size, i)
              for i in range(args.n_scenes)]
    listing = work / "scenes.txt"
    listing.write_text("".join(f"{p}\n" for p in scenes))
    ckpt = make_checkpoint(work / "tiny.pt", scenes[0])
    before = machine_line(THREADS)

    one, two, scratch = work / "out1", work / "out2", work / "scratch"
    for d in (one, two, scratch):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    n = args.n_scenes
    empty = timed(embed_cmd(ckpt, listing, one, args.stride, f"{n}/{n + 1}"), scratch / "d")
    single = timed(embed_cmd(ckpt, listing, one, args.stride, None), scratch / "d")
    wall2, shards = parallel([embed_cmd(ckpt, listing, two, args.stride, f"{i}/2")
                              for i in range(2)], scratch)
    same = all((one / f"{p.stem}_embedding.tif").read_bytes()
               == (two / f"{p.stem}_embedding.tif").read_bytes() for p in scenes)
    rerun = timed(embed_cmd(ckpt, listing, one, args.stride, None), scratch / "d")
    done_s, empty_s = in_process_skip(ckpt, [str(p) for p in scenes], one, args.stride,
                                      args.reps)

    windows = ((args.size - TILE) // args.stride + 1) ** 2
    per_scene = (single["seconds"] - empty["seconds"]) / n
    skip_proc = (rerun["seconds"] - empty["seconds"]) / n
    skip_in = (done_s - empty_s) / n
    km2 = n * (args.size * 10 / 1000) ** 2
    ideal = single["seconds"] / (empty["seconds"] + per_scene * n / 2)
    rows = [
        (f"empty shard ({n}/{n + 1}): start-up, checkpoint, inputs", empty),
        (f"1 shard, {n} scenes", single),
        ("2 shards in parallel: shard 0/2", shards[0]),
        ("2 shards in parallel: shard 1/2", shards[1]),
        (f"rerun, all {n} done (skipped)", rerun),
    ]
    lines = [
        "## Sharded, resumable embed (bench/bench_shards.py)", "",
        before + " at the start", "",
        f"{n} scenes of {args.size}² x 4 uint8 (512-tiled deflate COGs, {km2:.0f} km² at 10 m), "
        f"TileNet base width {BASE_WIDTH}, z_dim {Z_DIM}, tile {TILE}, stride {args.stride} "
        f"({windows} windows a scene); every run a whole `python -m geoembed.cli embed "
        "CKPT @scenes.txt --out DIR` process under `/usr/bin/time -v`, one torch thread "
        "(OMP_NUM_THREADS=1). Command: `.venv/bin/python bench/bench_shards.py`.", "",
        "| run | wall s | CPU s | max RSS MiB |", "|---|---|---|---|",
        *[f"| {name} | {r['seconds']:.2f} | {r['cpu_s']:.2f} | {r['rss_mib']:.0f} |"
          for name, r in rows],
        f"| 2 shards in parallel: first start to last end | {wall2:.2f} | "
        f"{sum(r['cpu_s'] for r in shards):.2f} | |", "",
        f"* **1 vs 2 shards**: wall {single['seconds']:.2f} s vs {wall2:.2f} s: speed-up "
        f"**{single['seconds'] / wall2:.2f}x** with 2 shards on {os.cpu_count()} shared cores "
        f"(ideal: each process's start-up plus half the work: {ideal:.2f}x); 2-shard outputs "
        f"byte-identical to the 1-shard run's: {'yes' if same else 'NO'}.",
        f"* **Embed time per scene** (1 shard, less the empty shard, / {n}): {per_scene:.3f} s "
        f"({km2 / n / max(per_scene, 1e-9):.2f} km²/s at 10 m).",
        f"* **Resumability check per skipped scene**: {skip_in * 1000:.2f} ms in process "
        f"(embed() over the finished folder less an empty shard, median of {args.reps}) = "
        f"**{100 * skip_in / per_scene:.2f} %** of a scene's embed time (target < 1 %); "
        f"whole process: {skip_proc * 1000:.1f} ms "
        f"({100 * skip_proc / per_scene:.1f} %, within the start-up noise).", "",
        machine_line(THREADS) + f" at the end; {time.perf_counter() - started:.0f} s in all",
        "",
    ]
    text = "\n".join(lines)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
