"""Land-cover classifiers on embeddings against baselines, with spatially blocked cross-validation.

:func:`evaluate` turns labels (points, polygons or a label raster) into labelled scene pixels
(:mod:`~geoembed.evaluation.inputs`), computes feature sets for them
(:mod:`~geoembed.evaluation.features`), makes spatial and/or random folds
(:mod:`~geoembed.evaluation.folds`), cross-validates a logistic regression (the linear probe)
and/or a random forest (or gradient boosting) on each feature set with a learning curve
(:mod:`~geoembed.evaluation.classifiers`), scores them (:mod:`geoembed.metrics`)
and writes the report and plots (:mod:`~geoembed.evaluation.report`,
:mod:`~geoembed.evaluation.plots`). ``cv=("spatial", "random")`` reports both schemes so that
the leak of random folds is visible.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from geoembed.evaluation.classifiers import cross_val_predict, learning_curve
from geoembed.evaluation.config import DEFAULT_TILE, EvaluateConfig
from geoembed.evaluation.features import (
    TileFeatureSpec,
    fit_tile_pca,
    label_features,
    random_tile_sample,
)
from geoembed.evaluation.folds import cv_groups, make_folds, resolve_cv_groups
from geoembed.evaluation.inputs import (
    LabelledPixels,
    OpenedSource,
    labelled_pixels,
    load_encoder_config,
    open_inputs,
    tile_from_tags,
)
from geoembed.evaluation.random_features import fit_on_tile_sample
from geoembed.evaluation.ranking import fold_scores
from geoembed.evaluation.report import EvaluationResult, build_report, write_outputs
from geoembed.evaluation.sources import expand_features, feature_name
from geoembed.io.georef import rowcol_to_xy
from geoembed.io.outputs import check_output
from geoembed.io.scenes import Scene, band_statistics
from geoembed.metrics import scores

PCA_MAX_COMPONENTS = 64
ENCODER_FEATURES = ("embedding", "random-encoder", "embedding+bands")


def _add_encoders(spec: TileFeatureSpec, em: Any, need: set[str], cfg: EvaluateConfig,
                  calibration: np.ndarray | None) -> None:
    """The checkpoint's encoder (and the untrained control) on the chosen device."""
    # torch only with a checkpoint: the baselines alone run without it
    from geoembed.devices import resolve_device
    from geoembed.evaluation.encoders import random_encoder

    spec.device = resolve_device(cfg.device) if need & set(ENCODER_FEATURES) else "cpu"
    spec.encoder = em.model.to(spec.device)
    if "random-encoder" in need:
        spec.random_encoder = random_encoder(load_encoder_config(em.checkpoint), cfg.seed,
                                             calibration).to(spec.device)


def _tile_spec(scn: Scene, em: Any, need: set[str], tile: int, cfg: EvaluateConfig,
               emb_bands: int | None) -> TileFeatureSpec:
    """Band statistics, encoders and PCA for the tile-based feature sets in ``need``."""
    stats = em.band_stats if em is not None else (
        band_statistics([scn], seed=cfg.seed)
        if need & {"tile-stats", "pca", "random-features"} else None)
    spec = TileFeatureSpec(tile=tile, stats=stats, batch_size=cfg.batch_size)
    unlabelled = None
    if need & {"pca", "random-encoder", "random-features"}:
        unlabelled = random_tile_sample(scn, tile, cfg.pca_tiles, stats, seed=cfg.seed)
    if em is not None:
        calib = None if unlabelled is None else \
            unlabelled.reshape(len(unlabelled), scn.count, tile, tile)[:512]
        _add_encoders(spec, em, need, cfg, calib)
    if "random-features" in need:
        spec.random_features = fit_on_tile_sample(unlabelled, scn.count, tile, seed=cfg.seed,
                                                  n_features=cfg.n_random_features)
    if "pca" in need:
        z = em.z_dim if em is not None else (emb_bands or PCA_MAX_COMPONENTS)
        spec.pca = fit_tile_pca(unlabelled, n_components=min(z, PCA_MAX_COMPONENTS),
                                seed=cfg.seed)
    return spec


