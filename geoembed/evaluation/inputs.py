"""What an evaluation reads: the scene (and the encoder), the labelled pixels and their classes.

:func:`labelled_pixels` turns labels (points, polygons or a label raster) into labelled scene
pixels, samples every embedding raster source at them (dropping, for every source, the labels
that any of them does not cover, so that all sources are evaluated on the same labels), and
encodes the classes; classes with fewer labels than folds are left out of the
cross-validation (reported in ``excluded_classes`` and as a warning). :func:`open_inputs`
opens the scene and every checkpoint source (each with its own band selection).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geoembed.errors import CheckpointError, InputError, LabelError, RasterError
from geoembed.evaluation.config import EvaluateConfig
from geoembed.evaluation.features import sample_embedding_raster
from geoembed.evaluation.sources import Source, named_errors
from geoembed.io.checkpoint import load_checkpoint
from geoembed.io.embeddings import embedding_info
from geoembed.io.labels import (
    PixelLabels,
    encode_classes,
    raster_pixel_labels,
    vector_pixel_labels,
)
from geoembed.io.paths import is_remote
from geoembed.io.scenes import Scene, open_dataset, open_scene


@dataclass
class LabelledPixels:
    """The labels an evaluation cross-validates, and what was dropped on the way.

    Attributes:
        rows, cols: scene pixels of the labels in the CV.
        y: class codes 0..K-1 of those labels, indexing ``cv_classes``.
        cv_classes: the classes in the CV.
        classes, counts: every class found and its label count (before the CV filter).
        in_cv: per class of ``classes``, whether it is in the CV.
        source: what the labels came from (for the report).
        pixels: the labelled pixels as read (counts of input, outside and nodata labels).
        n_kept: labels inside the scene's valid area.
        feature: the input feature (point or polygon) each label came from
            (:attr:`~geoembed.io.labels.PixelLabels.source_index`); for a label raster, each
            pixel its own.
        n_no_embedding: labels dropped because an embedding raster does not cover them.
        sampled: embedding raster values at the labels, per source name.
        embedding_info: per embedding raster source: ``bands``, ``tags``, ``crs`` and
            ``not_covered`` (labels in the scene it does not cover).
    """

    rows: np.ndarray
    cols: np.ndarray
    y: np.ndarray
    cv_classes: list
    classes: list
    counts: np.ndarray
    in_cv: list[bool]
    source: str
    pixels: PixelLabels
    n_kept: int
    feature: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    n_no_embedding: int = 0
    sampled: dict[str, np.ndarray] = field(default_factory=dict)
    embedding_info: dict[str, dict] = field(default_factory=dict)


@dataclass
class OpenedSource:
    """A source ready to use: for a checkpoint, its model and the scene with its bands."""

    source: Source
    model: Any = None
    scene: Scene | None = None


def open_inputs(scene_path: Any, cfg: EvaluateConfig) -> tuple[Scene, list[OpenedSource]]:
    """The scene and the sources. The scene has the first checkpoint's bands when there is
    one (else ``cfg.bands``, else the first embedding raster's ``bands`` tag, else all)."""
    opened = [OpenedSource(s) for s in cfg.sources()]
    for o in opened:
        if o.source.is_checkpoint:
            # torch only when a checkpoint is used: the baselines alone run without it
            from geoembed.inference.embedding import load_embedding_model, open_scene_for

            with named_errors(o.source):
                o.model = load_embedding_model(o.source.path)
                o.scene = open_scene_for(o.model, scene_path, cfg.bands,
                                         allow_no_crs=cfg.allow_no_crs)
    first = next((o.scene for o in opened if o.scene is not None), None)
    if first is not None:
        return first, opened
    bands = cfg.bands
    if bands is None and opened:
        with named_errors(opened[0].source):
            bands = bands_from_tags(opened[0].source.path, scene_path)
    return open_scene(scene_path, bands, allow_no_crs=cfg.allow_no_crs), opened


def bands_from_tags(embeddings: Any, scene_path: Any) -> tuple[int, ...] | None:
    """The scene bands an embedding GeoTIFF was made from (its ``bands`` tag), if usable."""
    embedding_info(embeddings)  # clear errors for a missing file / not a raster
    with open_dataset(embeddings) as ds:
        tag = ds.tags().get("bands")
    if not tag or not (is_remote(scene_path) or os.path.exists(scene_path)):
        return None
    try:
        bands = tuple(int(b) for b in tag.split(","))
        with open_dataset(scene_path) as sc:
            return bands if bands and max(bands) <= sc.count and min(bands) >= 1 else None
    except Exception:
        return None


def tile_from_tags(tags: dict) -> int | None:
    """The tile size an embedding GeoTIFF records in its tags, if any."""
    for key in ("tile_size", "TILE_SIZE", "tile", "geoembed_tile_size"):
        if key in tags:
            try:
                return int(float(tags[key]))
            except ValueError:
                return None
    return None


def load_encoder_config(checkpoint: str | os.PathLike) -> dict:
    """The ``encoder`` config dict of a tile2vec checkpoint."""
    ckpt = load_checkpoint(checkpoint, "tile2vec")
    if "encoder" not in ckpt:
        raise CheckpointError(f"{checkpoint}: no encoder config in the checkpoint")
    return dict(ckpt["encoder"])


def load_pixel_labels(scene: Scene, cfg: EvaluateConfig) -> tuple[PixelLabels, str]:
    """The labelled pixels of ``scene`` from ``cfg.labels`` or ``cfg.labels_raster``."""
    labels, seed, max_labels = cfg.labels, cfg.seed, cfg.max_labels
    if (labels is None) == (cfg.labels_raster is None):
        raise InputError("give exactly one of --labels (vector file) and --labels-raster")
    if labels is None:
        return (raster_pixel_labels(cfg.labels_raster, scene, max_labels=max_labels, seed=seed),
                str(cfg.labels_raster))
    if not cfg.label_column:
        raise InputError("--label-column is needed with --labels")
    px = vector_pixel_labels(labels, scene, cfg.label_column,
                             polygon_samples=cfg.polygon_samples, seed=seed)
    if max_labels is not None and len(px) > max_labels:
        pick = np.sort(np.random.default_rng(seed).choice(len(px), max_labels, replace=False))
        px = dataclasses.replace(px, rows=px.rows[pick], cols=px.cols[pick],
                                 labels=px.labels[pick], source_index=px.source_index[pick])
    return px, str(labels) if isinstance(labels, str | os.PathLike) else "labels"


def keep_cv_classes(codes: np.ndarray, classes: Sequence, folds: int, notes: list[str], *,
                    dropped: str = "left out of the CV"
                    ) -> tuple[np.ndarray, list[int], np.ndarray]:
    """The classes with at least ``folds`` labels (a note names the others, ``dropped``).

    Returns:
        ``(counts, keep, remap)``: label counts per class, the kept class indices, and
        ``remap`` (class index -> its index among the kept classes, -1 when dropped).

    Raises:
        LabelError: fewer than 2 classes are kept.
    """
    counts = np.bincount(codes, minlength=len(classes))
    rare = [i for i, c in enumerate(counts) if c < folds]
    if rare:
        notes.append(f"classes with fewer labels than folds {dropped}: " + ", ".join(
            f"{classes[i]} ({counts[i]})" for i in rare))
    keep = [i for i in range(len(classes)) if i not in rare]
    if len(keep) < 2:
        raise LabelError(f"fewer than 2 classes have at least {folds} labels (counts: "
                         + ", ".join(f"{c}={n}" for c, n in zip(classes, counts, strict=True))
                         + "); add labels or lower --folds")
    remap = np.full(len(classes), -1, np.int64)
    remap[keep] = np.arange(len(keep))
    return counts, keep, remap


def sample_rasters(scene: Scene, sources: list[Source], rows: np.ndarray, cols: np.ndarray,
                   notes: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """Every embedding raster source sampled at the labels: ``({name: values}, covered by
    all, {name: info})``; a label any raster misses is dropped for all of them."""
    values: dict[str, np.ndarray] = {}
    info: dict[str, dict] = {}
    covered = np.ones(len(rows), dtype=bool)
    for s in sources:
        with named_errors(s):
            values[s.name], ok, info[s.name] = sample_embedding_raster(s.path, scene, rows, cols)
        info[s.name]["not_covered"] = int((~ok).sum())
        covered &= ok
    missed = int((~covered).sum())
    if len(sources) > 1 and not covered.any():
        raise RasterError("the embedding rasters " + ", ".join(s.name for s in sources)
                          + f" cover none of the {len(rows)} labels together; give rasters "
                          "of the same area")
    if missed and len(sources) == 1:
        notes.append(f"{missed} labels are outside the embedding raster or on its nodata and "
                     "were dropped")
    elif missed:
        notes.append(f"{missed} labels are outside an embedding raster or on its nodata and "
                     "were dropped for every source (" + ", ".join(
                         f"{n}: {i['not_covered']}" for n, i in info.items()) + ")")
    return {n: v[covered] for n, v in values.items()}, covered, info


def labelled_pixels(scene: Scene, cfg: EvaluateConfig, names: list[str], notes: list[str]
                    ) -> LabelledPixels:
    """Labels -> scene pixels, the embedding rasters sampled at them, classes for the CV."""
    px, source = load_pixel_labels(scene, cfg)
    rows, cols, values = px.rows, px.cols, px.labels
    rasters = [s for s in cfg.sources() if not s.is_checkpoint] \
        if any(n in names for n in ("embedding", "embedding+bands")) else []
    sampled, covered, info = sample_rasters(scene, rasters, rows, cols, notes)
    n_no_embedding = int((~covered).sum())
    rows, cols, values = rows[covered], cols[covered], values[covered]
    feature = px.source_index[covered]
    codes, classes = encode_classes(values, source)
    counts, keep, remap = keep_cv_classes(codes, classes, cfg.folds, notes)
    use = remap[codes] >= 0
    return LabelledPixels(
        rows=rows[use], cols=cols[use], y=remap[codes[use]],
        cv_classes=[classes[i] for i in keep], classes=classes, counts=counts,
        in_cv=[i in keep for i in range(len(classes))], source=source, pixels=px,
        n_kept=len(px), feature=feature[use], n_no_embedding=n_no_embedding,
        sampled={k: v[use] for k, v in sampled.items()}, embedding_info=info)


__all__ = ["LabelledPixels", "OpenedSource", "bands_from_tags", "keep_cv_classes",
           "labelled_pixels",
           "load_encoder_config", "load_pixel_labels", "open_inputs", "sample_rasters",
           "tile_from_tags"]
