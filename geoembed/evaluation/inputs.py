"""What an evaluation reads: the scene (and the encoder), the labelled pixels and their classes.

:func:`labelled_pixels` turns labels (points, polygons or a label raster) into labelled scene
pixels, samples an embedding GeoTIFF at them when one is given (dropping the labels it does
not cover), and encodes the classes; classes with fewer labels than folds are left out of the
cross-validation (reported in ``excluded_classes`` and as a warning).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geoembed.errors import CheckpointError, InputError, LabelError
from geoembed.evaluation.config import EvaluateConfig
from geoembed.evaluation.features import sample_embedding_raster
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
        n_no_embedding: labels dropped because the embedding raster does not cover them.
        sampled: feature sets read at the labels (``embedding`` from an embedding raster).
        embedding_info: ``bands``, ``tags``, ``crs`` of the embedding raster, if one was given.
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
    n_no_embedding: int = 0
    sampled: dict[str, np.ndarray] = field(default_factory=dict)
    embedding_info: dict = field(default_factory=dict)


def open_inputs(scene_path: Any, cfg: EvaluateConfig) -> tuple[Scene, Any]:
    """The scene (with the checkpoint's bands when there is one) and the embedding model."""
    if cfg.checkpoint is not None and cfg.embeddings is not None:
        raise InputError("give either --checkpoint or --embeddings, not both")
    if cfg.checkpoint is not None:
        # torch only when a checkpoint is used: the baselines alone run without it
        from geoembed.inference.embedding import load_embedding_model, open_scene_for

        em = load_embedding_model(cfg.checkpoint)
        return open_scene_for(em, scene_path, cfg.bands, allow_no_crs=cfg.allow_no_crs), em
    bands = cfg.bands
    if bands is None and cfg.embeddings is not None:
        bands = bands_from_tags(cfg.embeddings, scene_path)
    return open_scene(scene_path, bands, allow_no_crs=cfg.allow_no_crs), None


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
        px = PixelLabels(px.rows[pick], px.cols[pick], px.labels[pick], n_input=px.n_input,
                         n_outside=px.n_outside, n_nodata=px.n_nodata,
                         source_index=px.source_index[pick])
    return px, str(labels) if isinstance(labels, str | os.PathLike) else "labels"


def _cv_classes(codes: np.ndarray, classes: list, folds: int, notes: list[str]
                ) -> tuple[np.ndarray, list[int]]:
    """Label counts per class and the classes with at least ``folds`` labels."""
    counts = np.bincount(codes, minlength=len(classes))
    rare = [i for i, c in enumerate(counts) if c < folds]
    if rare:
        notes.append("classes with fewer labels than folds left out of the CV: " + ", ".join(
            f"{classes[i]} ({counts[i]})" for i in rare))
    keep = [i for i in range(len(classes)) if i not in rare]
    if len(keep) < 2:
        raise LabelError(f"fewer than 2 classes have at least {folds} labels (counts: "
                         + ", ".join(f"{c}={n}" for c, n in zip(classes, counts, strict=True))
                         + "); add labels or lower --folds")
    return counts, keep


def labelled_pixels(scene: Scene, cfg: EvaluateConfig, names: list[str], notes: list[str]
                    ) -> LabelledPixels:
    """Labels -> scene pixels, the embedding raster sampled at them, classes for the CV."""
    px, source = load_pixel_labels(scene, cfg)
    rows, cols, values = px.rows, px.cols, px.labels
    sampled: dict[str, np.ndarray] = {}
    n_no_embedding, info = 0, {}
    if cfg.embeddings is not None and cfg.checkpoint is None and \
            any(n in names for n in ("embedding", "embedding+bands")):
        emb, covered, info = sample_embedding_raster(cfg.embeddings, scene, rows, cols)
        n_no_embedding = int((~covered).sum())
        if n_no_embedding:
            notes.append(f"{n_no_embedding} labels are outside the embedding raster or on its "
                         "nodata and were dropped")
        rows, cols, values = rows[covered], cols[covered], values[covered]
        sampled["embedding"] = emb[covered]
    codes, classes = encode_classes(values, source)
    counts, keep = _cv_classes(codes, classes, cfg.folds, notes)
    use = np.isin(codes, keep)
    remap = np.full(len(classes), -1, np.int64)
    remap[keep] = np.arange(len(keep))
    return LabelledPixels(
        rows=rows[use], cols=cols[use], y=remap[codes[use]],
        cv_classes=[classes[i] for i in keep], classes=classes, counts=counts,
        in_cv=[i in keep for i in range(len(classes))], source=source, pixels=px,
        n_kept=len(px), n_no_embedding=n_no_embedding,
        sampled={k: v[use] for k, v in sampled.items()}, embedding_info=info)


__all__ = ["LabelledPixels", "bands_from_tags", "labelled_pixels", "load_encoder_config",
           "load_pixel_labels", "open_inputs", "tile_from_tags"]
