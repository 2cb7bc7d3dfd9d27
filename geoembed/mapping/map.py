"""``geoembed map``: fit a classifier on labels and classify the whole scene into a class map.

:func:`map` reads the labels like ``evaluate`` (:func:`geoembed.evaluation.inputs.
labelled_pixels`), computes features at the label pixels with the code path the map uses
(:class:`~geoembed.mapping.features.PixelFeatures`), estimates the chosen classifier's
accuracy by spatial cross-validation (``evaluate``'s folds and scores), fits it on every
label, classifies the output grid block row by block row (:mod:`~geoembed.mapping.predict`)
and writes the class map, optional probability / confidence rasters and ``map.json``. The
fitted classifier is not saved.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from geoembed import __version__
from geoembed.errors import InputError
from geoembed.evaluation.classifiers import cross_val_predict, make_classifier
from geoembed.evaluation.config import EvaluateConfig
from geoembed.evaluation.folds import cv_groups, make_folds, resolve_cv_groups
from geoembed.evaluation.inputs import keep_cv_classes, labelled_pixels
from geoembed.evaluation.verdict import embedding_verdict
from geoembed.io.classmap import qml_path
from geoembed.io.inputs import Shard
from geoembed.io.outputs import check_output
from geoembed.mapping.config import MapConfig
from geoembed.mapping.grid import OutputGrid, choose_stride, row_areas_ha
from geoembed.mapping.predict import predict_map, predict_proba
from geoembed.mapping.prepare import build_features, open_scene_and_model, open_sources, tile_size
from geoembed.mapping.sources import RasterSource
from geoembed.mapping.summary import class_table, json_value, options, summary_text, write_report
from geoembed.metrics import scores

ESTIMATE_PIXELS = 256
"""Output pixels computed and classified to estimate a map's time before it starts."""
BASELINES = ("bands", "tile-stats")
"""No-training feature sets the map's embedding is compared with (cheap at the labels)."""

Log = Callable[[str], None]


@dataclass
class MapRun:
    """What :func:`map` produced: the report (also in map.json), the paths and warnings."""

    report: dict
    map_path: Path
    json_path: Path
    warnings: list[str] = field(default_factory=list)
    status: str = "written"
    """``written``; ``skipped`` when a rerun found the map complete (``report`` read back from
    its JSON); ``failed`` for a scene of a batch whose labels make no map (``error`` says
    why, ``report`` is empty)."""
    error: str | None = None

    def summary(self) -> str:
        return summary_text(self.report)


def output_paths(out: str | os.PathLike, cfg: MapConfig) -> dict[str, Path]:
    """Every file a map writes, checked before any work (``--overwrite`` policy)."""
    paths = map_paths(out, cfg)
    for p in paths.values():
        check_output(p, cfg.overwrite)
    return paths


def map_paths(out: str | os.PathLike, cfg: MapConfig) -> dict[str, Path]:
    """Every file a map writes: ``map`` first, then ``json``, ``qml``, and the optional
    ``probabilities``, ``confidence`` and ``confusion`` (with a reference).

    Raises:
        InputError: a ``.json`` map name, or two outputs that are one file.
    """
    out = Path(out)
    paths = {"map": out, "json": out.with_suffix(".json"), "qml": qml_path(out)}
    if cfg.probabilities is not None:
        paths["probabilities"] = Path(cfg.probabilities)
    if cfg.confidence is not None:
        paths["confidence"] = Path(cfg.confidence)
    if cfg.reference is not None:
        paths["confusion"] = out.with_name(out.stem + "_confusion.png")
    if out.suffix.lower() == ".json":
        raise InputError(f"{out}: give the map a raster name such as map.tif")
    resolved = [p.resolve() for p in paths.values()]
    if len(set(resolved)) != len(resolved):
        raise InputError("--out, --probabilities and --confidence must be different files")
    return paths


def _keep_classes(y: np.ndarray, names: list, folds: int, notes: list[str]
                  ) -> tuple[np.ndarray, np.ndarray, list]:
    """Labels of classes with at least ``folds`` labels (others dropped with a note):
    ``(used, their new codes, the kept names)``."""
    _, keep, remap = keep_cv_classes(y, names, folds, notes, dropped="are not mapped")
    use = remap[y] >= 0
    return use, remap[y[use]], [names[i] for i in keep]


