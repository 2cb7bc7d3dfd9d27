"""Benchmark `geoembed evaluate`: do trained Tile2Vec embeddings beat the baselines?

Parts (``--part``, default all):

* ``sample``: train a small TileNet with :func:`geoembed.train` on sample_data/scene.tif
  (on-the-fly triplets), then :func:`geoembed.evaluate` on sample_data/points.gpkg: every
  feature set x logistic regression and random forest, spatial CV and random CV (to show the
  leak), with per-class F1 on the texture-only classes (cropland/grassland,
  orchard/shrubland: same per-pixel spectra, different texture) and a learning curve.
  Targets: ``embedding`` beats ``random-encoder`` and ``tile-stats`` on macro-F1 over the
  texture-only classes under spatial CV; ``embedding+bands`` >= ``bands`` (macro-F1, spatial).
* ``naip``: the real NAIP arrays in ../shared/real/naip (channels 0-3 image, channel 4 CDL
  code), skipped when absent: a small TileNet trained on all scenes (no labels used), the
  majority CDL class of each non-overlapping 50 x 50 tile, leave-one-scene-out CV;
  ``embedding`` vs ``tile-stats`` vs ``random-encoder`` (and random CV for contrast).

CPU-sized (the defaults train in a few minutes on 2 shared cores):

    .venv/bin/python bench/bench_evaluate.py > bench/results/evaluate.md

Trained checkpoints are cached in /tmp/geoembed_bench_evaluate/ (``--work``; ``--retrain`` to
redo them).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
from naip import write_naip_scenes

ROOT = Path(__file__).resolve().parents[1]
# not bench/_work: bench/bench_tile.py deletes that directory when it finishes
WORK = Path("/tmp/geoembed_bench_evaluate")
SAMPLE = ROOT / "sample_data"
NAIP = ROOT.parent / "shared" / "real" / "naip"
TEXTURE = ("cropland", "grassland", "orchard", "shrubland")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_cached(name: str, scenes: list[Path], args, *, tile: int, neighborhood: int,
                 n_triplets: int, epochs: int) -> tuple[Path, float, dict]:
    """Train (or reuse) a TileNet run in bench/_work/evaluate/<name>."""
    from geoembed import train
    from geoembed.io.checkpoint import load_checkpoint

    out = WORK / name
    ckpt = out / "checkpoint.pt"
    opts = {"scenes": [str(s) for s in scenes], "tile_size": tile, "neighborhood": neighborhood,
            "n_triplets": n_triplets, "epochs": epochs, "z_dim": args.z_dim,
            "base_width": args.base_width, "batch_size": args.batch_size, "seed": 0}
    meta = out / "bench_options.json"
    if ckpt.exists() and meta.exists() and not args.retrain \
            and json.loads(meta.read_text()).get("opts") == opts:
        m = json.loads(meta.read_text())
        log(f"{name}: reusing {ckpt} (trained in {m['seconds']:.0f} s)")
        return ckpt, m["seconds"], load_checkpoint(ckpt)["history"][-1]
    log(f"{name}: training {epochs} epochs x {n_triplets} triplets, tile {tile}")
    t0 = time.perf_counter()
    res = train(scenes=[str(s) for s in scenes], out=out, n_triplets=n_triplets,
                tile_size=tile, neighborhood=neighborhood, z_dim=args.z_dim,
                base_width=args.base_width, epochs=epochs, batch_size=args.batch_size,
                seed=0, device="cpu", overwrite=True, quiet=True)
    seconds = time.perf_counter() - t0
    meta.write_text(json.dumps({"opts": opts, "seconds": seconds}))
    return res.checkpoint, seconds, res.history[-1]


def texture_f1(row: dict) -> float:
    return float(np.mean([row["per_class"][c]["f1"] for c in TEXTURE]))


# ------------------------------------------------------------------------------ sample data

def sample_part(args) -> list[str]:
    from geoembed import evaluate

    scene = SAMPLE / "scene.tif"
    ckpt, train_s, last = train_cached(
        "sample", [scene], args, tile=args.tile, neighborhood=args.neighborhood,
        n_triplets=args.n_triplets, epochs=args.epochs)
    runs = {}
    for clf, sizes in (("logreg", "10,20,50,100,200,all"), ("rf", "none")):
        log(f"sample: evaluate {clf}")
        t0 = time.perf_counter()
        res = evaluate(scene, WORK / f"eval_sample_{clf}", labels=SAMPLE / "points.gpkg",
                       label_column="class", checkpoint=ckpt, cv="both", classifier=clf,
                       learning_curve_sizes=sizes, repeats=args.repeats, seed=0,
                       device="cpu", overwrite=True, quiet=True)
        runs[clf] = (res, time.perf_counter() - t0)
    rep = runs["logreg"][0].report
    rows = [r for clf in ("logreg", "rf") for r in runs[clf][0].rows]
    order = {n: i for i, n in enumerate(rep["feature_sets"])}
    rows.sort(key=lambda r: (r["cv"] != "spatial", r["classifier"], order[r["features"]]))

    out = [
        "### sample_data (synthetic, 7 classes, 2 texture-only pairs)",
        "",
        f"Encoder: TileNet base width {args.base_width}, z_dim {args.z_dim}, tile {args.tile} "
        f"px, neighborhood {args.neighborhood} px, {args.n_triplets} on-the-fly triplets x "
        f"{args.epochs} epochs, batch {args.batch_size}, triplet loss (margin and l2 "
        f"defaults), trained on scene.tif in {train_s:.0f} s (last epoch loss "
        f"{last.get('loss', float('nan')):.3f}). Labels: points.gpkg, {rep['n_labels']} "
        f"points (EPSG:4326), {rep['n_dropped']} dropped. Spatial CV: "
        f"{rep['folds']['spatial']} folds of {rep['block_size']} px blocks (4 tiles); random "
        f"CV: {rep['folds']['random']} stratified folds. PCA: "
        f"{rep['feature_sets']['pca']} components of flattened tiles, fitted on 1000 "
        "unlabelled random tiles. random-encoder: same TileNet, seed 0 weights, BatchNorm "
        "statistics from 512 unlabelled tiles. Evaluation time (features + CV + learning "
        f"curve, {args.repeats} repeats): logreg {runs['logreg'][1]:.0f} s, rf (no learning "
        f"curve) {runs['rf'][1]:.0f} s.",
        "",
        "texture macro-F1 = mean F1 of cropland, grassland, orchard, shrubland (within the "
        "7-class problem).",
        "",
        "| features | classifier | cv | dims | accuracy | macro-F1 | texture macro-F1 | "
        "F1 cropland | F1 grassland | F1 orchard | F1 shrubland |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        pc = r["per_class"]
        out.append(f"| {r['features']} | {r['classifier']} | {r['cv']} | {r['n_features']} | "
                   f"{r['accuracy']:.3f} | {r['macro_f1']:.3f} | {texture_f1(r):.3f} | "
                   + " | ".join(f"{pc[c]['f1']:.3f}" for c in TEXTURE) + " |")

    # targets
    out += ["", "Targets (spatial CV):", ""]
    for clf in ("logreg", "rf"):
        sp = {r["features"]: r for r in rows if r["cv"] == "spatial" and r["classifier"] == clf}
        e = texture_f1(sp["embedding"])
        for other in ("random-encoder", "tile-stats"):
            o = texture_f1(sp[other])
            out.append(f"- {clf}: embedding texture macro-F1 {e:.3f} vs {other} {o:.3f}: "
                       f"{'MET' if e > o else 'MISSED'}")
        eb, b = sp["embedding+bands"]["macro_f1"], sp["bands"]["macro_f1"]
        out.append(f"- {clf}: embedding+bands macro-F1 {eb:.3f} vs bands {b:.3f}: "
                   f"{'MET' if eb >= b else 'MISSED'}")
    leak = [(r["features"], r["classifier"], r["macro_f1"]) for r in rows if r["cv"] == "random"]
    sp_f1 = {(r["features"], r["classifier"]): r["macro_f1"] for r in rows
             if r["cv"] == "spatial"}
    gaps = [f"{f}/{c} {m - sp_f1[(f, c)]:+.3f}" for f, c, m in leak]
    out += ["", "Random minus spatial CV macro-F1 (the leak): " + ", ".join(gaps) + "."]

    # learning curve (logreg, spatial)
    lc_rows = [r for r in runs["logreg"][0].rows if r["cv"] == "spatial"]
    sizes = [p["n_train"] for p in lc_rows[0]["learning_curve"]]
    out += ["", "Learning curve, logreg, spatial CV: macro-F1 mean +- std over "
            f"{args.repeats} random training subsets (last column: all training labels of "
            "each fold, mean count shown)", "",
            "| features | " + " | ".join(str(n) for n in sizes) + " |",
            "|---|" + "---:|" * len(sizes)]
    for r in lc_rows:
        out.append(f"| {r['features']} | " + " | ".join(
            f"{p['macro_f1_mean']:.3f} +- {p['macro_f1_std']:.3f}" for p in r["learning_curve"])
            + " |")
    return out


# ------------------------------------------------------------------------------ NAIP

def naip_scenes() -> list[Path] | None:
    """The NAIP arrays as 4-band GeoTIFFs (None when ../shared/real/naip is absent)."""
    return write_naip_scenes(NAIP, WORK / "naip_scenes")


def naip_part(args) -> list[str]:
    from sklearn.metrics import f1_score

    from geoembed.evaluation.classifiers import cross_val_predict
    from geoembed.evaluation.encoders import encode_batch, random_encoder
    from geoembed.evaluation.features import tile_statistics
    from geoembed.evaluation.folds import make_folds
    from geoembed.inference.embedding import load_embedding_model
    from geoembed.io.scenes import normalize
    from geoembed.metrics import scores

    scenes = naip_scenes()
    if scenes is None:
        return ["### NAIP: skipped (../shared/real/naip not found)"]
    files = sorted(NAIP.glob("naip*.npy"))
    tile = 50
    ckpt, train_s, last = train_cached(
        "naip", scenes, args, tile=tile, neighborhood=args.naip_neighborhood,
        n_triplets=args.naip_triplets, epochs=args.naip_epochs)
    em = load_embedding_model(ckpt)
    tiles, labels, scene_of = [], [], []
    for k, f in enumerate(files):
        arr = np.load(f)
        img = arr[:, :, :4].transpose(2, 0, 1)
        cdl = arr[:, :, 4]
        for i in range(0, arr.shape[0] - tile + 1, tile):
            for j in range(0, arr.shape[1] - tile + 1, tile):
                v, n = np.unique(cdl[i:i + tile, j:j + tile], return_counts=True)
                tiles.append(img[:, i:i + tile, j:j + tile])
                labels.append(int(v[n.argmax()]))
                scene_of.append(k)
    raw = np.stack(tiles)
    norm = normalize(raw, em.band_stats)
    valid = np.ones((len(raw), tile, tile), bool)
    classes, y = np.unique(labels, return_inverse=True)
    scene_of = np.asarray(scene_of)
    rng = np.random.default_rng(0)
    calib = norm[rng.permutation(len(norm))[:200]]
    import torch

    cfg = dict(torch.load(ckpt, weights_only=True)["encoder"])
    rand = random_encoder(cfg, 0, calib)
    feats = {
        "embedding": np.concatenate([encode_batch(em.model, norm[s:s + 64], "cpu")
                                     for s in range(0, len(norm), 64)]),
        "tile-stats": tile_statistics(norm.astype(np.float64), valid),
        "random-encoder": np.concatenate([
            encode_batch(rand, norm[s:s + 64], "cpu")
            for s in range(0, len(norm), 64)]),
    }
    random_fold, _, _ = make_folds(y, "random", 5, seed=0)
    counts = {int(c): int((y == i).sum()) for i, c in enumerate(classes)}
    majority = np.full_like(y, np.bincount(y).argmax())
    maj_f1 = f1_score(y, majority, average="macro", labels=range(len(classes)), zero_division=0)
    out = [
        "### NAIP (real): majority CDL class of 50 x 50 tiles, leave-one-scene-out CV",
        "",
        f"{len(files)} scenes of 256 x 256 px (4 bands), non-overlapping 50 x 50 tiles (5 x 5 "
        f"per scene): {len(y)} tiles; classes (CDL code: tiles) "
        + ", ".join(f"{c}: {n}" for c, n in counts.items())
        + f". Encoder: TileNet base width {args.base_width}, z_dim {args.z_dim}, tile {tile}, "
        f"neighborhood {args.naip_neighborhood} px, {args.naip_triplets} triplets x "
        f"{args.naip_epochs} epochs on all {len(files)} scenes (no labels), trained in "
        f"{train_s:.0f} s (last epoch loss {last.get('loss', float('nan')):.3f}). Folds: one "
        "scene held out at a time (8 folds); random: 5 stratified folds (tiles of a scene on "
        f"both sides). Majority-class baseline: accuracy {np.mean(y == majority):.3f}, "
        f"macro-F1 {maj_f1:.3f}.",
        "",
        "| features | classifier | cv | dims | accuracy | macro-F1 | "
        + " | ".join(f"F1 {c}" for c in classes) + " |",
        "|---|---|---|---:|---:|---:|" + "---:|" * len(classes),
    ]
    for cv_name, fold in (("leave-one-scene-out", scene_of), ("random", random_fold)):
        for clf in ("logreg", "rf"):
            for name, x in feats.items():
                pred = cross_val_predict(x, y, fold, clf, seed=0)
                s = scores(y, pred, [str(c) for c in classes])
                out.append(f"| {name} | {clf} | {cv_name} | {x.shape[1]} | {s['accuracy']:.3f} "
                           f"| {s['macro_f1']:.3f} | "
                           + " | ".join(f"{s['per_class'][str(c)]['f1']:.3f}" for c in classes)
                           + " |")
    return out


def main() -> None:
    global WORK
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["all", "sample", "naip"], default="all")
    p.add_argument("--tile", type=int, default=32)
    p.add_argument("--neighborhood", type=int, default=32)
    p.add_argument("--n-triplets", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--naip-triplets", type=int, default=1000)
    p.add_argument("--naip-epochs", type=int, default=4)
    p.add_argument("--naip-neighborhood", type=int, default=50)
    p.add_argument("--z-dim", type=int, default=64)
    p.add_argument("--base-width", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--retrain", action="store_true", help="ignore cached checkpoints")
    p.add_argument("--work", type=Path, default=WORK, help="cache / scratch directory")
    args = p.parse_args()
    WORK = args.work
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    out = ["## Evaluation: embeddings vs baselines (bench/bench_evaluate.py)", "",
           f"Machine: Linux, {platform.machine()}, 2 cores (shared), 24 GiB, no GPU, torch "
           f"{torch.__version__.split('+')[0]} CPU ({torch.get_num_threads()} threads).", ""]
    if args.part in ("all", "sample"):
        out += sample_part(args) + [""]
    if args.part in ("all", "naip"):
        out += naip_part(args) + [""]
    out.append(f"Total {time.perf_counter() - t0:.0f} s (including training), peak RSS "
               f"{peak_rss_mib():.0f} MiB.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
