"""Real-data benchmark of embedding quality (issue 14 part 1).

Does a Tile2Vec encoder trained by geoembed beat every no-learning baseline on real imagery?

Datasets (each skipped cleanly when absent from ../shared/real/, see its README.md):

* ``naip``: 8 arrays of 256 x 256 px (R, G, B, NIR at ~0.6 m) with a CDL class channel,
  written as 4-band GeoTIFFs by ``bench/naip.py``. Labels, as in bench/bench_evaluate.py (the
  NAIP figures of bench/RESULTS.md), for comparability: the majority CDL class of each
  non-overlapping 50 x 50 tile (25 per scene; the label pixel is the tile's centre);
  ``--naip-labels pixels`` instead samples ``--naip-pixels`` random pixels per scene.
  Folds: leave one scene out (8 folds).
* ``beaufort_s2``: a Sentinel-2 scene (8 bands, EPSG:4326) and 23 labelled polygons in
  EPSG:32618. Labels: the scene pixels whose centres fall in a polygon (polygons reprojected
  to the scene's CRS and rasterised), at most ``--polygon-pixels`` per polygon (random,
  fixed seed; 0 = all). Folds: 5, grouped by polygon (a polygon is never split;
  ``StratifiedGroupKFold`` through geoembed.evaluation.folds).

A class found in fewer than 2 groups (scenes / polygons) cannot be learned under grouped CV
(it is never in the training part when it is tested): it is left out, and said so.

Per dataset, one TileNet is trained on the dataset's scenes (no labels) through
:func:`geoembed.train` with fresh on-the-fly triplets every epoch, epoch after epoch (exact
resume) until the next epoch would pass the CPU-time budget ``--train-minutes`` (process CPU
time, so the amount of compute does not depend on how busy the shared machine is) or the
epoch cap. Runs are cached by a hash of their configuration in bench/_work/real/.

Feature sets, on the same labels and the same folds (geoembed.evaluation.features:
``label_features`` with one ``TileFeatureSpec`` per dataset, built like evaluate's
``_tile_spec`` but with the unlabelled tiles pooled over all scenes of the dataset so that
PCA, the random filters and the random encoder's BatchNorm share one space across scenes):
bands, tile-stats, pca, random-features (MOSAIKS), random-encoder (same architecture,
untrained, BatchNorm calibrated on 512 unlabelled tiles), embedding (the trained encoder)
and embedding+bands. The baselines use the default encoder's tile size.

Classifiers: logistic regression and random forest (geoembed.evaluation.classifiers);
learning curves with 10, 20, 50, 100 training labels drawn in each training fold (the same
draws for every feature set, ``--repeats`` of them) and all labels. Metrics: macro-F1
(over the classes present in each test fold) and accuracy per fold, mean +- std across folds;
for all labels also the pooled out-of-fold macro-F1 (what bench_evaluate reported).

    .venv/bin/python bench/bench_real.py --out bench/results/real.md     # ~15-20 min
    .venv/bin/python bench/bench_real.py --quick                         # ~5 min
    .venv/bin/python bench/bench_real.py --ablation z16 --ablation no-augment
    .venv/bin/python bench/bench_real.py --ablation all --dataset beaufort_s2

``--ablation NAME`` (repeatable, or ``all``) trains one more encoder per dataset with one
change from the dataset's default (see ABLATIONS) and adds a row to an ablation table;
``--train-seeds 0,1,2`` trains each of them (and the default) once per seed and shows the
mean ± std over seeds (one seed decided +0.05 or -0.14 in earlier runs); ``--jobs 2`` trains
two at a time; ``--main NAME`` makes an ablation the encoder of the full tables (so that
the random encoder shares its pooling); ``--checkpoint NAME=PATH`` adds a row for an
encoder trained elsewhere (e.g. ``geoembed train`` timed as a user runs it).

    .venv/bin/python bench/bench_real.py --dataset beaufort_s2 --train-minutes 3 \
        --train-seeds 0,1,2 --ablation center --ablation stages --jobs 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from naip import write_naip_scenes

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real"
WORK = ROOT / "bench" / "_work" / "real"  # ignored by git (bench/_work/)
DATASETS = ("naip", "beaufort_s2")
FEATURES = ("bands", "tile-stats", "pca", "random-features", "random-encoder", "embedding",
            "embedding+bands")
BASELINES = ("bands", "tile-stats", "pca", "random-features", "random-encoder")
LEARNED = ("embedding", "embedding+bands")
SIZES: tuple[int | str, ...] = (10, 20, 50, 100, "all")
CLASSIFIERS = ("logreg", "rf")
TARGET = 0.03

#: Each dataset's default training configuration (CPU-sized); command-line options override.
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    # bench_evaluate's NAIP encoder (bench/RESULTS.md), trained here to the time budget
    "naip": {"tile_size": 50, "neighborhood": 50, "z_dim": 64, "base_width": 8,
             "n_triplets": 1000, "epochs": 40, "batch_size": 50, "augment": True,
             "loss": "triplet", "lr": 1e-3},
    # what ../shared/real/README.md tried "as a new user would" (24 px is ~190 m here)
    "beaufort_s2": {"tile_size": 24, "neighborhood": 48, "z_dim": 64, "base_width": 16,
                    "n_triplets": 1000, "epochs": 40, "batch_size": 50, "augment": True,
                    "loss": "triplet", "lr": 1e-3},
}
TRAIN_KEYS = tuple(TRAIN_DEFAULTS["naip"])

Override = dict[str, Any | Callable[[dict[str, Any]], Any]]
#: Named one-change ablations of a dataset's default config: a value, or a function of the
#: default config. ``budget`` multiplies the CPU-time budget; ``eval`` changes no training:
#: ``"bn-recal"`` re-estimates the default encoder's BatchNorm statistics on unlabelled
#: tiles of the dataset's scenes before its features are computed, ``"center"`` takes its
#: stages' centre cells as the features.
ABLATIONS: dict[str, Override] = {
    "stages": {"pooling": "stages"},  # every stage's average, concatenated
    "percentile": {"normalization": "percentile"},  # 2-98 % -> [-1, 1], clipped
    "jitter": {"jitter": 0.2},  # radiometric jitter per tile
    "bn-recal": {"eval": "bn-recal"},
    "center-eval": {"eval": "center"},  # the default encoder, each stage's centre cell
    "center": {"pooling": "center"},  # trained with it
    "center-tile16": {"pooling": "center", "tile_size": 16},
    "center-percentile": {"pooling": "center", "normalization": "percentile"},
    "center-jitter": {"pooling": "center", "jitter": 0.2},
    "distant-same": {"distant_other_scene": 0.0},  # several scenes only: never another one
    "budget4x": {"budget": 4.0},
    "stages-jitter": {"pooling": "stages", "jitter": 0.2},
    "tile16": {"tile_size": 16},
    "tile32": {"tile_size": 32},
    "tile50": {"tile_size": 50},
    "nbhd-small": {"neighborhood": lambda c: max(1, c["tile_size"] // 2)},
    "nbhd-large": {"neighborhood": lambda c: 4 * c["tile_size"]},
    "z16": {"z_dim": 16},
    "z256": {"z_dim": 256},
    "width8": {"base_width": 8},
    "width32": {"base_width": 32},
    "no-augment": {"augment": False},
    "infonce": {"loss": "infonce"},
    "batch100": {"batch_size": 100},
    "lr3e-4": {"lr": 3e-4},
    "budget2x": {"budget": 2.0},  # more triplets seen: twice the CPU time
    "tile16-infonce": {"tile_size": 16, "loss": "infonce"},  # the two changes that helped
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Timer:
    """CPU (process) and wall seconds of a ``with`` block."""

    def __enter__(self) -> Timer:
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0


# ----------------------------------------------------------------------------- datasets

@dataclass
class Dataset:
    """Labelled pixels of a dataset's scenes, their classes and CV folds."""

    name: str
    scenes: list[Path]
    scene: np.ndarray  # scene index of each label
    rows: np.ndarray
    cols: np.ndarray
    y: np.ndarray  # class codes 0..K-1
    classes: list[str]
    fold: np.ndarray
    description: str
    notes: list[str] = field(default_factory=list)