def _label_config(cfg: MapConfig) -> EvaluateConfig:
    """The label options as ``evaluate`` takes them."""
    return EvaluateConfig(labels=cfg.labels, label_column=cfg.label_column,
                          labels_raster=cfg.labels_raster, max_labels=cfg.max_labels,
                          polygon_samples=cfg.polygon_samples, folds=cfg.folds, seed=cfg.seed,
                          learning_curve_sizes=(), quiet=True, plots=False)


def _fit(x: np.ndarray, y: np.ndarray, cfg: MapConfig) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_classifier(cfg.classifier, cfg.seed).fit(x, y)


def _seconds_per_pixel(feats: Any, grid: OutputGrid, model: Any) -> float:
    """Seconds to compute and classify one output pixel, timed on up to
    :data:`ESTIMATE_PIXELS` pixels of a middle output row block (the time estimate printed
    before the map; labels are scattered, so their per-label time says little)."""
    row0 = grid.height // 2
    rows, cols = grid.centre_pixels(row0, min(grid.height, row0 + 1 + ESTIMATE_PIXELS
                                              // max(grid.width, 1)))
    rows, cols = rows[:ESTIMATE_PIXELS], cols[:ESTIMATE_PIXELS]
    start = time.perf_counter()
    x, ok = feats.compute(rows, cols)
    if ok.any():
        predict_proba(model, x[ok])
    return (time.perf_counter() - start) / max(len(rows), 1)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def default_log(cfg: MapConfig) -> Log:
    """Notes to stderr above the progress bars (nothing when ``cfg.quiet``)."""
    def log(msg: str) -> None:
        if not cfg.quiet:
            tqdm.write(msg, file=sys.stderr)
    return log


def run_map(scene: str | os.PathLike, out: str | os.PathLike, cfg: MapConfig,
            log: Log | None = None, *, tags: dict[str, Any] | None = None) -> MapRun:
    """One scene's map with its options in a :class:`MapConfig`; ``log`` gets progress
    notes; ``tags`` are added to the class map's (a batch's checkpoint and options digest)."""
    log = log or default_log(cfg)
    paths = output_paths(out, cfg)
    notes: list[str] = []
    scn, em = open_scene_and_model(scene, cfg)
    sources: list = []
    try:
        sources = open_sources(scn, cfg)
        if cfg.reference is not None:  # a reference without CRS or elsewhere: before the work
            RasterSource(cfg.reference, scn, what="reference raster").close()
        return _run(scene, scn, em, sources, paths, cfg, log, notes, tags or {})
    finally:
        for s in sources:
            s.close()
        scn.close()


def _run(scene_path: Any, scn: Any, em: Any, sources: list, paths: dict[str, Path],
         cfg: MapConfig, log: Log, notes: list[str], extra_tags: dict[str, Any]) -> MapRun:
    tile = tile_size(cfg, em)
    lab = labelled_pixels(scn, _label_config(cfg), [], notes)
    how = resolve_cv_groups(cfg.cv_groups, lab.pixels.geometry)  # before the long work
    feats = build_features(scn, em, sources, cfg, tile)
    stride, why = choose_stride(cfg, scn.width, scn.height, scn.transform, tile)
    grid = OutputGrid(scn.width, scn.height, scn.transform, scn.crs, stride)
    row_areas = row_areas_ha(grid)  # a CRS problem is reported before the long work

    x, ok = feats.compute(lab.rows, lab.cols)
    if not ok.all():
        notes.append(f"{int((~ok).sum())} labels have no valid features (an embedding raster "
                     "does not cover them or is nodata there) and were dropped")
    use, y, names = _keep_classes(lab.y[ok], lab.cv_classes, cfg.folds, notes)
    x, rows, cols = x[ok][use], lab.rows[ok][use], lab.cols[ok][use]
    feature = lab.feature[ok][use]
    for n in notes:
        log(f"Warning: {n}")

    block = int(cfg.block_size) if cfg.block_size is not None else 4 * tile
    groups = cv_groups(rows, cols, block, how, feature)
    fold, n_folds, fold_notes = make_folds(y, "spatial", cfg.folds, seed=cfg.seed,
                                           groups=groups, grouping=how)
    notes.extend(fold_notes)
    with threadpool_limits(limits=1):
        pred = cross_val_predict(x, y, fold, cfg.classifier, cfg.seed)
    cv = {"scheme": "spatial", "folds": n_folds, "block_size": block, "groups": how,
          "n_groups": int(len(np.unique(groups))),
          **scores(y, pred, [str(c) for c in names])}
    verdict = None
    if "embedding" in feats.names:
        verdict = _baseline_verdict(scn, cfg, tile, (rows, cols, y, fold, len(names)),
                                    feats.names, cv)
    model = _fit(x, y, cfg)

    n_out = grid.width * grid.height
    per_pixel = _seconds_per_pixel(feats, grid, model)
    what = "windows" if feats.needs_tiles else "pixels"
    log(f"map: {grid.width} x {grid.height} output px at stride {stride} ({why}): {n_out} "
        f"{what} to compute and classify, about {_duration(per_pixel * n_out)} "
        f"({1000 * per_pixel:.2f} ms per output pixel, timed on a sample of the map)")
    str_names = [str(c) for c in names]
    tags = {"geoembed_version": __version__, "geoembed_product": "class_map",
            "classifier": cfg.classifier, "features": ",".join(feats.names),
            "stride": stride, "source": scn.name, **extra_tags}
    res = predict_map(feats, grid, model, str_names, paths["map"],
                      probabilities=paths.get("probabilities"),
                      confidence=paths.get("confidence"), row_areas=row_areas, tags=tags,
                      overwrite=cfg.overwrite, quiet=cfg.quiet)
    label_counts = np.bincount(y, minlength=len(names))
    report = {
        "geoembed_version": __version__,
        "scene": str(scene_path),
        "map": str(paths["map"]),
        "probabilities": json_value(paths.get("probabilities")),
        "confidence": json_value(paths.get("confidence")),
        "classifier": cfg.classifier,
        "classes": class_table(str_names, names, label_counts, res.pixels, res.area_ha),
        "nodata": {"pixels": res.nodata_pixels},
        "area": _area_note(grid, res.area_ha),
        "labels": {"source": lab.source, "input": lab.pixels.n_input,
                   "outside": lab.pixels.n_outside, "on_nodata": lab.pixels.n_nodata,
                   "no_features": int((~ok).sum()), "used": int(len(y)),
                   "classes_found": [json_value(c) for c in lab.classes]},
        "cv": cv,
        "verdict": verdict,
        "features": feats.describe(),
        "grid": {**grid.describe(), "stride_reason": why, "scene_width": scn.width,
                 "scene_height": scn.height},
        "timing": {"estimated_seconds_per_pixel": per_pixel, "map_seconds": res.seconds},
        "options": options(cfg),
        "notes": notes,
    }
    if cfg.reference is not None:
        report["reference"] = _score_reference(paths, str_names, cfg, notes)
    write_report(paths["json"], report, cfg.overwrite)
    return MapRun(report=report, map_path=paths["map"], json_path=paths["json"],
                  warnings=notes)


def _baseline_verdict(scn: Any, cfg: MapConfig, tile: int,
                      labels: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
                      used: list[str], cv: dict) -> dict | None:
    """The map's features against the no-training baselines ``bands`` and ``tile-stats``,
    on the same labels and folds (:func:`geoembed.evaluation.verdict.embedding_verdict`)."""
    rows, cols, y, fold, n_classes = labels
    chosen = "+".join(used)
    results = [{"features": chosen, "classifier": cfg.classifier, "cv": "spatial",
                "macro_f1": cv["macro_f1"], "accuracy": cv["accuracy"]}]
    base_cfg = dataclasses.replace(cfg, checkpoint=None, embeddings=(), features=BASELINES)
    pf = build_features(scn, None, [], base_cfg, tile)
    x_all, ok = pf.compute(rows, cols)  # one read of the labels' cells for both baselines
    if not ok.all():
        return embedding_verdict(results, [chosen], "spatial")
    for name, columns in pf.columns().items():
        with threadpool_limits(limits=1):
            pred = cross_val_predict(x_all[:, columns], y, fold, cfg.classifier, cfg.seed)
        results.append({"features": name, "classifier": cfg.classifier, "cv": "spatial",
                         **{k: v for k, v in scores(y, pred, range(n_classes)).items()
                            if k in ("accuracy", "macro_f1")}})
    return embedding_verdict(results, [chosen], "spatial")


def _area_note(grid: OutputGrid, area: np.ndarray | None) -> dict:
    if area is None:
        return {"unit": "ha", "total": None, "method": "no CRS: areas unknown"}
    geographic = grid.crs is not None and grid.crs.is_geographic
    return {"unit": "ha", "total": float(area.sum()),
            "method": "geodesic area of each row's pixels" if geographic
            else "pixel area from the transform",
            "note": "mapped pixels counted whole (blocks on the scene's right/bottom edge "
                    "may reach past it)" if grid.stride > 1 else ""}


def _score_reference(paths: dict[str, Path], names: list[str], cfg: MapConfig,
                     notes: list[str]) -> dict:
    """Score the written map against ``cfg.reference`` (:func:`geoembed.mapping.reference.
    score_map`): integer labels match the reference's codes, other labels its class names
    (``CLASS_<code>`` tags). If scoring fails, the map's files are removed."""
    from geoembed.mapping.reference import score_map

    codes = None
    if all(n.lstrip("-").isdigit() for n in names):
        codes = {int(n): n for n in names}
    try:
        score = score_map(paths["map"], cfg.reference, class_names=names,
                          reference_names=codes, seed=cfg.seed,
                          confusion_png=paths["confusion"], overwrite=cfg.overwrite)
    except BaseException:
        for key in ("map", "qml", "probabilities", "confidence", "confusion"):
            if key in paths:
                paths[key].unlink(missing_ok=True)
        raise
    notes.extend(score.notes)
    return {"path": str(cfg.reference), "confusion_png": str(paths["confusion"]),
            "matched_by": "code" if codes else "name", **score.to_dict()}


def map(scene: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike, *,
        config: MapConfig | None = None, shard: Shard | None = None, log: Log | None = None,
        **options: Any) -> MapRun | list[MapRun] | None:
    """Classify whole scenes from labels: class maps, their accuracy estimates and areas.

    Several scenes (or a directory ``out``) make a batch run
    (:func:`geoembed.mapping.many.run_maps`): one classifier per scene on the labels inside
    it, maps named ``<scene stem>_map.tif`` in ``out``, sharded, resumable, with a manifest.

    Args:
        scene: the raster the labels are on, or a sequence of rasters.
        out: the class map (a COG of class codes 0..K-1 with a colour table, names and a
            ``.qml`` sidecar); ``map.json`` (same name, ``.json``) is written next to it.
        config: the options as a :class:`~geoembed.mapping.config.MapConfig`; keyword
            ``options`` override its fields.
        **options: any field of :class:`MapConfig`:

            - labels as in ``evaluate``: ``labels`` (vector path or GeoDataFrame, any CRS)
              with ``label_column``, or ``labels_raster``; ``max_labels``,
              ``polygon_samples``.
            - features: ``checkpoint`` (a tile2vec encoder on the tile centred on each
              pixel), ``embeddings`` (embedding rasters on any grid / CRS), ``features``
              (``embedding`` = every checkpoint / raster source, implied when one is
              given; ``bands``, ``tile-stats``, ``random-features``, ``pca``,
              ``embedding+bands``; default ``bands`` when nothing is given),
              ``tile_size``, ``bands``, ``n_random_features``, ``pca_tiles``.
            - ``classifier`` (``logreg``, ``rf``, ``hgb``), ``folds``, ``block_size``
              (spatial CV blocks, default 4 tiles), ``cv_groups`` (as in ``evaluate``:
              ``blocks``, ``polygons`` or ``auto``), ``seed``.
            - grid: ``stride`` or ``resolution`` (CRS units, rounded to a whole stride);
              default the full grid, or ``tile // 5`` for window-based features on scenes
              over 512 x 512 pixels.
            - outputs: ``probabilities``, ``confidence`` (paths), ``reference``,
              ``overwrite``, ``quiet``, ``device``, ``batch_size``, ``allow_no_crs``.

        shard: map only this shard's scenes (index mod count); None: all.
        log: called with progress notes (default: stderr unless ``quiet``).

    Returns:
        For one scene given as a path, its :class:`MapRun` with the report (also in
        map.json); None when ``shard`` does not take it. For a sequence, the shard's runs in
        order.

    Raises:
        InputError, LabelError, CRSError, RasterError, CheckpointError, OutputExistsError.
    """
    # imported here: geoembed.mapping.many builds on this module
    from geoembed.mapping.many import run_maps

    cfg = dataclasses.replace(config, **options) if config is not None else MapConfig(**options)
    runs = run_maps(scene, out, cfg, shard=shard, log=log)
    if isinstance(scene, str | os.PathLike):
        return runs[0] if runs else None
    return runs


__all__ = ["MapConfig", "MapRun", "default_log", "map", "map_paths", "output_paths", "run_map"]
