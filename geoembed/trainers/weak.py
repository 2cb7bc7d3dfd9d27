"""Weakly supervised U-Nets (Wang et al. 2020): training from image-level, single-pixel or
dense labels, and the CAM threshold.

:func:`weak_train` is the Python API behind ``geoembed weak train`` (``geoembed.weak_train``).
It prepares the labels (:mod:`~geoembed.trainers.weak_labels`), builds a
:class:`~geoembed.models.unet_cam.WeakUNet` and runs the shared loop
:func:`geoembed.trainers.fit.fit` (device, bf16 AMP on CUDA, DDP under torchrun, checkpoint
every epoch, ``resume``, metrics.csv, loss.png) with the steps of
:mod:`~geoembed.trainers.weak_steps`. Its options are one
:class:`~geoembed.trainers.weak_config.WeakTrainConfig`.

Label types:
    * ``image``: polygons whose label column gives the class of the tile they cover; each
      polygon's bounding window (whole pixels, in the scene's CRS) is one training image,
      resampled to the tile size when it differs. Loss on the pooled CAM logits: BCE with
      positives re-weighted by class balance (binary) or cross-entropy (K classes). After
      training, the CAM threshold is chosen on the training images
      (:mod:`~geoembed.trainers.weak_threshold`).
    * ``pixel``: points; each epoch every point sits at a random position of its tile; the
      loss is taken at labelled pixels only (every labelled point inside the tile).
    * ``dense``: a label raster on the scene's grid (full supervision, the upper bound);
      tiles with labels, jittered each epoch; the loss is taken at every labelled pixel.

The checkpoint (kind ``"weak"``) holds, besides what ``fit`` adds: ``model`` (the
:func:`~geoembed.models.unet_cam.weak_model_config` dict), ``label_type``, ``class_names``
(output value ``i`` is ``class_names[i]``), ``class_values`` (the label values of each class,
as strings; for a one-vs-rest model class 1 holds the ``positive`` values), ``positive``,
``threshold`` (binary CAM models: the CAM logit threshold; else None),
``threshold_accuracy``, ``pos_weight``, ``bands``, ``band_stats``, ``tile_size``,
``scenes``, ``labels`` (source, column, counts) and ``world_size``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from geoembed.devices import resolve_device
from geoembed.errors import InputError
from geoembed.io.checkpoint import load_checkpoint, save_checkpoint
from geoembed.io.scenes import BandStats, Scene, band_statistics, open_scenes
from geoembed.models.unet_cam import build_weak_model, weak_model_config
from geoembed.trainers.fit import FitConfig, FitResult, fit, seed_everything
from geoembed.trainers.rundir import check_run_dir, clear_run, is_main_process
from geoembed.trainers.weak_config import DEFAULT_EPOCHS, WeakTrainConfig
from geoembed.trainers.weak_labels import (
    PreparedLabels,
    prepare_dense_labels,
    prepare_image_labels,
    prepare_pixel_labels,
)
from geoembed.trainers.weak_steps import ImageStep, PixelStep
from geoembed.trainers.weak_threshold import cam_training_scores, search_threshold

KIND = "weak"
__all__ = ["DEFAULT_EPOCHS", "KIND", "WeakTrainConfig", "WeakTrainResult", "weak_train"]


@dataclass
class WeakTrainResult:
    """What :func:`weak_train` did."""

    checkpoint: Path
    history: list[dict[str, float]]
    label_type: str
    class_names: list[str]
    n_labels: int
    n_input: int
    n_outside: int
    n_nodata: int
    n_unused: int
    threshold: float | None = None
    threshold_accuracy: float | None = None
    extra: dict = field(default_factory=dict)


def weak_train(scenes: str | os.PathLike | Sequence[str | os.PathLike], labels: Any,
               out: str | os.PathLike, config: WeakTrainConfig | None = None,
               **options: Any) -> WeakTrainResult:
    """Train a U-Net segmenter from image-level, single-pixel or dense labels.

    Args:
        scenes: one or more rasters (same bands).
        labels: ``image`` / ``pixel``: a vector file (any format and CRS) or GeoDataFrame;
            ``dense``: a label raster on the scene's grid (a list: one per scene).
        out: run directory (checkpoint.pt, metrics.csv, loss.png).
        config: the options (:class:`WeakTrainConfig`; default: its defaults).
        **options: :class:`WeakTrainConfig` fields overriding ``config``'s, e.g.
            ``label_type="pixel", label_column="crop", epochs=10`` (``epochs`` default:
            :data:`DEFAULT_EPOCHS` of the label type).

    Returns:
        :class:`WeakTrainResult` (the checkpoint path, history, classes, label counts and,
        for binary image labels, the CAM threshold and its training image accuracy).

    Raises:
        LabelError, InputError, RasterError, CRSError, CheckpointError, OutputExistsError,
        DeviceError.
    """
    cfg = replace(config or WeakTrainConfig(), **options)
    cfg.validate()
    out = Path(out)
    scene_list = _open_run(scenes, out, cfg)
    stats = band_statistics(scene_list, seed=cfg.seed)
    prepared = _prepare_labels(scene_list, labels, stats, cfg)
    enc = prepared.encoding
    pos_weight = None
    if cfg.label_type == "image" and enc.n_classes == 2:
        n_pos = int((prepared.codes == 1).sum())
        pos_weight = float((len(prepared.codes) - n_pos) / max(n_pos, 1))
    model_config = weak_model_config(
        scene_list[0].count, enc.n_classes, cfg.label_type, encoder=cfg.encoder,
        encoder_depth=cfg.encoder_depth, decoder_channels=cfg.decoder_channels)
    seed_everything(cfg.seed)
    model = build_weak_model(model_config)
    source = _label_source(labels)
    payload = _payload(cfg, scene_list, stats, prepared, model_config, source, pos_weight)
    stored = cfg.checkpoint_options(
        labels=source, positive=enc.positive, decoder_channels=model_config["decoder_channels"],
        bands=list(scene_list[0].bands), scenes=[s.path for s in scene_list])
    step = ImageStep(pos_weight) if cfg.label_type == "image" else PixelStep()
    result = fit(model, prepared.dataset, step, out_dir=out, kind=KIND, payload=payload,
                 options=stored, config=_fit_config(cfg))
    threshold = accuracy = None
    if cfg.label_type == "image" and enc.n_classes == 2 and is_main_process():
        threshold, accuracy = _store_threshold(result, prepared, cfg)
    return WeakTrainResult(
        checkpoint=result.checkpoint, history=result.history, label_type=cfg.label_type,
        class_names=enc.names, n_labels=prepared.n_labels, n_input=prepared.n_input,
        n_outside=prepared.n_outside, n_nodata=prepared.n_nodata, n_unused=prepared.n_unused,
        threshold=threshold, threshold_accuracy=accuracy, extra=prepared.extra)


def _fit_config(cfg: WeakTrainConfig) -> FitConfig:
    """The fit loop's share of the options."""
    return FitConfig(epochs=cfg.n_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                     workers=cfg.workers, seed=cfg.seed, device=cfg.device, amp=cfg.amp,
                     resume=cfg.resume, quiet=cfg.quiet, throughput_name="tiles_per_s")