def _features(scn: Scene, opened: list[OpenedSource], lab: LabelledPixels, names: list[str],
              tile: int, cfg: EvaluateConfig) -> dict[str, np.ndarray]:
    """``{feature set: (n, d) array}`` for the labels in the CV: ``names`` expanded to one
    feature set per source (:func:`~geoembed.evaluation.sources.expand_features`), in order.

    The label tiles are read once per checkpoint source (its bands, statistics and tile);
    the baselines come with the first pass (the first checkpoint's statistics, if any).
    """
    plan = expand_features(names, [o.source for o in opened])
    feats = dict(lab.sampled)
    base = {g for _, g, s in plan if s is None} | ({"bands"} if "embedding+bands" in names
                                                  else set())
    emb_bands = next(iter(lab.embedding_info.values()), {}).get("bands")
    for i, o in enumerate([o for o in opened if o.model is not None] or [None]):
        own = {"random-encoder" if g == "random-encoder" else "embedding"
               for _, g, s in plan if o is not None and s is o.source}
        need = own | base if i == 0 else own
        if not need:
            continue
        em, scene = (o.model, o.scene) if o is not None else (None, scn)
        spec = _tile_spec(scene, em, need, em.tile if em is not None else tile, cfg, emb_bands)
        got = label_features(scene, lab.rows, lab.cols, sorted(need), spec, quiet=cfg.quiet)
        feats.update({feature_name(g, o.source) if g in own else g: v for g, v in got.items()})
    for f, g, s in plan:
        if g == "embedding+bands":
            feats[f] = np.concatenate([feats[s.name], feats["bands"]], axis=1)
    return {f: feats[f] for f, _, _ in plan}


def _folds(lab: LabelledPixels, block: int, cfg: EvaluateConfig, how: str, notes: list[str]
           ) -> tuple[dict[str, np.ndarray], dict[str, int], dict | None]:
    """Fold of every label and number of folds, per CV scheme, and the spatial groups
    (``how``: ``blocks`` or ``polygons``) as the report records them (None without
    spatial CV)."""
    groups = cv_groups(lab.rows, lab.cols, block, how, lab.feature)
    fold_of: dict[str, np.ndarray] = {}
    n_folds: dict[str, int] = {}
    for scheme in cfg.cv:
        fold_of[scheme], n_folds[scheme], fold_notes = make_folds(
            lab.y, scheme, cfg.folds, seed=cfg.seed,
            groups=groups if scheme == "spatial" else None, grouping=how)
        notes.extend(fold_notes)
    info = {"by": how, "option": cfg.cv_groups, "n_groups": int(len(np.unique(groups)))} \
        if "spatial" in cfg.cv else None
    return fold_of, n_folds, info


def _cross_validate(feats: dict[str, np.ndarray], lab: LabelledPixels,
                    fold_of: dict[str, np.ndarray], cfg: EvaluateConfig
                    ) -> tuple[list[dict], dict[str, np.ndarray]]:
    """One result row (scores and learning curve) and the out-of-fold predictions per
    CV scheme x feature set x classifier."""
    y, sizes = lab.y, cfg.learning_curve_sizes
    results: list[dict] = []
    preds: dict[str, np.ndarray] = {}
    runs = [(s, n, c) for s in cfg.cv for n in feats for c in cfg.classifier]
    # many small fits: threads (BLAS, and OpenMP in hgb) only add overhead and contention
    with threadpool_limits(limits=1):
        for scheme, name, clf in tqdm(runs, desc="cross-validation", unit="run",
                                      disable=cfg.quiet):
            x, fold = feats[name], fold_of[scheme]
            pred = cross_val_predict(x, y, fold, clf, cfg.seed)
            row = {"features": name, "classifier": clf, "cv": scheme,
                   "n_features": int(x.shape[1]), **scores(y, pred, lab.cv_classes),
                   "per_fold": fold_scores(y, pred, fold, len(lab.cv_classes))}
            row["learning_curve"] = learning_curve(
                x, y, fold, clf, sizes, repeats=cfg.repeats, seed=cfg.seed,
                n_classes=len(lab.cv_classes), full=row) if sizes else []
            results.append(row)
            preds[f"{name}|{clf}|{scheme}"] = pred
    return results, preds


