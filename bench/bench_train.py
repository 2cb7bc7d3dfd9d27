"""Benchmark `geoembed train`: speed (end to end vs. pure compute) and what training learns.

Parts (``--part``, default all):

* ``speed``: for TileNet and resnet18, triplets/s of :func:`geoembed.trainers.fit.fit` on a
  triplet store (memory-mapped store dataset + augmentation + DataLoader + forward +
  triplet loss + backward + Adam + metric sums), against the same step on one batch already
  in memory on the device (same model config, batch size, AMP and memory format), measured
  in the same run. ``ratio`` = end-to-end step time / pure step time (target <= 1.10).
  Each is measured ``--rounds`` times alternately and the best kept (the machine is shared).
* ``quality``: on sample_data/scene.tif, a small TileNet run; held-out triplets (a store
  drawn with another seed) before and after training: mean d(a,n), d(a,d), share with a
  violated margin (d(a,n) - d(a,d) + margin > 0) and triplet accuracy (share with
  d(a,n) < d(a,d)); plus the accuracy of the tiles' mean spectra (a no-learning baseline).
  "Untrained" is the same random initialisation with its BatchNorm statistics estimated on
  training tiles (a fresh network's default statistics would make every distance ~0).
* ``naip``: the same on the 8 real NAIP scenes in ../shared/real/naip (channels 0-3, written
  to GeoTIFFs with a made-up UTM georeference in bench/_work/), skipped when absent.

CPU-sized configuration by default (tile 32, TileNet base width 16, z_dim 128, batch 32);
the paper's (tile 50, base width 64, z_dim 512, batch 50) is a GPU job:

    .venv/bin/python bench/bench_train.py --threads 1 > bench/results/train.md
    .venv/bin/python bench/bench_train.py --part speed --device cuda --tile 50 \\
        --base-width 64 --z-dim 512 --batch-size 50 --steps 40 --workers 4
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
from naip import write_naip_scenes

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "train"
SCENE = ROOT / "sample_data" / "scene.tif"
NAIP = ROOT.parent / "shared" / "real" / "naip"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_store(name: str, scenes: list[Path], n: int, tile: int, neighborhood: int,
               seed: int) -> Path:
    """A triplet store in bench/_work/train (cached between runs)."""
    from geoembed.io.store import open_store
    from geoembed.samplers.tiling import tile as tile_fn

    out = WORK / name
    if out.exists():
        try:
            st = open_store(out)
            if st.n_triplets == n and st.tile_size == tile and st.meta.get("seed") == seed:
                return out
        except Exception:  # noqa: BLE001 - rebuild anything unusable
            pass
    tile_fn([str(s) for s in scenes], out, n_triplets=n, tile_size=tile,
            neighborhood=neighborhood, seed=seed, overwrite=True, quiet=True)
    return out


# --------------------------------------------------------------------------------- speed


def pure_step_seconds(model, batch, objective, device, amp: bool, steps: int) -> float:
    """Mean seconds of one training step on a batch already on the device."""
    import torch

    from geoembed.devices import autocast_context
    from geoembed.trainers.tile2vec import TripletStep

    step = TripletStep(objective)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model.train()

    def one() -> None:
        with autocast_context(device, amp):
            out = step(model, batch, lambda t: t)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        for v in out.sums.values():  # fit reads the metric sums too
            v.detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        one()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    sync()
    return (time.perf_counter() - t0) / steps


def data_only_seconds(store: Path, batch_size: int) -> float:
    """Mean seconds per batch of the data pipeline alone (workers 0, no model)."""
    import torch
    from torch.utils.data import DataLoader

    from geoembed.datasets.triplets import TripletStoreDataset

    loader = DataLoader(TripletStoreDataset(store, augment=True), batch_size=batch_size,
                        shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    n = sum(1 for _ in loader)
    return (time.perf_counter() - t0) / n


def speed(args, device) -> list[str]:
    import torch

    from geoembed.datasets.triplets import TripletStoreDataset
    from geoembed.losses import Tile2VecLoss
    from geoembed.models import build_encoder
    from geoembed.trainers.fit import FitConfig, fit, seed_everything
    from geoembed.trainers.tile2vec import TripletStep

    cuda = device.type == "cuda"
    n = args.batch_size * args.steps
    store = make_store(f"speed_t{args.tile}_n{n}", [SCENE], n, args.tile, args.tile, 0)
    objective = Tile2VecLoss("triplet")
    configs = [("tilenet", f"base width {args.base_width}"), ("resnet18", "smp, no weights")]
    rows = []
    for name, desc in configs:
        in_ch = TripletStoreDataset(store).in_channels

        def model_on_device(name=name, in_ch=in_ch):
            seed_everything(0)
            m = build_encoder(name, in_ch, args.z_dim, base_width=args.base_width).to(device)
            return m.to(memory_format=torch.channels_last) if cuda else m

        ds_plain = TripletStoreDataset(store, augment=True)
        batch = torch.stack([ds_plain[i] for i in range(args.batch_size)])
        batch = batch.to(device)
        if cuda:  # same memory format as fit's to_device, on the (B*3, C, T, T) view
            b = batch.shape[0]
            batch = batch.reshape(b * 3, *batch.shape[2:]).contiguous(
                memory_format=torch.channels_last).reshape(batch.shape)
        for workers in args.workers:
            pure, e2e = [], []
            for r in range(args.rounds):
                log(f"speed {name} workers={workers} round {r + 1}: pure")
                pure.append(pure_step_seconds(model_on_device(), batch, objective, device,
                                              not args.no_amp, args.steps))
                log(f"speed {name} workers={workers} round {r + 1}: end to end")
                store = make_store(f"speed_t{args.tile}_n{n}", [SCENE], n, args.tile,
                                   args.tile, 0)  # again: bench/_work may have been cleaned
                config = FitConfig(epochs=2, batch_size=args.batch_size, lr=1e-3,
                                   betas=(0.5, 0.999), workers=workers, seed=0,
                                   device=str(device.type), amp=not args.no_amp, quiet=True,
                                   drop_last=True, throughput_name="triplets_per_s")
                res = fit(model_on_device(), TripletStoreDataset(store, augment=True),
                          TripletStep(objective), out_dir=WORK / f"run_speed_{name}",
                          kind="tile2vec", config=config)
                e2e.append(args.batch_size / res.history[-1]["triplets_per_s"])  # warm epoch
            data = min(data_only_seconds(store, args.batch_size) for _ in range(2))
            p, e = float(np.median(pure)), float(np.median(e2e))
            ratio = float(np.median(np.array(e2e) / np.array(pure)))  # adjacent pairs
            log(f"  pure {[round(1e3 * v) for v in pure]} ms, end to end "
                f"{[round(1e3 * v) for v in e2e]} ms")
            rows.append(f"| {name} ({desc}) | {workers} | {1e3 * p:.0f} | {1e3 * e:.0f} | "
                        f"{args.batch_size / e:.0f} | {1e3 * data:.1f} | {ratio:.3f} | "
                        f"{(min(pure) + data) / min(pure):.3f} |")
    return _speed_header(args, device) + rows


def _speed_header(args, device) -> list[str]:
    """The speed table's title, description and column heads."""
    cuda = device.type == "cuda"
    amp = ("bf16 autocast + channels_last" if cuda and not args.no_amp
           else "fp32" + (" + channels_last" if cuda else ""))
    head = [
        f"### Training speed ({device.type}; {amp}; {args.threads or 'default'} torch "
        f"thread(s))",
        "",
        f"Tile {args.tile} px, 4 bands, z_dim {args.z_dim}, batch {args.batch_size} triplets "
        f"(3 x {args.batch_size} tiles per forward), {args.steps} steps per epoch; end to end "
        "= the second (warm) epoch of `fit` on a memory-mapped store; pure = the same step "
        f"on one batch already in memory; {args.rounds} alternating rounds (medians; the "
        "ratio is the median of the per-round ratios). The last column bounds the ratio "
        "from the data pipeline's own time per batch (DataLoader over the store, "
        "no model): (fastest pure step + data time) / fastest pure step.",
        "",
        "| encoder | DataLoader workers | pure step (ms) | end-to-end step (ms) | end-to-end "
        "triplets/s | data pipeline alone (ms/batch) | ratio end-to-end / pure | "
        "(pure + data) / pure |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return head


# ------------------------------------------------------------------------------- quality


def recalibrate_bn(model, dataset, batch_size: int, n_batches: int, device) -> None:
    """Estimate BatchNorm running statistics on training tiles (weights untouched)."""
    import torch
    from torch.utils.data import DataLoader

    from geoembed.trainers.tile2vec import embed_triplets

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for i, batch in enumerate(DataLoader(dataset, batch_size=batch_size, shuffle=False)):
            if i >= n_batches:
                break
            embed_triplets(model, batch.to(device))
    for m in bns:
        m.momentum = 0.1
    model.eval()


def mean_spectrum_accuracy(dataset) -> dict[str, float]:
    """Triplet accuracy of per-band tile means (normalised pixels): a no-learning baseline."""
    d_an, d_ad = [], []
    for i in range(len(dataset)):
        m = dataset[i].numpy().mean(axis=(2, 3))  # (3, C)
        d_an.append(np.linalg.norm(m[0] - m[1]))
        d_ad.append(np.linalg.norm(m[0] - m[2]))
    d_an, d_ad = np.array(d_an), np.array(d_ad)
    return {"d_an": float(d_an.mean()), "d_ad": float(d_ad.mean()),
            "accuracy": float(np.mean(d_an < d_ad))}


def quality(label: str, scenes: list[Path], args, device) -> list[str]:
    import torch

    from geoembed.datasets.triplets import TripletStoreDataset
    from geoembed.models import build_encoder
    from geoembed.trainers.fit import seed_everything
    from geoembed.trainers.tile2vec import evaluate_triplets, train

    key = label.split()[0].lower()
    train_store = make_store(f"{key}_train_t{args.tile}_n{args.train_triplets}", scenes,
                             args.train_triplets, args.tile, args.neighborhood, 0)
    held_store = make_store(f"{key}_heldout_t{args.tile}_n{args.heldout_triplets}", scenes,
                            args.heldout_triplets, args.tile, args.neighborhood, 1)
    held = TripletStoreDataset(held_store, augment=False)
    train_plain = TripletStoreDataset(train_store, augment=False)
    cfg = {"encoder": "tilenet", "z_dim": args.z_dim, "base_width": args.base_width}

    seed_everything(0)
    untrained = build_encoder("tilenet", held.in_channels, args.z_dim,
                              base_width=args.base_width).to(device)
    recalibrate_bn(untrained, train_plain, 50, 20, device)
    before = evaluate_triplets(untrained, held, margin=args.margin, device=device)

    log(f"quality {label}: training {args.epochs} epochs on {args.train_triplets} triplets")
    t0 = time.perf_counter()
    result = train(train_store, WORK / f"run_{key}", epochs=args.epochs,
                   batch_size=args.quality_batch, margin=args.margin, seed=0,
                   device=str(device.type), amp=not args.no_amp, overwrite=True, quiet=True,
                   workers=0, **cfg)
    seconds = time.perf_counter() - t0
    after = evaluate_triplets(result.model, held, margin=args.margin, device=device)
    spectral = mean_spectrum_accuracy(held)
    h0, h1 = result.history[0], result.history[-1]
    del torch
    return [
        f"### What training learns: {label}",
        "",
        f"TileNet (base width {args.base_width}, z_dim {args.z_dim}), tiles {args.tile} px, "
        f"neighborhood {args.neighborhood} px; {args.train_triplets} training triplets, "
        f"{args.epochs} epochs, batch {args.quality_batch}, Adam 1e-3 betas (0.5, 0.999), "
        f"margin {args.margin:g}, l2 0.01, flips/rotations; trained in {seconds:.0f} s "
        f"({h1['triplets_per_s']:.0f} triplets/s). Held out: {len(held)} triplets drawn "
        "with another seed.",
        "",
        "| encoder | d(a,n) | d(a,d) | violated margin | triplet accuracy d(a,n) < d(a,d) |",
        "|---|---|---|---|---|",
        f"| untrained (same init, BN statistics from training tiles) | {before['d_an']:.3f} | "
        f"{before['d_ad']:.3f} | {before['violated']:.1%} | {before['accuracy']:.1%} |",
        f"| trained | {after['d_an']:.3f} | {after['d_ad']:.3f} | {after['violated']:.1%} | "
        f"{after['accuracy']:.1%} |",
        f"| tile mean spectrum (no learning) | {spectral['d_an']:.3f} | {spectral['d_ad']:.3f}"
        f" | - | {spectral['accuracy']:.1%} |",
        "",
        f"Training set, first vs last epoch: loss {h0['loss']:.3f} -> {h1['loss']:.3f}, "
        f"violated {h0['violated']:.1%} -> {h1['violated']:.1%}, d(a,n) {h0['d_an']:.2f} -> "
        f"{h1['d_an']:.2f}, d(a,d) {h0['d_ad']:.2f} -> {h1['d_ad']:.2f}.",
    ]


def naip_scenes() -> list[Path] | None:
    """The NAIP arrays as 4-band GeoTIFFs (None when ../shared/real/naip is absent)."""
    return write_naip_scenes(NAIP, WORK / "naip")


# ---------------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["all", "speed", "quality", "naip"], default="all")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, mps")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--tile", type=int, default=32)
    p.add_argument("--neighborhood", type=int, default=32)
    p.add_argument("--base-width", type=int, default=16)
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32, help="speed part")
    p.add_argument("--steps", type=int, default=8, help="speed part: steps per epoch")
    p.add_argument("--rounds", type=int, default=5, help="speed part: alternating rounds")
    p.add_argument("--workers", default="0", help="speed part: comma-separated worker counts")
    p.add_argument("--margin", type=float, default=10.0)
    p.add_argument("--train-triplets", type=int, default=1000)
    p.add_argument("--heldout-triplets", type=int, default=500)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--quality-batch", type=int, default=50)
    args = p.parse_args()
    args.workers = [int(w) for w in args.workers.split(",")]

    import torch

    from geoembed.devices import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    WORK.mkdir(parents=True, exist_ok=True)
    amp_note = ("bf16 autocast on" if device.type == "cuda" and not args.no_amp
                else "AMP off (only used on CUDA)")
    log(f"device {device}, {amp_note}, torch threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    out = ["## Training (`geoembed train`, bench/bench_train.py)", "",
           f"Machine: {platform.system()}, {torch.get_num_threads()} torch thread(s) on a "
           f"shared 2-core CPU, torch {torch.__version__}; device {device}, {amp_note}.", ""]
    if args.part in ("all", "speed"):
        out += speed(args, device) + [""]
    if args.part in ("all", "quality"):
        out += quality("sample_data (synthetic scene)", [SCENE], args, device) + [""]
    if args.part in ("all", "naip"):
        scenes = naip_scenes()
        if scenes is None:
            out += ["### NAIP: skipped (../shared/real/naip not found)", ""]
        else:
            out += quality("NAIP (8 real scenes, 256 x 256, R G B NIR)", scenes, args,
                           device) + [""]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out += [f"Peak RSS of the benchmark process: {rss:.0f} MiB; total "
            f"{time.perf_counter() - t0:.0f} s."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