def learnable(y: np.ndarray, groups: np.ndarray, names: list[str], what: str,
              notes: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Keep the classes found in >= 2 groups: ``(keep mask, new codes, kept names)``."""
    n_groups = np.array([len(np.unique(groups[y == k])) for k in range(len(names))])
    lone = np.flatnonzero(n_groups < 2)
    if len(lone):
        notes.append(f"left out (found in a single {what}, so never in a training fold when "
                     f"tested): {', '.join(names[k] for k in lone)} "
                     f"({int(np.isin(y, lone).sum())} labels)")
    kept = np.flatnonzero(n_groups >= 2)
    keep = np.isin(y, kept)
    remap = np.full(len(names), -1)
    remap[kept] = np.arange(len(kept))
    return keep, remap[y[keep]], [names[k] for k in kept]


def load_naip(args: argparse.Namespace) -> Dataset | None:
    """NAIP: labels from the CDL channel, leave-one-scene-out folds."""
    src = REAL / "naip"
    scenes = write_naip_scenes(src, WORK / "naip_scenes")
    if scenes is None:
        return None
    tile = 50
    rng = np.random.default_rng(args.seed)
    scene, rows, cols, codes = [], [], [], []
    for k, f in enumerate(sorted(src.glob("naip*.npy"))):
        cdl = np.load(f)[:, :, 4]
        if args.naip_labels == "tiles":
            for i in range(0, cdl.shape[0] - tile + 1, tile):
                for j in range(0, cdl.shape[1] - tile + 1, tile):
                    v, n = np.unique(cdl[i:i + tile, j:j + tile], return_counts=True)
                    scene.append(k)
                    rows.append(i + tile // 2)
                    cols.append(j + tile // 2)
                    codes.append(int(v[n.argmax()]))
        else:
            flat = rng.choice(cdl.size, size=args.naip_pixels, replace=False)
            r, c = np.unravel_index(flat, cdl.shape)
            scene += [k] * len(r)
            rows += r.tolist()
            cols += c.tolist()
            codes += cdl[r, c].astype(int).tolist()
    values, y = np.unique(codes, return_inverse=True)
    scene_a = np.asarray(scene)
    notes: list[str] = []
    keep, y, names = learnable(y, scene_a, [str(v) for v in values], "scene", notes)
    how = ("the majority CDL class of each non-overlapping 50 x 50 tile (label pixel = tile "
           "centre), as bench/bench_evaluate.py did" if args.naip_labels == "tiles" else
           f"{args.naip_pixels} random pixels per scene (seed {args.seed}), their CDL class")
    counts = ", ".join(f"{n}: {int((y == i).sum())}" for i, n in enumerate(names))
    return Dataset(
        name="naip", scenes=scenes, scene=scene_a[keep], rows=np.asarray(rows)[keep],
        cols=np.asarray(cols)[keep], y=y, classes=names, fold=scene_a[keep],
        description=(f"{len(scenes)} scenes of 256 x 256 px (R, G, B, NIR, ~0.6 m). Labels: "
                     f"{how}: {int(keep.sum())} labels, CDL classes (code: labels) {counts}. "
                     f"Folds: leave one scene out ({len(np.unique(scene_a[keep]))} folds)."),
        notes=notes)


def load_beaufort(args: argparse.Namespace) -> Dataset | None:
    """Beaufort: pixels whose centres fall in the polygons, folds grouped by polygon."""
    from rasterio.features import rasterize

    from geoembed.evaluation.folds import make_folds
    from geoembed.io.labels import read_vector, require_column, to_crs
    from geoembed.io.scenes import open_scene

    src = REAL / "beaufort_s2"
    path, vec = src / "scene.tif", src / "landcover.gpkg"
    if not path.exists() or not vec.exists():
        return None
    scn = open_scene(path)
    gdf = read_vector(vec)
    require_column(gdf, "Classname", str(vec))
    label_crs = gdf.crs.to_string() if gdf.crs is not None else "no CRS"
    gdf = to_crs(gdf, scn.crs, str(vec)).reset_index(drop=True)
    ids = rasterize([(g, i + 1) for i, g in enumerate(gdf.geometry)],
                    out_shape=(scn.height, scn.width), transform=scn.transform,
                    all_touched=False, dtype="int32")  # pixel centres inside the polygon
    rng = np.random.default_rng(args.seed)
    rows, cols, poly = [], [], []
    for i in range(len(gdf)):
        r, c = np.nonzero(ids == i + 1)
        if args.polygon_pixels and len(r) > args.polygon_pixels:
            pick = np.sort(rng.choice(len(r), size=args.polygon_pixels, replace=False))
            r, c = r[pick], c[pick]
        rows += r.tolist()
        cols += c.tolist()
        poly += [i] * len(r)
    poly_a = np.asarray(poly)
    values, y = np.unique(gdf["Classname"].to_numpy()[poly_a], return_inverse=True)
    notes: list[str] = []
    keep, y, names = learnable(y, poly_a, [str(v) for v in values], "polygon", notes)
    groups = poly_a[keep]
    fold, n_folds, fold_notes = make_folds(y, "spatial", args.folds, seed=args.seed,
                                           groups=groups)
    notes += fold_notes
    counts = ", ".join(f"{n}: {int((y == i).sum())} px / {len(np.unique(groups[y == i]))} "
                       "polygons" for i, n in enumerate(names))
    cap = f"at most {args.polygon_pixels} per polygon" if args.polygon_pixels else "all"
    return Dataset(
        name="beaufort_s2", scenes=[path], scene=np.zeros(int(keep.sum()), np.int64),
        rows=np.asarray(rows)[keep], cols=np.asarray(cols)[keep], y=y, classes=names,
        fold=fold, description=(
            f"Sentinel-2, {scn.count} bands, {scn.width} x {scn.height} px ({scn.crs}). "
            f"Labels: scene pixels whose centres fall in the {len(gdf)} polygons (reprojected "
            f"from {label_crs}), {cap}: {int(keep.sum())} labels; "
            f"{counts}. Folds: {n_folds}, grouped by polygon (StratifiedGroupKFold)."),
        notes=notes)


# ----------------------------------------------------------------------------- training

def train_config(dataset: str, args: argparse.Namespace, override: Override | None = None
                 ) -> tuple[dict[str, Any], float, str | None]:
    """The training config of ``dataset`` (defaults < options < ablation), its budget (s)
    and the ablation's evaluation mode (``eval``: None or ``"bn-recal"``)."""
    cfg = dict(TRAIN_DEFAULTS[dataset])
    cfg.update({k: getattr(args, k) for k in TRAIN_KEYS if getattr(args, k) is not None})
    budget, mode = args.train_minutes * 60.0, None
    for key, value in (override or {}).items():
        value = value(cfg) if callable(value) else value
        if key == "budget":
            budget *= float(value)
        elif key == "eval":
            mode = str(value)
        else:
            cfg[key] = value
    return cfg, budget, mode


@dataclass
class TrainedRun:
    checkpoint: Path
    epochs: int
    cpu_s: float
    wall_s: float
    last: dict[str, float]
    cached: bool


def train_budgeted(ds: Dataset, cfg: dict[str, Any], budget_s: float, args: argparse.Namespace,
                   seed: int) -> TrainedRun:
    """Train (or reuse) ``cfg`` with training seed ``seed`` on the dataset's scenes, epoch by
    epoch within ``budget_s`` of process CPU time (``--budget-clock wall``: wall time),
    stopping when the next epoch would not fit (at least one epoch; at most
    ``cfg["epochs"]``)."""
    from geoembed import train

    key = {"dataset": ds.name, "scenes": [str(s) for s in ds.scenes], **cfg,
           "budget_s": budget_s, "clock": args.budget_clock, "threads": args.threads,
           "seed": seed}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    out = WORK / ds.name / f"run-{digest}"
    meta = out / "bench_meta.json"
    if meta.exists() and not args.retrain:
        m = json.loads(meta.read_text())
        log(f"{ds.name}: reusing {out.name} ({m['epochs']} epochs, {m['cpu_s']:.0f} CPU s)")
        return TrainedRun(out / "checkpoint.pt", m["epochs"], m["cpu_s"], m["wall_s"],
                          m["last"], cached=True)
    opts = {k: v for k, v in cfg.items() if k != "epochs"}
    log(f"{ds.name}: training {opts}, seed {seed}, for up to {cfg['epochs']} epochs / "
        f"{budget_s:.0f} {args.budget_clock} s")
    epochs, history = 0, []
    with Timer() as t:
        while epochs < cfg["epochs"]:
            res = train(scenes=[str(s) for s in ds.scenes], out=out, epochs=epochs + 1,
                        resume=epochs > 0, overwrite=epochs == 0, seed=seed,
                        device="cpu", quiet=True, **opts)
            epochs, history = epochs + 1, res.history
            used = (time.process_time() - t.cpu0 if args.budget_clock == "cpu"
                    else time.perf_counter() - t.wall0)
            if used * (epochs + 1) / epochs > budget_s:  # the next epoch would not fit
                break
    last = {k: float(v) for k, v in history[-1].items() if isinstance(v, int | float)}
    meta.write_text(json.dumps({"key": key, "epochs": epochs, "cpu_s": t.cpu,
                                "wall_s": t.wall, "last": last}, indent=1))
    log(f"{ds.name}: {epochs} epochs in {t.cpu:.0f} CPU s / {t.wall:.0f} s wall")
    return TrainedRun(out / "checkpoint.pt", epochs, t.cpu, t.wall, last, cached=False)


# ----------------------------------------------------------------------------- features

def tile_spec(scenes: list[Any], em: Any, need: set[str], args: argparse.Namespace) -> Any:
    """evaluate's ``_tile_spec`` for several scenes: the checkpoint's band statistics and
    tile; PCA, random filters and the random encoder's BatchNorm fitted on unlabelled random
    tiles pooled over the scenes (so that every scene's features share one space)."""
    from geoembed.evaluation.encoders import random_encoder
    from geoembed.evaluation.evaluate import PCA_MAX_COMPONENTS
    from geoembed.evaluation.features import (
        TileFeatureSpec,
        fit_tile_pca,
        random_tile_sample,
    )
    from geoembed.evaluation.inputs import load_encoder_config
    from geoembed.evaluation.random_features import fit_on_tile_sample

    t, c = em.tile, em.in_channels
    spec = TileFeatureSpec(tile=t, stats=em.band_stats, batch_size=64)
    if "embedding" in need:
        spec.encoder = em.model
    if not need & {"pca", "random-encoder", "random-features"}:
        return spec
    per = -(-args.pca_tiles // len(scenes))
    sample = np.concatenate([random_tile_sample(s, t, per, em.band_stats, seed=args.seed + k)
                             for k, s in enumerate(scenes)])
    sample = sample[np.random.default_rng(args.seed).permutation(len(sample))][:args.pca_tiles]
    if "random-encoder" in need:
        spec.random_encoder = random_encoder(load_encoder_config(em.checkpoint), args.seed,
                                             sample.reshape(-1, c, t, t)[:512])
    if "random-features" in need:
        spec.random_features = fit_on_tile_sample(sample, c, t, seed=args.seed,
                                                  n_features=args.n_random_features)
    if "pca" in need:
        spec.pca = fit_tile_pca(sample, n_components=min(em.z_dim, PCA_MAX_COMPONENTS),
                                seed=args.seed)
    return spec


def compute_features(ds: Dataset, checkpoint: Path, names: tuple[str, ...],
                     args: argparse.Namespace, mode: str | None = None
                     ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """``{feature set: (n, d)}`` for the dataset's labels (scene by scene, in label order)
    and the CPU seconds of each (fitting PCA / filters / calibration included). ``mode``
    ``"bn-recal"``: the encoder's BatchNorm statistics re-estimated first on 512 unlabelled
    tiles pooled over the scenes; ``"center"``: the encoder's stages taken at their centre
    cells (``pooling="center"``) instead of its own pooling."""
    from geoembed.evaluation.encoders import calibrate_batchnorm
    from geoembed.evaluation.features import label_features, random_tile_sample
    from geoembed.inference.embedding import load_embedding_model, open_scene_for

    em = load_embedding_model(checkpoint)
    scenes = [open_scene_for(em, p) for p in ds.scenes]
    if mode == "bn-recal":
        per = -(-512 // len(scenes))
        sample = np.concatenate([random_tile_sample(s, em.tile, per, em.band_stats,
                                                    seed=args.seed + 100 + k)
                                 for k, s in enumerate(scenes)])
        calibrate_batchnorm(em.model, sample.reshape(-1, em.in_channels, em.tile, em.tile))
    elif mode == "center":  # pooling has no weights: the same encoder, other features
        em.model.pooling = "center"
    feats: dict[str, np.ndarray] = {}
    cpu: dict[str, float] = {}
    for name in [n for n in names if n != "embedding+bands"]:
        with Timer() as t:
            spec = tile_spec(scenes, em, {name}, args)
            parts = {k: label_features(s, ds.rows[ds.scene == k], ds.cols[ds.scene == k],
                                       [name], spec)[name] for k, s in enumerate(scenes)}
            x = np.zeros((len(ds.y), next(iter(parts.values())).shape[1]))
            for k, v in parts.items():
                x[ds.scene == k] = v
        feats[name], cpu[name] = x, t.cpu
    if "embedding+bands" in names:
        feats["embedding+bands"] = np.concatenate([feats["embedding"], feats["bands"]], axis=1)
        cpu["embedding+bands"] = 0.0
    return feats, cpu


# ----------------------------------------------------------------------------- classifiers

def curve(x: np.ndarray, ds: Dataset, clf: str, sizes: tuple[int | str, ...],
          args: argparse.Namespace) -> dict[int | str, dict[str, float]]:
    """Per size: macro-F1 / accuracy per fold (mean over repeats), their mean and std across
    folds, and the pooled out-of-fold scores. Subsets are the same for every feature set."""
    from geoembed.evaluation.classifiers import (
        _subset_splits,  # the learning curve's per-fold subsets, reused
        cross_val_predict,
        predict_out_of_fold,
    )
    from geoembed.evaluation.ranking import fold_scores
    from geoembed.metrics import scores

    y, fold, k = ds.y, ds.fold, len(ds.classes)
    smallest = min(int((fold != f).sum()) for f in np.unique(fold))
    out: dict[int | str, dict[str, float]] = {}
    for n in sizes:
        if n != "all" and int(n) >= smallest:
            continue
        preds = ([cross_val_predict(x, y, fold, clf, args.seed)] if n == "all" else
                 [predict_out_of_fold(x, y, _subset_splits(
                     y, fold, int(n), np.random.default_rng([args.seed, int(n), rep])),
                     clf, args.seed + rep) for rep in range(args.repeats)])
        per = [fold_scores(y, p, fold, k) for p in preds]
        f1 = np.nanmean([p["macro_f1"] for p in per], axis=0)  # per fold
        acc = np.mean([p["accuracy"] for p in per], axis=0)
        pooled = [scores(y, p, ds.classes) for p in preds]
        out[n] = {"f1": float(np.mean(f1)), "f1_std": float(np.std(f1, ddof=1)),
                  "acc": float(np.mean(acc)), "acc_std": float(np.std(acc, ddof=1)),
                  "pooled_f1": float(np.mean([s["macro_f1"] for s in pooled])),
                  "pooled_acc": float(np.mean([s["accuracy"] for s in pooled]))}
    return out


def run_classifiers(feats: dict[str, np.ndarray], ds: Dataset, sizes: tuple[int | str, ...],
                    args: argparse.Namespace) -> tuple[dict, dict[str, float]]:
    """``{clf: {feature set: curve}}`` and the CPU seconds per classifier."""
    from threadpoolctl import threadpool_limits

    res: dict[str, dict[str, dict]] = {}
    cpu: dict[str, float] = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for clf in CLASSIFIERS:
            with Timer() as t:
                res[clf] = {name: curve(x, ds, clf, sizes, args) for name, x in feats.items()}
            cpu[clf] = t.cpu
            log(f"{ds.name}: {clf} on {len(feats)} feature sets in {t.cpu:.0f} CPU s")
    return res, cpu


# ----------------------------------------------------------------------------- report

def fmt(p: dict[str, float] | None) -> str:
    return "-" if p is None else f"{p['f1']:.3f} ± {p['f1_std']:.3f}"


def best_of(curves: dict[str, dict], names: tuple[str, ...], n: int | str
            ) -> tuple[str, float] | None:
    got = [(curves[f][n]["f1"], f) for f in names if f in curves and n in curves[f]]
    return None if not got else (max(got)[1], max(got)[0])


def verdict(curves: dict[str, dict], sizes: tuple[int | str, ...]) -> str:
    """The issue's target line: best embedding minus best no-learning baseline."""
    parts, met = [], True
    for n in [s for s in sizes if s in (50, 100, "all")]:
        e, b = best_of(curves, LEARNED, n), best_of(curves, BASELINES, n)
        if e is None or b is None:
            continue
        d = e[1] - b[1]
        met &= d >= TARGET
        parts.append(f"{n} labels {d:+.3f} ({e[0]} {e[1]:.3f} vs {b[0]} {b[1]:.3f})")
        if n == "all":
            pooled = [max(curves[f]["all"]["pooled_f1"] for f in group if f in curves)
                      for group in (LEARNED, BASELINES)]
            parts[-1] += f" [pooled out-of-fold: {pooled[0] - pooled[1]:+.3f}]"
    if not parts:
        return "best embedding vs best no-learning baseline: not computed"
    return ("best embedding vs best no-learning baseline (macro-F1, mean over folds): "
            + "; ".join(parts) + f" — target ≥ +{TARGET:.2f} at each: "
            + ("**MET**" if met else "**MISSED**"))


def dataset_section(ds: Dataset, cfg: dict, budget: float, run: TrainedRun,
                    feats: dict[str, np.ndarray], fcpu: dict[str, float], res: dict,
                    ccpu: dict[str, float], sizes: tuple[int | str, ...], clock: str
                    ) -> list[str]:
    ts = cfg["n_triplets"] * run.epochs
    out = [f"### {ds.name}", "", ds.description, ""]
    out += [f"- note: {n}" for n in ds.notes]
    out += [
        f"- encoder: TileNet base width {cfg['base_width']}, z_dim {cfg['z_dim']}, pooling "
        f"{cfg.get('pooling', 'last')}, tile "
        f"{cfg['tile_size']} px, neighborhood {cfg['neighborhood']} px, {cfg['loss']} loss, "
        f"batch {cfg['batch_size']}, lr {cfg['lr']:g}, augment {cfg['augment']}; "
        f"{cfg['n_triplets']} fresh on-the-fly triplets per epoch, {run.epochs} epochs "
        f"({ts} triplets seen) within a {budget / 60:.1f} min {clock} budget (cap "
        f"{cfg['epochs']} epochs); last epoch loss {run.last.get('loss', float('nan')):.3f}.",
        f"- CPU time: tiling on the fly, inside training; training {run.cpu_s:.0f} s "
        f"(wall {run.wall_s:.0f} s{', cached' if run.cached else ''}); features "
        + ", ".join(f"{n} {s:.1f} s" for n, s in fcpu.items() if n != "embedding+bands")
        + "; classifiers " + ", ".join(f"{c} {s:.0f} s" for c, s in ccpu.items()) + ".",
        "- dims: " + ", ".join(f"{n} {x.shape[1]}" for n, x in feats.items()) + ".",
        "",
    ]
    heads = [str(s) for s in sizes]
    for clf in CLASSIFIERS:
        curves = res[clf]
        out += [f"**{ds.name}, {clf}**: macro-F1 mean ± std over folds by number of training "
                "labels per fold; accuracy and pooled out-of-fold macro-F1 with all labels", "",
                "| features | " + " | ".join(heads) + " | accuracy (all) | pooled F1 (all) |",
                "|---|" + "---:|" * (len(heads) + 2)]
        for name in feats:
            c = curves[name]
            a = c.get("all")
            out.append(f"| {name} | " + " | ".join(fmt(c.get(s)) for s in sizes)
                       + (f" | {a['acc']:.3f} ± {a['acc_std']:.3f} | {a['pooled_f1']:.3f} |"
                          if a else " | - | - |"))
        out += ["", verdict(curves, sizes), ""]
    return out


#: The ablation table's columns: (classifier, feature set, labels per fold).
AB_COLUMNS = (("logreg", "embedding", 50), ("logreg", "embedding", "all"),
              ("rf", "embedding", 50), ("rf", "embedding", "all"),
              ("logreg", "embedding+bands", 50), ("logreg", "embedding+bands", "all"),
              ("rf", "embedding+bands", 50), ("rf", "embedding+bands", "all"))


def ablation_section(name: str, rows: list[tuple[str, str, list[tuple[TrainedRun, dict]]]],
                     seeds: list[int], res: dict) -> list[str]:
    """One row per ablation: macro-F1 (mean over folds), as the mean ± std over training
    seeds when there are several; the bands baseline's values in the last row."""
    over = (f"mean ± std over training seeds {', '.join(map(str, seeds))}"
            if len(seeds) > 1 else f"training seed {seeds[0]}")
    heads = " | ".join(f"{'emb' if f == 'embedding' else 'emb+bands'} {c} {n}"
                       for c, f, n in AB_COLUMNS)
    out = [f"**Ablations, {name}** (one change from the default; same labels and folds; "
           f"macro-F1 mean over folds, {over})", "",
           f"| ablation | change | epochs | train CPU s | {heads} |",
           "|---|---|---:|---:|" + "---:|" * len(AB_COLUMNS)]

    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

    for abl, change, per_seed in rows:
        cols = [cell([r[c].get(f, {})[n]["f1"] for _, r in per_seed
                      if n in r[c].get(f, {})]) for c, f, n in AB_COLUMNS]
        epochs = "/".join(str(run.epochs) for run, _ in per_seed)
        cpu = np.mean([run.cpu_s for run, _ in per_seed])
        cpu_s = f"{cpu:.0f}" if np.isfinite(cpu) else "-"
        out.append(f"| {abl} | {change} | {epochs} | {cpu_s} | " + " | ".join(cols) + " |")
    bands = [f"{res[c]['bands'][n]['f1']:.3f}" if f == "embedding+bands" else "-"
             for c, f, n in AB_COLUMNS]
    out.append("| *bands alone* | no learning | - | - | " + " | ".join(bands) + " |")
    return out + [""]


def describe(override: Override, base: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v(base) if callable(v) else v}" for k, v in override.items())


# ----------------------------------------------------------------------------- main

def _train_worker(job: tuple[Dataset, dict[str, Any], float, argparse.Namespace, int]) -> None:
    import torch

    ds, cfg, budget, args, seed = job
    torch.set_num_threads(args.threads)
    train_budgeted(ds, cfg, budget, args, seed)


def train_all(ds: Dataset, args: argparse.Namespace, names: list[str], seeds: list[int]
              ) -> None:
    """Train every (config, seed) the run needs, ``--jobs`` at a time (cached ones are
    reused), so that the evaluation after it finds them all in the cache."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs, seen = [], set()
    for abl in ["default", *names]:
        cfg, budget, _ = train_config(ds.name, args, ABLATIONS.get(abl, {}))
        for seed in seeds:
            key = json.dumps([cfg, budget, seed], sort_keys=True)
            if key not in seen:
                seen.add(key)
                jobs.append((ds, cfg, budget, args, seed))
    if args.jobs <= 1:
        return
    jobs.sort(key=lambda job: -job[2])  # the longest first: the pool ends together
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        list(ex.map(_train_worker, jobs))
    args.retrain = False  # retrained just now


def run_dataset(ds: Dataset, args: argparse.Namespace, sizes: tuple[int | str, ...]
                ) -> list[str]:
    seeds = args.train_seeds or [args.seed]
    names = (list(ABLATIONS) if "all" in args.ablation else args.ablation) if args.ablation else []
    train_all(ds, args, names, seeds)
    main = ABLATIONS.get(args.main or "", {})
    cfg, budget, mode = train_config(ds.name, args, main)
    run = train_budgeted(ds, cfg, budget, args, seeds[0])
    feats, fcpu = compute_features(ds, run.checkpoint, FEATURES, args, mode)
    res, ccpu = run_classifiers(feats, ds, sizes, args)
    out = dataset_section(ds, cfg, budget, run, feats, fcpu, res, ccpu, sizes,
                          args.budget_clock)
    if not args.ablation and not args.checkpoint:
        return out
    ab_sizes = tuple(s for s in sizes if s in (50, "all"))
    rows = []
    for abl in ["default", *names]:
        override = ABLATIONS.get(abl, {})
        acfg, abudget, mode = train_config(ds.name, args, override)
        per_seed = []
        for seed in seeds:
            arun = (run if abl == "default" and seed == seeds[0]
                    else train_budgeted(ds, acfg, abudget, args, seed))
            if abl == "default" and seed == seeds[0]:
                per_seed.append((arun, {clf: {f: {n: res[clf][f][n] for n in ab_sizes}
                                              for f in LEARNED} for clf in CLASSIFIERS}))
                continue
            af, _ = compute_features(ds, arun.checkpoint, ("embedding",), args, mode)
            af["embedding+bands"] = np.concatenate([af["embedding"], feats["bands"]], axis=1)
            ares, _ = run_classifiers(af, ds, ab_sizes, args)
            per_seed.append((arun, ares))
        rows.append((abl, describe(override, cfg) if override else "-", per_seed))
    for spec in args.checkpoint or []:
        rows.append(checkpoint_row(ds, spec, feats, ab_sizes, args))
    return out + ablation_section(ds.name, rows, seeds, res)


def checkpoint_row(ds: Dataset, spec: str, feats: dict[str, np.ndarray],
                   sizes: tuple[int | str, ...], args: argparse.Namespace
                   ) -> tuple[str, str, list[tuple[TrainedRun, dict]]]:
    """An ablation row for an encoder trained elsewhere (``--checkpoint NAME=PATH``, e.g.
    ``geoembed train`` timed as a user runs it): its embedding on the same labels / folds."""
    from geoembed.io.checkpoint import load_checkpoint

    name, _, path = spec.partition("=")
    ckpt = load_checkpoint(Path(path), "tile2vec")
    run = TrainedRun(Path(path), int(ckpt["epoch"]), float("nan"), float("nan"), {}, True)
    af, _ = compute_features(ds, run.checkpoint, ("embedding",), args)
    af["embedding+bands"] = np.concatenate([af["embedding"], feats["bands"]], axis=1)
    ares, _ = run_classifiers(af, ds, sizes, args)
    opts = ckpt.get("options", {})
    change = ", ".join(f"{k} {opts[k]}" for k in ("tile_size", "neighborhood", "z_dim",
                                                    "base_width", "n_triplets", "pooling",
                                                    "jitter", "normalization") if k in opts)
    return name, f"checkpoint: {change}", [(run, ares)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", action="append", choices=DATASETS,
                   help="dataset to run (repeatable; default every one found)")
    p.add_argument("--quick", action="store_true",
                   help="small settings: 1.5 min training, 1 repeat, fewer labels and tiles")
    p.add_argument("--train-minutes", type=float, default=None,
                   help="time budget of each training run (default 5; quick 1.5)")
    p.add_argument("--budget-clock", choices=["cpu", "wall"], default="cpu",
                   help="what the budget counts: process CPU time (default; the same "
                   "training whatever the machine's load) or wall time")
    g = p.add_argument_group("training config (default: each dataset's, see TRAIN_DEFAULTS)")
    for key in TRAIN_KEYS:
        kind = {"augment": lambda s: s.lower() in ("1", "true", "yes"), "loss": str,
                "lr": float}.get(key, int)
        g.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None,
                       help="epochs: the cap (the budget usually stops first)"
                       if key == "epochs" else None)
    p.add_argument("--ablation", action="append", choices=[*ABLATIONS, "all"],
                   help="add a one-change training run per dataset (repeatable)")
    p.add_argument("--naip-labels", choices=["tiles", "pixels"], default="tiles")
    p.add_argument("--naip-pixels", type=int, default=200, help="pixels per scene (pixels)")
    p.add_argument("--polygon-pixels", type=int, default=None,
                   help="beaufort: at most this many pixels per polygon (0: all; default 40, "
                   "quick 15)")
    p.add_argument("--folds", type=int, default=5, help="beaufort: folds grouped by polygon")
    p.add_argument("--repeats", type=int, default=None,
                   help="random training subsets per learning-curve size (default 3; quick 1)")
    p.add_argument("--pca-tiles", type=int, default=None,
                   help="unlabelled tiles for PCA / filters / BatchNorm (default 1000)")
    p.add_argument("--n-random-features", type=int, default=None,
                   help="MOSAIKS features (default 1024; quick 256)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the labels' subsets, folds and baselines (and of training "
                   "without --train-seeds)")
    p.add_argument("--train-seeds", type=lambda v: [int(x) for x in v.split(",")],
                   default=None, metavar="S,S,...",
                   help="train every ablation (and the default) once per seed; the ablation "
                   "table shows mean ± std over them (default: --seed only)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest on the shared 2-core machine)")
    p.add_argument("--main", choices=list(ABLATIONS), default=None,
                   help="the encoder of the full tables: this ablation's instead of the "
                   "default (the random encoder then shares its architecture and pooling)")
    p.add_argument("--checkpoint", action="append", metavar="NAME=PATH",
                   help="add an ablation row for a checkpoint trained elsewhere (repeatable)")
    p.add_argument("--jobs", type=int, default=1,
                   help="training runs at a time (processes of --threads threads each)")
    p.add_argument("--retrain", action="store_true", help="ignore cached training runs")
    p.add_argument("--out", type=Path, help="also write the markdown here (atomically)")
    args = p.parse_args(argv)
    quick = args.quick
    for key, normal, small in (("train_minutes", 5.0, 1.5), ("polygon_pixels", 40, 15),
                               ("repeats", 3, 1), ("pca_tiles", 1000, 300),
                               ("n_random_features", 1024, 256)):
        if getattr(args, key) is None:
            setattr(args, key, small if quick else normal)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0, load0 = time.perf_counter(), os.getloadavg()
    cpu0 = time.process_time()
    sizes = SIZES
    body: list[str] = []
    for name in args.dataset or DATASETS:
        ds = load_naip(args) if name == "naip" else load_beaufort(args)
        if ds is None:
            body += [f"### {name}: skipped ({REAL / name} not found)", ""]
            log(f"{name}: skipped (no data)")
            continue
        log(f"{name}: {len(ds.y)} labels, {len(ds.classes)} classes, "
            f"{len(np.unique(ds.fold))} folds")
        body += run_dataset(ds, args, sizes)
    wall, load1 = time.perf_counter() - t0, os.getloadavg()
    cmd = " ".join(shlex.quote(a) for a in ["bench/bench_real.py", *sys.argv[1:]])
    out = ["## Real imagery: embeddings vs no-learning baselines (bench/bench_real.py)", "",
           f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores "
           f"(shared), load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end; "
           f"torch {torch.__version__.split('+')[0]} CPU, {args.threads} thread(s). "
           f"Command: `.venv/bin/python {cmd}`. Total {wall / 60:.1f} min wall, "
           f"{(time.process_time() - cpu0) / 60:.1f} min CPU (cached training runs "
           "count as 0).", "",
           "Baselines without learning: " + ", ".join(BASELINES) + "; learned: "
           + ", ".join(LEARNED) + f". Learning-curve subsets: {args.repeats} random draw(s) "
           "per size and fold (stratified when possible), the same for every feature set.",
           "", *body]
    text = "\n".join(out).rstrip() + "\n"
    if args.out is not None:
        from geoembed.io.outputs import atomic_output

        with atomic_output(args.out, overwrite=True) as tmp:
            Path(tmp).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