def run_evaluation(scene: str | os.PathLike, out: str | os.PathLike,
                   cfg: EvaluateConfig) -> EvaluationResult:
    """:func:`evaluate` with its options in an :class:`EvaluateConfig`."""
    out = check_output(out, cfg.overwrite)
    names = cfg.feature_names()
    notes: list[str] = []
    scn, opened = open_inputs(scene, cfg)
    lab = labelled_pixels(scn, cfg, names, notes)
    how = resolve_cv_groups(cfg.cv_groups, lab.pixels.geometry)  # before the long work
    em = next((o.model for o in opened if o.model is not None), None)
    tagged = (tile_from_tags(i.get("tags", {})) for i in lab.embedding_info.values())
    tile = em.tile if em is not None else int(
        cfg.tile_size or next((t for t in tagged if t), None) or DEFAULT_TILE)
    block = int(cfg.block_size) if cfg.block_size is not None else 4 * tile
    # one set of labels and one fold assignment, whatever the number of sources
    feats = _features(scn, opened, lab, names, tile, cfg)
    fold_of, n_folds, groups = _folds(lab, block, cfg, how, notes)
    results, preds = _cross_validate(feats, lab, fold_of, cfg)
    report = build_report(scene, cfg, lab, feature_dims={n: int(v.shape[1])
                                                         for n, v in feats.items()},
                          n_folds=n_folds, block=block, cv_groups=groups, tile=tile,
                          notes=notes,
                          results=results, sources=[o.source for o in opened])
    write_outputs(out, report, lab, rowcol_to_xy(scn.transform, lab.rows, lab.cols), fold_of, preds,
                  overwrite=cfg.overwrite, plots=cfg.plots)
    return EvaluationResult(report=report, out_dir=out, warnings=notes)


def evaluate(scene: str | os.PathLike, out: str | os.PathLike, *,
             config: EvaluateConfig | None = None, **options: Any) -> EvaluationResult:
    """Cross-validate classifiers on embeddings and baselines for labelled pixels of a scene.

    Args:
        scene: the raster the labels are on (the scene the encoder embeds).
        out: output directory (refused if it exists, unless ``overwrite``).
        config: the options as an :class:`~geoembed.evaluation.config.EvaluateConfig`;
            keyword ``options`` override its fields.
        **options: any field of :class:`~geoembed.evaluation.config.EvaluateConfig`:

            - ``labels`` (path or GeoDataFrame; points or polygons, any CRS) with
              ``label_column``, or ``labels_raster`` (on the scene's grid);
              ``max_labels`` (random subset), ``polygon_samples`` (K random points per
              polygon; default one point inside each).
            - ``checkpoint`` (``tile2vec``: ``embedding`` from tiles around labels; enables
              ``random-encoder``) and/or ``embeddings`` (GeoTIFF sampled at the labels):
              each a path, a list of paths (``"NAME=PATH"`` names one) or a dict
              ``{name: path}``. Several sources are evaluated on the same labels and folds,
              each as its own feature set (``NAME``, ``NAME+bands``,
              ``NAME:random-encoder``; a single unnamed source is ``embedding``) and ranked
              in ``report["ranking"]`` (:mod:`~geoembed.evaluation.sources`,
              :mod:`~geoembed.evaluation.ranking`); with neither, only the baselines
              (``bands``, ``tile-stats``, ``pca``; and ``random-features`` when asked for)
              run.
            - ``features`` (names of :data:`~geoembed.evaluation.config.FEATURE_SETS`;
              default every available one but ``random-features``), ``classifier``
              (``logreg``, ``rf``, ``hgb`` = HistGradientBoosting, or ``both`` = logreg
              and rf),
              ``cv`` (``spatial``, ``random`` or both), ``folds`` (5), ``block_size``
              (spatial block side in pixels, default 4 tiles), ``cv_groups`` (``blocks``,
              ``polygons``: a polygon's pixels and a block's stay in one fold, or ``auto``:
              polygons for vector polygons, else blocks), ``learning_curve_sizes``
              (ints and ``"all"``; empty or ``"none"`` for none), ``repeats`` (5).
            - ``tile_size`` (for ``tile-stats``/``pca`` without a checkpoint; default the
              embedding raster's ``tile_size`` tag, else 50), ``bands`` (1-based; default
              the checkpoint's, else all), ``pca_tiles`` (1000 unlabelled random tiles for the
              PCA and the random features' filters; the first 512 also calibrate the
              random encoder's BatchNorm), ``n_random_features`` (1024, even),
              ``batch_size`` (64), ``seed`` (folds, subsets, random encoder, PCA tiles,
              forests), ``device`` (``auto``), ``allow_no_crs``, ``overwrite``, ``quiet``,
              ``plots`` (write ``learning_curve.png`` and ``confusion.png``).

    Returns:
        :class:`~geoembed.evaluation.report.EvaluationResult` with the report (also in
        ``out/report.json``).

    Raises:
        InputError, LabelError, CRSError, RasterError, CheckpointError, OutputExistsError.
    """
    cfg = dataclasses.replace(config, **options) if config is not None \
        else EvaluateConfig(**options)
    return run_evaluation(scene, out, cfg)


__all__ = ["EvaluateConfig", "EvaluationResult", "evaluate", "run_evaluation"]
