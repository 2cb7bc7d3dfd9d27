"""Land-cover classifiers on embeddings against baselines, with spatially blocked cross-validation.

:func:`evaluate` turns labels (points, polygons or a label raster) into labelled scene pixels,
computes feature sets for them (:mod:`geoembed.evaluation.features`), and cross-validates a logistic
regression (the linear probe) and/or a random forest on each feature set:

- ``spatial`` CV: labels are grouped in square blocks of ``block_size`` pixels (block id from
  ``row // block_size`` and ``col // block_size``); whole blocks go to one fold, so a test
  label never has a training label from its own block. Folds come from scikit-learn's
  ``StratifiedGroupKFold`` (a ``GroupKFold`` that also keeps class proportions similar across
  folds, so a rare class is less likely to be missing from every training fold).
- ``random`` CV: ``StratifiedKFold`` with shuffling. Nearby labels then leak into each other;
  ``cv=("spatial", "random")`` reports both so that the leak is visible.

Features are standardised inside each fold (``StandardScaler`` fitted on the training part
only). Classes with fewer labels than folds are left out of the cross-validation (reported in
``excluded_classes`` and as a warning). A learning curve refits on random (stratified where
possible) subsets of each training fold and scores on the full test fold.

Outputs (written to a temporary directory, then renamed): ``report.json``,
``predictions.csv`` (the out-of-fold prediction of every feature set x classifier x CV for each
label, enough to recompute every number), ``learning_curve.png`` and ``confusion.png`` (the best
row by macro-F1 under the first CV scheme).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoembed import __version__
from geoembed.errors import CheckpointError, InputError, LabelError, OutputExistsError
from geoembed.evaluation.features import (
    FEATURE_SETS,
    TileFeatureSpec,
    available_feature_sets,
    fit_tile_pca,
    label_features,
    parse_feature_sets,
    random_encoder,
    random_tile_sample,
    sample_embedding_raster,
)
from geoembed.evaluation.metrics import scores
from geoembed.io.labels import PixelLabels, encode_classes, rowcol_to_xy

CLASSIFIERS = ("logreg", "rf")
CV_SCHEMES = ("spatial", "random")
DEFAULT_SIZES: tuple[int | str, ...] = (10, 20, 50, 100, 200, 500, "all")
DEFAULT_TILE = 50
PCA_MAX_COMPONENTS = 64


# ----------------------------------------------------------------------------- option parsing

def parse_choice(value: str | Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    """'logreg' / 'both' / 'a,b' / a list -> checked list of names."""
    if isinstance(value, str):
        names = list(allowed) if value == "both" else [v.strip() for v in value.split(",")]
    else:
        names = list(value)
    names = [n for n in names if n]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise InputError(f"unknown {what} {bad or value!r}; choose from "
                         f"{', '.join(allowed)} or both")
    return list(dict.fromkeys(names))


def parse_sizes(value: str | Sequence[int | str] | None) -> list[int | str]:
    """'10,20,all' -> [10, 20, 'all']; 'none' or '' -> [] (no learning curve)."""
    if value is None:
        return list(DEFAULT_SIZES)
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[int | str] = []
    for item in items:
        s = str(item).strip().lower()
        if s in ("", "none"):
            continue
        if s == "all":
            out.append("all")
            continue
        try:
            n = int(s)
        except ValueError:
            raise InputError(f"learning-curve size {item!r} is not a number or 'all'") from None
        if n < 2:
            raise InputError(f"learning-curve size {n} is too small (at least 2 labels)")
        out.append(n)
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------- folds

def spatial_blocks(rows: np.ndarray, cols: np.ndarray, block_size: int) -> np.ndarray:
    """Block id of each pixel: square blocks of ``block_size`` pixels, numbered row-major."""
    if block_size < 1:
        raise InputError("--block-size must be at least 1 pixel")
    br = np.asarray(rows, np.int64) // block_size
    bc = np.asarray(cols, np.int64) // block_size
    return br * (int(bc.max(initial=0)) + 1) + bc


def make_folds(y: np.ndarray, scheme: str, n_folds: int, *, seed: int = 0,
               groups: np.ndarray | None = None) -> tuple[np.ndarray, int, list[str]]:
    """Fold number (0..k-1) of every label, the number of folds used, and warnings.

    ``spatial`` needs ``groups`` (block ids); when there are fewer blocks than folds the
    folds are reduced to the number of blocks.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    notes: list[str] = []
    if n_folds < 2:
        raise InputError("--folds must be at least 2")
    fold = np.full(len(y), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" (handled)
        if scheme == "spatial":
            if groups is None:
                raise ValueError("spatial folds need groups")
            n_groups = len(np.unique(groups))
            if n_groups < 2:
                raise LabelError("all labels fall in one spatial block; use a smaller "
                                 "--block-size (or --cv random)")
            if n_groups < n_folds:
                notes.append(f"spatial CV: only {n_groups} blocks hold labels, so {n_groups} "
                             f"folds are used instead of {n_folds}")
                n_folds = n_groups
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            splits = splitter.split(np.zeros(len(y)), y, groups)
        elif scheme == "random":
            splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            splits = splitter.split(np.zeros(len(y)), y)
        else:
            raise InputError(f"unknown CV scheme {scheme!r}")
        for k, (_, test) in enumerate(splits):
            fold[test] = k
    used = np.unique(fold)
    if len(used) < n_folds:  # a splitter may leave a fold empty with very few groups
        fold = np.searchsorted(used, fold)
        n_folds = len(used)
    return fold, n_folds, notes


# ----------------------------------------------------------------------------- classifiers

def make_classifier(name: str, seed: int = 0) -> Any:
    """StandardScaler + LogisticRegression (``logreg``) or RandomForest (``rf``) pipeline."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logreg":
        model = LogisticRegression(max_iter=2000)
    elif name == "rf":
        model = RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=seed)
    else:
        raise InputError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")
    return make_pipeline(StandardScaler(), model)


def fit_predict(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                seed: int = 0) -> np.ndarray:
    """Fit on the training part (standardised there) and predict the test part.

    A training part with a single class predicts that class everywhere.
    """
    from sklearn.exceptions import ConvergenceWarning

    present = np.unique(y_train)
    if len(present) == 1:
        return np.full(len(x_test), present[0], dtype=y_train.dtype)
    clf = make_classifier(name, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
        return clf.predict(x_test)


def cross_val_predict(x: np.ndarray, y: np.ndarray, fold: np.ndarray, classifier: str,
                      seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions: each label predicted by a model fitted on the other folds."""
    pred = np.empty_like(y)
    for k in np.unique(fold):
        test = fold == k
        pred[test] = fit_predict(classifier, x[~test], y[~test], x[test], seed)
    return pred


def _subset(train: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random indices of ``train``, stratified by class when possible."""
    from sklearn.model_selection import train_test_split

    if n >= len(train):
        return train
    try:
        sub, _ = train_test_split(train, train_size=n, stratify=y[train],
                                  random_state=int(rng.integers(2**31 - 1)))
        return np.asarray(sub)
    except ValueError:  # too few labels of some class, or n < number of classes
        return rng.choice(train, size=n, replace=False)


def learning_curve(x: np.ndarray, y: np.ndarray, fold: np.ndarray, classifier: str,
                   sizes: Sequence[int | str], *, repeats: int = 5, seed: int = 0,
                   n_classes: int | None = None, full: dict | None = None) -> list[dict]:
    """Accuracy and macro-F1 against the number of training labels.

    For each size ``n`` (capped by the smallest training fold) and each repeat, every fold's
    model is fitted on ``n`` random labels of its training part and scores the whole test
    fold; the out-of-fold predictions of one repeat give one accuracy and macro-F1. Returns
    ``[{"n_train", "accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std",
    "repeats"}]``. ``"all"`` uses the full training folds once (``full`` reuses scores
    already computed).
    """
    from sklearn.metrics import accuracy_score, f1_score

    folds = np.unique(fold)
    min_train = int(min((fold != k).sum() for k in folds))
    labels = list(range(n_classes if n_classes is not None else int(y.max()) + 1))
    out = []
    numeric = sorted({int(s) for s in sizes if s != "all" and int(s) < min_train})
    for n in numeric:
        accs, f1s = [], []
        for rep in range(repeats):
            rng = np.random.default_rng([seed, n, rep])
            pred = np.empty_like(y)
            for k in folds:
                test = fold == k
                sub = _subset(np.flatnonzero(~test), y, n, rng)
                pred[test] = fit_predict(classifier, x[sub], y[sub], x[test], seed + rep)
            accs.append(accuracy_score(y, pred))
            f1s.append(f1_score(y, pred, labels=labels, average="macro", zero_division=0))
        out.append({"n_train": n, "accuracy_mean": float(np.mean(accs)),
                    "accuracy_std": float(np.std(accs)), "macro_f1_mean": float(np.mean(f1s)),
                    "macro_f1_std": float(np.std(f1s)), "repeats": repeats})
    if "all" in sizes or any(s != "all" and int(s) >= min_train for s in sizes):
        if full is None:
            pred = cross_val_predict(x, y, fold, classifier, seed)
            full = {"accuracy": accuracy_score(y, pred),
                    "macro_f1": f1_score(y, pred, labels=labels, average="macro",
                                         zero_division=0)}
        n_all = int(round(np.mean([(fold != k).sum() for k in folds])))
        out.append({"n_train": n_all, "all": True, "accuracy_mean": float(full["accuracy"]),
                    "accuracy_std": 0.0, "macro_f1_mean": float(full["macro_f1"]),
                    "macro_f1_std": 0.0, "repeats": 1})
    return out


# ----------------------------------------------------------------------------- the whole run

@dataclass
class EvaluationResult:
    """What :func:`evaluate` produced: the report dict, the output directory and warnings."""

    report: dict
    out_dir: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[dict]:
        return self.report["results"]

    def table(self) -> str:
        """Markdown table: feature set, classifier, CV, accuracy, macro-F1."""
        return format_table(self.rows)


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table of result rows (feature set, classifier, CV, accuracy, macro-F1)."""
    lines = ["| feature set | classifier | cv | accuracy | macro-F1 |",
             "|---|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['features']} | {r['classifier']} | {r['cv']} | "
                     f"{r['accuracy']:.3f} | {r['macro_f1']:.3f} |")
    return "\n".join(lines)


def _load_labels(scene: Any, labels: Any, label_column: str | None, labels_raster: Any,
                 max_labels: int | None, polygon_samples: int | None, seed: int
                 ) -> tuple[PixelLabels, str]:
    from geoembed.io.labels import raster_pixel_labels, vector_pixel_labels

    if (labels is None) == (labels_raster is None):
        raise InputError("give exactly one of --labels (vector file) and --labels-raster")
    if labels is not None:
        if not label_column:
            raise InputError("--label-column is needed with --labels")
        px = vector_pixel_labels(labels, scene, label_column, polygon_samples=polygon_samples,
                                 seed=seed)
        if max_labels is not None and len(px) > max_labels:
            pick = np.sort(np.random.default_rng(seed).choice(len(px), max_labels,
                                                              replace=False))
            px = PixelLabels(px.rows[pick], px.cols[pick], px.labels[pick], n_input=px.n_input,
                             n_outside=px.n_outside, n_nodata=px.n_nodata,
                             source_index=px.source_index[pick])
        return px, str(labels) if isinstance(labels, str | os.PathLike) else "labels"
    return raster_pixel_labels(labels_raster, scene, max_labels=max_labels, seed=seed), \
        str(labels_raster)


def _scene_and_model(scene_path: Any, checkpoint: Any, embeddings: Any, bands: Any,
                     allow_no_crs: bool) -> tuple[Any, Any]:
    from geoembed.io.scenes import open_scene

    if checkpoint is not None and embeddings is not None:
        raise InputError("give either --checkpoint or --embeddings, not both")
    if checkpoint is not None:
        from geoembed.inference.embedding import load_embedding_model, open_scene_for

        em = load_embedding_model(checkpoint)
        return open_scene_for(em, scene_path, bands, allow_no_crs=allow_no_crs), em
    if bands is None and embeddings is not None:
        bands = _bands_from_tags(embeddings, scene_path)
    return open_scene(scene_path, bands, allow_no_crs=allow_no_crs), None


def _bands_from_tags(embeddings: Any, scene_path: Any) -> tuple[int, ...] | None:
    """The scene bands an embedding GeoTIFF was made from (its ``bands`` tag), if usable."""
    import rasterio

    from geoembed.io.embeddings import embedding_info

    embedding_info(embeddings)  # clear errors for a missing file / not a raster
    with rasterio.open(embeddings) as ds:
        tag = ds.tags().get("bands")
    if not tag or not os.path.exists(scene_path):
        return None
    try:
        bands = tuple(int(b) for b in tag.split(","))
        with rasterio.open(scene_path) as sc:
            return bands if bands and max(bands) <= sc.count and min(bands) >= 1 else None
    except Exception:
        return None


def _tile_from_tags(tags: dict) -> int | None:
    for key in ("tile_size", "TILE_SIZE", "tile", "geoembed_tile_size"):
        if key in tags:
            try:
                return int(float(tags[key]))
            except ValueError:
                return None
    return None


def evaluate(
    scene: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: str | os.PathLike | Any | None = None,
    label_column: str | None = None,
    labels_raster: str | os.PathLike | None = None,
    max_labels: int | None = None,
    polygon_samples: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    embeddings: str | os.PathLike | None = None,
    features: str | Sequence[str] | None = None,
    classifier: str | Sequence[str] = "logreg",
    cv: str | Sequence[str] = "spatial",
    folds: int = 5,
    block_size: int | None = None,
    learning_curve_sizes: str | Sequence[int | str] | None = DEFAULT_SIZES,
    repeats: int = 5,
    tile_size: int | None = None,
    bands: Sequence[int] | None = None,
    pca_tiles: int = 1000,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "auto",
    allow_no_crs: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    plots: bool = True,
) -> EvaluationResult:
    """Cross-validate classifiers on embeddings and baselines for labelled pixels of a scene.

    Args:
        scene: the raster the labels are on (the scene the encoder embeds).
        out: output directory (refused if it exists, unless ``overwrite``).
        labels: vector labels (path or GeoDataFrame; points or polygons, any CRS).
        label_column: the column of ``labels`` holding the class.
        labels_raster: a label raster on the scene's grid instead of ``labels``.
        max_labels: random subset of at most this many labels.
        polygon_samples: K random points per polygon (default: one point inside each).
        checkpoint: ``tile2vec`` checkpoint (``embedding`` computed from tiles around labels;
            enables ``random-encoder``).
        embeddings: embedding GeoTIFF sampled at the labels (instead of ``checkpoint``).
            With neither, only the baselines (``bands``, ``tile-stats``, ``pca``) are run.
        features: feature sets (see :data:`~geoembed.evaluation.features.FEATURE_SETS`);
            default every available one.
        classifier: ``"logreg"``, ``"rf"`` or ``"both"``.
        cv: ``"spatial"``, ``"random"`` or ``"both"``.
        folds: number of folds.
        block_size: spatial block side in pixels (default 4 tiles).
        learning_curve_sizes: training sizes (ints and ``"all"``); empty for none.
        repeats: random subsets per learning-curve size.
        tile_size: tile for ``tile-stats``/``pca`` without a checkpoint (default: the embedding
            raster's ``tile_size`` tag, else 50).
        bands: 1-based scene bands (default: the checkpoint's, else all).
        pca_tiles: unlabelled random tiles the PCA is fitted on (the first 512 also give the
            random encoder its BatchNorm statistics).
        batch_size: labels per encoder batch.
        seed: seeds folds, subsets, the random encoder, PCA tiles and random forests.
        device: torch device for the encoders.
        allow_no_crs: accept a scene without a CRS (labels must then be in pixel space).
        overwrite: replace an existing ``out``.
        quiet: no progress bars.
        plots: write ``learning_curve.png`` and ``confusion.png``.

    Returns:
        :class:`EvaluationResult` with the report (also in ``out/report.json``).

    Raises:
        InputError, LabelError, CRSError, RasterError, CheckpointError, OutputExistsError.
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    classifiers = parse_choice(classifier, CLASSIFIERS, "classifier")
    schemes = parse_choice(cv, CV_SCHEMES, "CV scheme")
    sizes = parse_sizes(learning_curve_sizes)
    if folds < 2:
        raise InputError("--folds must be at least 2")
    if repeats < 1:
        raise InputError("--repeats must be at least 1")
    if polygon_samples is not None and polygon_samples < 1:
        raise InputError("--polygon-samples must be at least 1")
    if max_labels is not None and max_labels < 2:
        raise InputError("--max-labels must be at least 2")
    available = available_feature_sets(checkpoint is not None, embeddings is not None)
    requested = parse_feature_sets(features)
    if requested is None:
        names = available
    else:
        missing = [n for n in requested if n not in available]
        if missing:
            need = "--checkpoint" if "random-encoder" in missing and embeddings is not None \
                else "--checkpoint or --embeddings"
            raise InputError(f"feature set(s) {', '.join(missing)} need {need}")
        names = requested
    torch_device: Any = "cpu"
    if checkpoint is not None and any(n in names for n in ("embedding", "random-encoder",
                                                           "embedding+bands")):
        from geoembed.devices import resolve_device

        torch_device = resolve_device(device)

    notes: list[str] = []
    scn, em = _scene_and_model(scene, checkpoint, embeddings, bands, allow_no_crs)
    px, label_source = _load_labels(scn, labels, label_column, labels_raster, max_labels,
                                    polygon_samples, seed)
    n_kept = len(px)
    rows, cols, values = px.rows, px.cols, px.labels
    feats: dict[str, np.ndarray] = {}
    n_no_embedding = 0
    emb_info: dict = {}
    if embeddings is not None and checkpoint is None and \
            any(n in names for n in ("embedding", "embedding+bands")):
        emb, covered, emb_info = sample_embedding_raster(embeddings, scn, rows, cols)
        n_no_embedding = int((~covered).sum())
        if n_no_embedding:
            notes.append(f"{n_no_embedding} labels are outside the embedding raster or on its "
                         "nodata and were dropped")
        rows, cols, values = rows[covered], cols[covered], values[covered]
        feats["embedding"] = emb[covered]

    codes, classes = encode_classes(values, label_source)
    counts = np.bincount(codes, minlength=len(classes))
    rare = [i for i, c in enumerate(counts) if c < folds]
    if rare:
        notes.append("classes with fewer labels than folds left out of the CV: " + ", ".join(
            f"{classes[i]} ({counts[i]})" for i in rare))
    keep_cls = [i for i in range(len(classes)) if i not in rare]
    if len(keep_cls) < 2:
        raise LabelError(f"fewer than 2 classes have at least {folds} labels (counts: "
                         + ", ".join(f"{c}={n}" for c, n in zip(classes, counts, strict=True))
                         + "); add labels or lower --folds")
    use = np.isin(codes, keep_cls)
    remap = np.full(len(classes), -1, np.int64)
    remap[keep_cls] = np.arange(len(keep_cls))
    y = remap[codes[use]]
    cv_classes = [classes[i] for i in keep_cls]
    rows_u, cols_u = rows[use], cols[use]
    feats = {k: v[use] for k, v in feats.items()}

    # tile-based features
    if em is not None:
        tile = em.tile
    else:
        tile = int(tile_size or _tile_from_tags(emb_info.get("tags", {})) or DEFAULT_TILE)
    if tile < 1:
        raise InputError("--tile-size must be at least 1")
    block = int(block_size) if block_size is not None else 4 * tile
    need = set(names)
    if "embedding+bands" in need:
        need |= {"embedding", "bands"}
    need -= set(feats)
    need.discard("embedding+bands")
    if em is not None:
        stats = em.band_stats
    elif need & {"tile-stats", "pca"}:
        from geoembed.io.scenes import band_statistics

        stats = band_statistics([scn], seed=seed)
    else:
        stats = None
    spec = TileFeatureSpec(tile=tile, stats=stats, device=torch_device, batch_size=batch_size)
    unlabelled = None
    if need & {"pca", "random-encoder"}:
        unlabelled = random_tile_sample(scn, tile, pca_tiles, stats, seed=seed)
    if em is not None:
        spec.encoder = em.model.to(torch_device)
        if "random-encoder" in need:
            cfg = load_encoder_config(checkpoint)
            calib = unlabelled.reshape(len(unlabelled), scn.count, tile, tile)
            spec.random_encoder = random_encoder(cfg, seed, calib[:512]).to(torch_device)
    if "pca" in need:
        z = em.z_dim if em is not None else emb_info.get("bands", PCA_MAX_COMPONENTS)
        spec.pca = fit_tile_pca(unlabelled, n_components=min(z, PCA_MAX_COMPONENTS), seed=seed)
    if need:
        feats.update(label_features(scn, rows_u, cols_u, sorted(need), spec, quiet=quiet))
    if "embedding+bands" in names:
        feats["embedding+bands"] = np.concatenate([feats["embedding"], feats["bands"]], axis=1)
    feats = {n: feats[n] for n in names}

    # folds
    fold_of: dict[str, np.ndarray] = {}
    n_folds: dict[str, int] = {}
    groups = spatial_blocks(rows_u, cols_u, block)
    for scheme in schemes:
        f, k, fold_notes = make_folds(y, scheme, folds, seed=seed,
                                      groups=groups if scheme == "spatial" else None)
        fold_of[scheme], n_folds[scheme] = f, k
        notes.extend(fold_notes)

    # cross-validation
    results: list[dict] = []
    preds: dict[str, np.ndarray] = {}
    runs = [(s, n, c) for s in schemes for n in names for c in classifiers]
    # many small fits: multi-threaded BLAS only adds overhead (and contention on busy machines)
    with threadpool_limits(limits=1, user_api="blas"):
        for scheme, name, clf in tqdm(runs, desc="cross-validation", unit="run", disable=quiet):
            x = feats[name]
            pred = cross_val_predict(x, y, fold_of[scheme], clf, seed)
            row = {"features": name, "classifier": clf, "cv": scheme,
                   "n_features": int(x.shape[1]), **scores(y, pred, cv_classes)}
            row["learning_curve"] = learning_curve(
                x, y, fold_of[scheme], clf, sizes, repeats=repeats, seed=seed,
                n_classes=len(cv_classes), full=row) if sizes else []
            results.append(row)
            preds[f"{name}|{clf}|{scheme}"] = pred

    best = max((r for r in results if r["cv"] == schemes[0]), key=lambda r: r["macro_f1"])
    report = {
        "geoembed_version": __version__,
        "scene": str(scene),
        "labels": label_source,
        "label_column": label_column,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "embeddings": str(embeddings) if embeddings is not None else None,
        "n_input": int(px.n_input),
        "n_labels": int(len(y)),
        "n_in_scene": int(n_kept),
        "n_dropped": int(px.n_outside + px.n_nodata + n_no_embedding),
        "dropped": {"outside": int(px.n_outside), "nodata": int(px.n_nodata),
                    "no_embedding": int(n_no_embedding)},
        "classes": [{"name": str(c), "count": int(counts[i]), "in_cv": i in keep_cls}
                    for i, c in enumerate(classes)],
        "excluded_classes": [str(classes[i]) for i in rare],
        "cv": schemes,
        "folds": n_folds,
        "block_size": block,
        "tile_size": tile,
        "seed": seed,
        "feature_sets": {n: int(feats[n].shape[1]) for n in names},
        "classifiers": classifiers,
        "learning_curve_sizes": [s for s in sizes],
        "repeats": repeats,
        "warnings": notes,
        "best": {k: best[k] for k in ("features", "classifier", "cv", "accuracy", "macro_f1")},
        "results": results,
    }
    x_map, y_map = rowcol_to_xy(scn, rows_u, cols_u)
    _write_outputs(out, overwrite, report, rows_u, cols_u, x_map, y_map, y, cv_classes,
                   fold_of, preds, best, plots)
    return EvaluationResult(report=report, out_dir=out, warnings=notes)


def load_encoder_config(checkpoint: str | os.PathLike) -> dict:
    """The ``encoder`` config dict of a tile2vec checkpoint."""
    from geoembed.io.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, "tile2vec")
    if "encoder" not in ckpt:
        raise CheckpointError(f"{checkpoint}: no encoder config in the checkpoint")
    return dict(ckpt["encoder"])


# ----------------------------------------------------------------------------- outputs

def _write_outputs(out: Path, overwrite: bool, report: dict, rows: np.ndarray, cols: np.ndarray,
                   x: np.ndarray, y_map: np.ndarray, y: np.ndarray, classes: list,
                   fold_of: dict[str, np.ndarray], preds: dict[str, np.ndarray],
                   best: dict, plots: bool = True) -> None:
    from geoembed.io.outputs import replace_path, temporary_sibling

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(out)
    tmp.mkdir()
    try:
        with open(tmp / "report.json", "w") as f:
            json.dump(report, f, indent=2)
        write_predictions(tmp / "predictions.csv", rows, cols, x, y_map, y, classes, fold_of,
                          preds)
        if plots:
            plot_learning_curves(tmp / "learning_curve.png", report["results"])
            plot_confusion(tmp / "confusion.png", best)
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
        replace_path(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_predictions(path: Path, rows: np.ndarray, cols: np.ndarray, x: np.ndarray,
                      y_map: np.ndarray, y: np.ndarray, classes: list,
                      fold_of: dict[str, np.ndarray], preds: dict[str, np.ndarray]) -> None:
    """One line per label: row, col, x, y, true, fold_<cv>..., pred|<features>|<clf>|<cv>..."""
    names = [str(c) for c in classes]
    header = ["row", "col", "x", "y", "true", *[f"fold_{s}" for s in fold_of], *preds]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(len(y)):
            w.writerow([int(rows[i]), int(cols[i]), f"{x[i]:.3f}", f"{y_map[i]:.3f}",
                        names[y[i]], *[int(v[i]) for v in fold_of.values()],
                        *[names[p[i]] for p in preds.values()]])


def plot_learning_curves(path: Path, results: Sequence[dict]) -> None:
    """Accuracy and macro-F1 (mean +- std) against training labels, one column per CV scheme."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    schemes = list(dict.fromkeys(r["cv"] for r in results))
    fig = Figure(figsize=(6 * len(schemes), 8))
    axes = fig.subplots(2, len(schemes), squeeze=False)
    for j, scheme in enumerate(schemes):
        for r in (r for r in results if r["cv"] == scheme and r["learning_curve"]):
            lc = r["learning_curve"]
            n = [p["n_train"] for p in lc]
            for i, key in enumerate(("accuracy", "macro_f1")):
                m = np.array([p[f"{key}_mean"] for p in lc])
                s = np.array([p[f"{key}_std"] for p in lc])
                ax = axes[i, j]
                ax.plot(n, m, marker="o", label=f"{r['features']} / {r['classifier']}")
                ax.fill_between(n, m - s, m + s, alpha=0.15)
        for i, key in enumerate(("accuracy", "macro-F1")):
            ax = axes[i, j]
            ax.set_xscale("log")
            ax.set_xlabel("training labels")
            ax.set_ylabel(key)
            ax.set_title(f"{key}, {scheme} CV")
            ax.grid(alpha=0.3)
        if axes[0, j].get_legend_handles_labels()[0]:
            axes[0, j].legend(fontsize=7)
        else:
            axes[0, j].text(0.5, 0.5, "no learning curve", ha="center",
                            transform=axes[0, j].transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_confusion(path: Path, row: dict) -> None:
    """Row-normalised confusion matrix of one result row, with counts."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    cm = np.asarray(row["confusion_matrix"], dtype=float)
    names = row["class_order"]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.6 * len(names) + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(f"{row['features']} / {row['classifier']} / {row['cv']} CV: "
                 f"accuracy {row['accuracy']:.3f}, macro-F1 {row['macro_f1']:.3f}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


__all__ = ["CLASSIFIERS", "CV_SCHEMES", "FEATURE_SETS", "EvaluationResult", "cross_val_predict",
           "evaluate", "format_table", "learning_curve", "make_classifier", "make_folds",
           "scores", "spatial_blocks"]