def _open_run(scenes: str | os.PathLike | Sequence[str | os.PathLike], out: Path,
              cfg: WeakTrainConfig) -> list[Scene]:
    """Open the scenes, check the tile fits them, prepare the run directory and device."""
    paths = [scenes] if isinstance(scenes, str | os.PathLike) else list(scenes)
    scene_list = open_scenes(paths, cfg.bands, allow_no_crs=cfg.allow_no_crs)
    for s in scene_list:
        if cfg.tile_size > min(s.width, s.height):
            raise InputError(f"--tile-size {cfg.tile_size} is larger than {s.name} "
                             f"({s.width}x{s.height} px)")
    check_run_dir(out, cfg.resume, cfg.overwrite)
    if cfg.overwrite:
        clear_run(out)
    resolve_device(cfg.device)  # fail early on an absent device
    return scene_list


def _prepare_labels(scenes: list[Scene], labels: Any, stats: BandStats,
                    cfg: WeakTrainConfig) -> PreparedLabels:
    common = {"tile": cfg.tile_size, "stats": stats, "positive": cfg.positive,
              "max_labels": cfg.max_labels, "seed": cfg.seed}
    if cfg.label_type == "image":
        return prepare_image_labels(scenes, labels, cfg.label_column, **common)
    if cfg.label_type == "pixel":
        return prepare_pixel_labels(scenes, labels, cfg.label_column, **common)
    return prepare_dense_labels(scenes, labels, **common)


def _label_source(labels: Any) -> str | list[str]:
    """Where the labels came from, as stored in the checkpoint."""
    if isinstance(labels, str | os.PathLike):
        return str(labels)
    if isinstance(labels, list | tuple):
        return [str(p) for p in labels]
    return "GeoDataFrame"


def _payload(cfg: WeakTrainConfig, scenes: list[Scene], stats: BandStats,
             prepared: PreparedLabels, model_config: dict[str, Any],
             source: str | list[str], pos_weight: float | None) -> dict[str, Any]:
    """What makes a ``weak`` checkpoint self-contained (see the module docstring)."""
    enc = prepared.encoding
    return {
        "model": model_config,
        "label_type": cfg.label_type,
        "class_names": enc.names,
        "class_values": enc.values,
        "positive": enc.positive,
        "threshold": None,
        "threshold_accuracy": None,
        "pos_weight": pos_weight,
        "bands": list(scenes[0].bands),
        "band_stats": stats.to_dict(),
        "tile_size": int(cfg.tile_size),
        "scenes": [s.path for s in scenes],
        "labels": {"source": source, "column": cfg.label_column,
                   "n_labels": prepared.n_labels, "n_input": prepared.n_input,
                   "n_outside": prepared.n_outside, "n_nodata": prepared.n_nodata,
                   "n_unused": prepared.n_unused},
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }


def _store_threshold(result: FitResult, prepared: PreparedLabels,
                     cfg: WeakTrainConfig) -> tuple[float, float]:
    """Choose the CAM threshold on the training images and add it to the checkpoint."""
    device = next(result.model.parameters()).device
    scores = cam_training_scores(result.model, prepared.dataset, batch_size=cfg.batch_size,
                                 device=device, quiet=cfg.quiet)
    threshold, accuracy = search_threshold(scores, prepared.codes)
    ckpt = load_checkpoint(result.checkpoint, kind=KIND)
    ckpt.update(threshold=threshold, threshold_accuracy=accuracy)
    save_checkpoint(result.checkpoint, ckpt, kind=KIND)
    return threshold, accuracy
