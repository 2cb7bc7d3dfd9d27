"""Weakly supervised U-Nets (Wang et al. 2020): training from image-level, single-pixel or
dense labels, and the CAM threshold.

:func:`weak_train` is the Python API behind ``geoembed weak train`` (``geoembed.weak_train``).
It prepares the labels, builds a :class:`~geoembed.models.unet_cam.WeakUNet` and runs the
shared loop :func:`geoembed.trainers.fit.fit` (device, bf16 AMP on CUDA, DDP under torchrun,
checkpoint every epoch, ``resume``, metrics.csv, loss.png).

Label types:
    * ``image``: polygons whose label column gives the class of the tile they cover; each
      polygon's bounding window (whole pixels, in the scene's CRS) is one training image,
      resampled to the tile size when it differs. Loss on the pooled CAM logits: BCE with
      positives re-weighted by class balance (binary) or cross-entropy (K classes). After
      training, the CAM threshold is chosen on the training images (:func:`search_threshold`).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn

from geoembed.datasets.weak import (
    DenseSource,
    DenseTiles,
    ImageTiles,
    PointTiles,
    dense_candidates,
)
from geoembed.devices import resolve_device
from geoembed.errors import InputError, LabelError
from geoembed.inference.segmentation import value_key
from geoembed.io.checkpoint import load_checkpoint, save_checkpoint
from geoembed.io.labels import (
    read_vector,
    require_column,
    to_crs,
    vector_pixel_labels,
)
from geoembed.io.scenes import BandStats, Scene, band_statistics, open_scene, open_scenes
from geoembed.losses import cam_image_loss, masked_pixel_correct, masked_pixel_loss
from geoembed.models.unet_cam import (
    DEFAULT_DEPTH,
    DEFAULT_ENCODER,
    LABEL_TYPES,
    build_weak_model,
    weak_model_config,
)
from geoembed.trainers.fit import (
    StepOutput,
    check_run_dir,
    clear_run,
    fit,
    is_main_process,
    seed_everything,
)

KIND = "weak"
DEFAULT_TILE_SIZE = 50
#: Default epochs per label type. The paper trained 200 (image) / 50 (pixel) epochs on a
#: GPU; these are CPU-sized defaults (raise them on a GPU). A pixel epoch visits each point
#: once, an image epoch each labelled tile once, a dense epoch each labelled tile once.
DEFAULT_EPOCHS = {"image": 60, "pixel": 60, "dense": 20}
#: A training image needs at least this fraction of valid (not nodata) pixels.
MIN_VALID_FRACTION = 0.5
#: Most classes a uint8 class map can hold (255 is nodata).
MAX_CLASSES = 255


# ---------------------------------------------------------------------------------------------
# Class encoding
# ---------------------------------------------------------------------------------------------

@dataclass
class ClassEncoding:
    """How label values become class codes ``0..K-1`` (the values of the output class map)."""

    names: list[str]
    values: list[list[str]]          # label values (keys) of each class
    positive: list[str] | None = None

    @property
    def n_classes(self) -> int:
        return len(self.names)

    def encode(self, raw: Sequence[Any]) -> np.ndarray:
        """Codes of label values; values of no class -> -1."""
        lookup = {v: i for i, vals in enumerate(self.values) for v in vals}
        if self.positive is not None:
            return np.array([int(value_key(v) in self.positive) for v in raw], dtype=np.int64)
        return np.array([lookup.get(value_key(v), -1) for v in raw], dtype=np.int64)


def class_encoding(values: Sequence[Any], positive: Sequence[Any] | str | None,
                   source: str = "labels") -> ClassEncoding:
    """Classes from the distinct label values; ``positive`` makes a one-vs-rest binary model.

    Raises:
        LabelError: fewer than two classes (or no / every label positive), too many classes.
    """
    distinct = sorted(set(values), key=lambda v: (not isinstance(v, int | float | np.number),
                                                  v if isinstance(v, int | float | np.number)
                                                  else str(v)))
    keys = list(dict.fromkeys(value_key(v) for v in distinct))
    if positive is not None:
        pos = [value_key(p) for p in ([positive] if isinstance(positive, str | int | float)
                                      else positive)]
        is_pos = [k in pos for k in keys]
        if not any(is_pos):
            raise LabelError(f"{source}: no label equals --positive {','.join(pos)} "
                             f"(label values: {', '.join(keys[:20])})")
        if all(is_pos):
            raise LabelError(f"{source}: every label is positive (--positive "
                             f"{','.join(pos)}); a one-vs-rest model needs negatives too")
        name = ",".join(pos)
        return ClassEncoding([f"not {name}", name],
                             [[k for k in keys if k not in pos], [k for k in keys if k in pos]],
                             positive=pos)
    if len(keys) < 2:
        raise LabelError(f"{source}: only one class ({keys[0] if keys else 'none'!r}) among "
                         "the labels; at least two are needed")
    if len(keys) > MAX_CLASSES:
        raise LabelError(f"{source}: {len(keys)} classes; at most {MAX_CLASSES} fit a uint8 "
                         "class map")
    return ClassEncoding(list(keys), [[k] for k in keys])


def _check_both_classes(codes: np.ndarray, enc: ClassEncoding, source: str) -> None:
    present = np.unique(codes[codes >= 0])
    if len(present) < 2:
        only = enc.names[int(present[0])] if len(present) else "none"
        raise LabelError(f"{source}: only one class ({only!r}) among the labels kept; at "
                         "least two are needed")


# ---------------------------------------------------------------------------------------------
# Label preparation
# ---------------------------------------------------------------------------------------------

@dataclass
class PreparedLabels:
    """A training dataset built from labels, with what was kept and dropped."""

    dataset: Any
    encoding: ClassEncoding
    codes: np.ndarray               # class code of each training item (image/pixel)
    n_input: int
    n_outside: int = 0
    n_nodata: int = 0
    n_unused: int = 0               # left out by max_labels
    extra: dict = field(default_factory=dict)

    @property
    def n_labels(self) -> int:
        return len(self.dataset)


def _vector_source(labels: Any) -> tuple[Any, str]:
    if isinstance(labels, str | os.PathLike):
        return read_vector(labels), str(labels)
    if hasattr(labels, "geometry"):
        if labels.crs is None:
            raise LabelError("labels: the GeoDataFrame has no CRS")
        return labels, "labels"
    raise InputError("labels must be a vector file path or a GeoDataFrame for --label-type "
                     "image / pixel")


def _subset(n: int, max_labels: int | None, seed: int) -> np.ndarray:
    if max_labels is None or max_labels >= n:
        return np.arange(n)
    if max_labels < 1:
        raise InputError("--max-labels must be at least 1")
    return np.sort(np.random.default_rng(seed).choice(n, max_labels, replace=False))


def polygon_window(bounds: Sequence[float], scene: Scene) -> Window:
    """The whole-pixel window of ``scene`` covering ``(minx, miny, maxx, maxy)``."""
    inv = ~scene.transform
    xs = [bounds[0], bounds[2], bounds[0], bounds[2]]
    ys = [bounds[1], bounds[1], bounds[3], bounds[3]]
    cols, rows = inv @ (np.asarray(xs), np.asarray(ys))
    eps = 1e-6
    c0, c1 = int(np.floor(cols.min() + eps)), int(np.ceil(cols.max() - eps))
    r0, r1 = int(np.floor(rows.min() + eps)), int(np.ceil(rows.max() - eps))
    return Window(c0, r0, max(c1 - c0, 1), max(r1 - r0, 1))


def _labelled_features(labels: Any, column: str) -> tuple[Any, str]:
    """The label features with a value in ``column`` (a LabelError when there are none)."""
    gdf, source = _vector_source(labels)
    require_column(gdf, column, source)
    gdf = gdf[gdf[column].notna()].reset_index(drop=True)
    if len(gdf) == 0:
        raise LabelError(f"{source}: every value of column {column!r} is empty")
    return gdf, source


def prepare_image_labels(scenes: Sequence[Scene], labels: Any, column: str, *, tile: int,
                         stats: BandStats, positive: Any = None, max_labels: int | None = None,
                         seed: int = 0) -> PreparedLabels:
    """Image-level labels: one training image per polygon (its bounding window).

    A polygon belongs to the first scene that holds its whole window; windows that are not
    inside any scene or are less than half valid are dropped and counted.
    """
    gdf, source = _labelled_features(labels, column)
    n_input = len(gdf)
    assigned = np.full(n_input, -1, dtype=np.int64)
    windows: list[Window | None] = [None] * n_input
    for si, scene in enumerate(scenes):
        todo = np.flatnonzero(assigned < 0)
        if len(todo) == 0:
            break
        local = to_crs(gdf.iloc[todo], scene.crs, source) if scene.crs is not None \
            else gdf.iloc[todo]
        pos = {k: j for j, k in enumerate(gdf.index[todo])}
        for idx, b in zip(local.index, local.geometry.bounds.to_numpy(), strict=True):
            w = polygon_window(b, scene)
            if scene.window_in_bounds(w):
                j = todo[pos[idx]]
                assigned[j], windows[j] = si, w
    inside = np.flatnonzero(assigned >= 0)
    n_outside = n_input - len(inside)
    if len(inside) == 0:
        raise LabelError(f"{source}: none of the {n_input} label polygons lies inside "
                         f"{', '.join(s.name for s in scenes)}; check the CRS and extent of "
                         "the labels")
    keep = []
    for j in inside:
        valid = scenes[assigned[j]].read_valid(windows[j])
        if valid.mean() >= MIN_VALID_FRACTION:
            keep.append(j)
    n_nodata = len(inside) - len(keep)
    if not keep:
        raise LabelError(f"{source}: every label polygon inside the scene is mostly nodata")
    keep = np.asarray(keep)
    raw = gdf[column].to_numpy()[keep]
    pick = _subset(len(keep), max_labels, seed)
    keep, raw = keep[pick], raw[pick]
    enc = class_encoding(raw, positive, source)
    codes = enc.encode(raw)
    _check_both_classes(codes, enc, source)
    ds = ImageTiles(scenes, assigned[keep], [windows[j] for j in keep], codes, tile, stats)
    n_resampled = sum(1 for j in keep if (windows[j].height, windows[j].width) != (tile, tile))
    return PreparedLabels(ds, enc, codes, n_input=n_input, n_outside=n_outside,
                          n_nodata=n_nodata, n_unused=len(inside) - n_nodata - len(keep),
                          extra={"n_resampled": n_resampled})


def prepare_pixel_labels(scenes: Sequence[Scene], labels: Any, column: str, *, tile: int,
                         stats: BandStats, positive: Any = None, max_labels: int | None = None,
                         seed: int = 0) -> PreparedLabels:
    """Single-pixel labels: points (polygons contribute a point inside them).

    A point belongs to the first scene where it falls on a valid pixel.
    """
    gdf, source = _labelled_features(labels, column)
    n_input = len(gdf)
    remaining = np.arange(n_input)
    parts = []
    n_nodata_any = np.zeros(n_input, dtype=bool)
    for si, scene in enumerate(scenes):
        if len(remaining) == 0:
            break
        try:
            pl = vector_pixel_labels(gdf.iloc[remaining], scene, column)
        except LabelError:
            continue
        used = remaining[pl.source_index]
        parts.append((si, pl, used))
        remaining = np.setdiff1d(remaining, used)
        # points on nodata here might be valid in a later scene; remember them for counting
        inside_nodata = _points_on_nodata(gdf.iloc[remaining], scene)
        n_nodata_any[remaining[inside_nodata]] = True
    if not parts:
        raise LabelError(f"{source}: none of the {n_input} labels falls on a valid pixel of "
                         f"{', '.join(s.name for s in scenes)}; check the CRS and extent of "
                         "the labels")
    scene_index = np.concatenate([np.full(len(pl), si) for si, pl, _ in parts])
    rows = np.concatenate([pl.rows for _, pl, _ in parts])
    cols = np.concatenate([pl.cols for _, pl, _ in parts])
    raw = np.concatenate([pl.labels for _, pl, _ in parts])
    n_nodata = int(n_nodata_any[remaining].sum())
    n_outside = len(remaining) - n_nodata
    pick = _subset(len(rows), max_labels, seed)
    enc = class_encoding(raw[pick], positive, source)
    codes = enc.encode(raw[pick])
    _check_both_classes(codes, enc, source)
    ds = PointTiles(scenes, scene_index[pick], rows[pick], cols[pick], codes, tile, stats)
    return PreparedLabels(ds, enc, codes, n_input=n_input, n_outside=n_outside,
                          n_nodata=n_nodata, n_unused=len(rows) - len(pick))


def _points_on_nodata(gdf: Any, scene: Scene) -> np.ndarray:
    """Which features fall inside ``scene`` but on a nodata pixel (for drop counts)."""
    from geoembed.io.labels import pixel_validity, xy_to_rowcol

    if len(gdf) == 0:
        return np.zeros(0, dtype=bool)
    local = to_crs(gdf, scene.crs) if scene.crs is not None else gdf
    pts = local.geometry.representative_point()
    rows, cols = xy_to_rowcol(scene, pts.x.to_numpy(), pts.y.to_numpy())
    inside = (rows >= 0) & (rows < scene.height) & (cols >= 0) & (cols < scene.width)
    out = np.zeros(len(gdf), dtype=bool)
    out[inside] = ~pixel_validity(scene, rows[inside], cols[inside])
    return out


def prepare_dense_labels(scenes: Sequence[Scene], labels: Sequence[Any], *, tile: int,
                         stats: BandStats, positive: Any = None, max_labels: int | None = None,
                         seed: int = 0) -> PreparedLabels:
    """Dense labels: one label raster per scene on the scene's grid (its nodata = unlabelled).

    Training items are the tile-grid cells holding labels; without ``max_labels`` they are
    jittered by up to half a tile each epoch, with ``max_labels=N`` exactly N cells (chosen at
    random among those at least half labelled) are used as they are.
    """
    from geoembed.io.labels import check_same_grid

    paths = [labels] if isinstance(labels, str | os.PathLike) else list(labels)
    if len(paths) != len(scenes):
        raise InputError(f"--label-type dense needs one label raster per scene: "
                         f"{len(paths)} label raster(s) for {len(scenes)} scene(s)")
    sources, offsets, fractions, src_index = [], [], [], []
    counts: dict = {}
    for si, (scene, path) in enumerate(zip(scenes, paths, strict=True)):
        lab = open_scene(path, bands=[1], allow_no_crs=scene.crs is None)
        check_same_grid(scene, lab)
        src = DenseSource(scene, lab, [], [])
        off, frac, cnt = dense_candidates(src, tile)
        sources.append(src)
        offsets.append(off)
        fractions.append(frac)
        src_index.append(np.full(len(off), si))
        for v, n in cnt.items():
            counts[v] = counts.get(v, 0) + n
    source = ", ".join(str(p) for p in paths)
    if not counts:
        raise LabelError(f"{source}: no labelled pixel on a valid pixel of the scene(s)")
    enc = class_encoding(list(counts), positive, source)
    for src in sources:
        src.values = list(counts)
        src.codes = enc.encode(list(counts)).tolist()
    offsets_all = np.concatenate(offsets)
    fractions_all = np.concatenate(fractions)
    index_all = np.concatenate(src_index)
    jitter = True
    n_unused = 0
    if max_labels is not None:
        pool = np.flatnonzero(fractions_all >= 0.5)
        if len(pool) < min(max_labels, len(offsets_all)):
            pool = np.arange(len(offsets_all))
        pick = pool[_subset(len(pool), max_labels, seed)]
        n_unused = len(offsets_all) - len(pick)
        offsets_all, index_all = offsets_all[pick], index_all[pick]
        jitter = False
    code_counts = np.zeros(enc.n_classes, dtype=np.int64)
    for v, n in counts.items():
        code_counts[enc.encode([v])[0]] += n
    if (code_counts > 0).sum() < 2:
        raise LabelError(f"{source}: only one class among the labelled pixels")
    ds = DenseTiles(sources, index_all, offsets_all, tile, stats, jitter=jitter)
    codes = np.zeros(0, dtype=np.int64)
    return PreparedLabels(ds, enc, codes, n_input=len(np.concatenate(offsets)),
                          n_unused=n_unused,
                          extra={"pixel_counts": code_counts.tolist()})


# ---------------------------------------------------------------------------------------------
# Steps for fit
# ---------------------------------------------------------------------------------------------

class ImageStep:
    """``fit`` step for image labels: loss on pooled CAM logits; reports image accuracy."""

    def __init__(self, pos_weight: float | None) -> None:
        self.pos_weight = pos_weight

    def __call__(self, model: nn.Module, batch: Any, to_device: Any) -> StepOutput:
        x, valid, y = (to_device(t) for t in batch)
        logits = model(x, valid, image_logits=True)
        loss = cam_image_loss(logits, y, pos_weight=self.pos_weight)
        with torch.no_grad():
            pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
            correct = (pred == y).float().sum()
        return StepOutput(loss=loss, n=int(y.shape[0]), sums={"accuracy": correct})


class PixelStep:
    """``fit`` step for pixel / dense labels: masked per-pixel loss; reports the labelled
    pixels' accuracy (per batch, weighted by tiles)."""

    def __init__(self, pos_weight: float | None = None) -> None:
        self.pos_weight = pos_weight

    def __call__(self, model: nn.Module, batch: Any, to_device: Any) -> StepOutput:
        x, target = (to_device(t) for t in batch)
        logits = model(x)
        loss = masked_pixel_loss(logits, target, pos_weight=self.pos_weight)
        correct, labelled = masked_pixel_correct(logits, target)
        n = int(x.shape[0])
        return StepOutput(loss=loss, n=n, sums={"accuracy": n * correct / max(labelled, 1)})


# ---------------------------------------------------------------------------------------------
# CAM threshold
# ---------------------------------------------------------------------------------------------

def majority_scores(cams: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per image, the largest threshold at which *more than half* its CAM pixels exceed it.

    For image ``i`` with ``n`` (valid) pixels this is its ``(n // 2 + 1)``-th largest CAM
    value ``s_i``: the image is called positive at threshold ``t`` exactly when ``s_i > t``.

    Args:
        cams: ``(B, H, W)`` CAM logits.
        valid: ``(B, H, W)`` bool, pixels that count (default: all).
    """
    out = torch.empty(cams.shape[0], dtype=torch.float64)
    flat = cams.reshape(cams.shape[0], -1).double().cpu()
    vflat = None if valid is None else valid.reshape(valid.shape[0], -1).cpu()
    for i in range(cams.shape[0]):
        v = flat[i] if vflat is None else flat[i][vflat[i]]
        n = v.numel()
        if n == 0:
            out[i] = float("nan")
            continue
        k = n // 2 + 1                       # k-th largest == (n - k + 1)-th smallest
        out[i] = torch.kthvalue(v, n - k + 1).values
    return out


def search_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold ``t`` maximising image accuracy when image ``i`` is called positive iff
    ``scores[i] > t`` (``scores`` from :func:`majority_scores`, ``labels`` 0/1).

    Every ``t`` in an interval between consecutive distinct scores gives the same accuracy;
    the middle of the best interval is returned (the first best one when several tie), or
    one unit beyond the extreme scores when calling everything positive / negative is best.

    Returns:
        ``(t, accuracy)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    ok = np.isfinite(scores)
    scores, labels = scores[ok], labels[ok]
    if len(scores) == 0:
        raise LabelError("no training image to choose the CAM threshold on")
    uniq, inv = np.unique(scores, return_inverse=True)
    neg_le = np.cumsum(np.bincount(inv, weights=~labels, minlength=len(uniq)))
    pos_le = np.cumsum(np.bincount(inv, weights=labels, minlength=len(uniq)))
    n_pos = labels.sum()
    # t in [uniq[j], uniq[j+1]): images with score <= uniq[j] negative, the rest positive
    correct = np.concatenate([[n_pos], neg_le + (n_pos - pos_le)])
    best = int(np.argmax(correct))
    accuracy = float(correct[best] / len(scores))
    if best == 0:
        return float(uniq[0] - 1.0), accuracy
    j = best - 1
    if j == len(uniq) - 1:
        return float(uniq[-1] + 1.0), accuracy
    return float((uniq[j] + uniq[j + 1]) / 2), accuracy


@torch.no_grad()
def cam_training_scores(model: nn.Module, dataset: ImageTiles, *, batch_size: int = 32,
                        device: Any = "cpu", quiet: bool = True) -> np.ndarray:
    """:func:`majority_scores` of every training image (no augmentation, eval mode)."""
    from tqdm.auto import tqdm

    model.eval()
    device = torch.device(device) if isinstance(device, str) else device
    scores = []
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc="CAM threshold", disable=quiet, leave=False, unit="batch"):
        items = [dataset.read(i) for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.from_numpy(np.stack([a for a, _ in items])).to(device)
        valid = torch.from_numpy(np.stack([v for _, v in items]))
        cam = model(x)[:, 0].float().cpu()
        scores.append(majority_scores(cam, valid))
    return torch.cat(scores).numpy()


# ---------------------------------------------------------------------------------------------
# weak_train
# ---------------------------------------------------------------------------------------------

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


def _check_numbers(**values: float) -> None:
    for key, value in values.items():
        low = 0 if key == "workers" else 1
        if value is not None and value < low:
            raise InputError(f"--{key.replace('_', '-')} {value} is out of range "
                             f"(at least {low})")


def weak_train(
    scenes: str | os.PathLike | Sequence[str | os.PathLike],
    labels: Any,
    out: str | os.PathLike,
    *,
    label_type: str = "image",
    label_column: str | None = None,
    positive: Any = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    encoder: str = DEFAULT_ENCODER,
    encoder_depth: int = DEFAULT_DEPTH,
    decoder_channels: Sequence[int] | None = None,
    epochs: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    max_labels: int | None = None,
    seed: int = 0,
    device: str = "auto",
    amp: bool = True,
    workers: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    bands: Sequence[int] | None = None,
    allow_no_crs: bool = False,
) -> WeakTrainResult:
    """Train a U-Net segmenter from image-level, single-pixel or dense labels.

    Args:
        scenes: one or more rasters (same bands).
        labels: ``image`` / ``pixel``: a vector file (any format and CRS) or GeoDataFrame;
            ``dense``: a label raster on the scene's grid (a list: one per scene).
        out: run directory (checkpoint.pt, metrics.csv, loss.png).
        label_type: ``"image"``, ``"pixel"`` or ``"dense"``.
        label_column: the vector column holding the class (image / pixel).
        positive: label value(s) of the positive class of a one-vs-rest binary model;
            default: every distinct value is a class (two values -> binary, the larger one
            positive).
        tile_size: training tile size in pixels (the paper's 50).
        encoder, encoder_depth, decoder_channels: the U-Net (smp encoder name, no
            pretrained weights; the paper's U-Net had 4 levels).
        epochs: default :data:`DEFAULT_EPOCHS` of the label type.
        max_labels: use a random subset (seeded) of N labelled tiles / points / label cells.
        amp: bf16 autocast on CUDA.
        resume: continue the run in ``out``; overwrite: replace it.

    Returns:
        :class:`WeakTrainResult` (the checkpoint path, history, classes, label counts and,
        for binary image labels, the CAM threshold and its training image accuracy).

    Raises:
        LabelError, InputError, RasterError, CRSError, CheckpointError, OutputExistsError,
        DeviceError.
    """
    if label_type not in LABEL_TYPES:
        raise InputError(f"--label-type {label_type!r}: use one of {', '.join(LABEL_TYPES)}")
    epochs = DEFAULT_EPOCHS[label_type] if epochs is None else epochs
    _check_numbers(tile_size=tile_size, epochs=epochs, batch_size=batch_size,
                   encoder_depth=encoder_depth, max_labels=max_labels, workers=workers)
    if lr <= 0:
        raise InputError(f"--lr {lr} must be positive")
    if label_type != "dense" and not label_column:
        raise InputError(f"--label-type {label_type} needs --label-column (the vector column "
                         "holding the class)")
    paths = [scenes] if isinstance(scenes, str | os.PathLike) else list(scenes)
    scene_list = open_scenes(paths, bands, allow_no_crs=allow_no_crs)
    for s in scene_list:
        if tile_size > min(s.width, s.height):
            raise InputError(f"--tile-size {tile_size} is larger than {s.name} "
                             f"({s.width}x{s.height} px)")
    out = Path(out)
    check_run_dir(out, resume, overwrite)
    if overwrite:
        clear_run(out)
    resolve_device(device)  # fail early on an absent device

    stats = band_statistics(scene_list, seed=seed)
    common = {"tile": tile_size, "stats": stats, "positive": positive,
              "max_labels": max_labels, "seed": seed}
    if label_type == "image":
        prepared = prepare_image_labels(scene_list, labels, label_column, **common)
    elif label_type == "pixel":
        prepared = prepare_pixel_labels(scene_list, labels, label_column, **common)
    else:
        prepared = prepare_dense_labels(scene_list, labels, **common)
    enc = prepared.encoding
    binary = enc.n_classes == 2
    pos_weight = None
    if label_type == "image" and binary:
        n_pos = int((prepared.codes == 1).sum())
        pos_weight = float((len(prepared.codes) - n_pos) / max(n_pos, 1))

    config = weak_model_config(scene_list[0].count, enc.n_classes, label_type, encoder=encoder,
                               encoder_depth=encoder_depth, decoder_channels=decoder_channels)
    seed_everything(seed)
    model = build_weak_model(config)
    label_source = (str(labels) if isinstance(labels, str | os.PathLike)
                    else [str(p) for p in labels] if isinstance(labels, list | tuple)
                    else "GeoDataFrame")
    payload = {
        "model": config,
        "label_type": label_type,
        "class_names": enc.names,
        "class_values": enc.values,
        "positive": enc.positive,
        "threshold": None,
        "threshold_accuracy": None,
        "pos_weight": pos_weight,
        "bands": list(scene_list[0].bands),
        "band_stats": stats.to_dict(),
        "tile_size": int(tile_size),
        "scenes": [s.path for s in scene_list],
        "labels": {"source": label_source, "column": label_column,
                   "n_labels": prepared.n_labels, "n_input": prepared.n_input,
                   "n_outside": prepared.n_outside, "n_nodata": prepared.n_nodata,
                   "n_unused": prepared.n_unused},
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }
    options = {
        "label_type": label_type, "label_column": label_column, "labels": label_source,
        "positive": enc.positive, "tile_size": int(tile_size), "encoder": encoder,
        "encoder_depth": int(encoder_depth), "decoder_channels": config["decoder_channels"],
        "batch_size": int(batch_size), "lr": float(lr), "max_labels": max_labels,
        "seed": int(seed), "bands": list(scene_list[0].bands),
        "scenes": [s.path for s in scene_list], "epochs": int(epochs),
    }
    step = ImageStep(pos_weight) if label_type == "image" else PixelStep()
    result = fit(model, prepared.dataset, step, out_dir=out, kind=KIND, payload=payload,
                 options=options, epochs=epochs, batch_size=batch_size, lr=lr,
                 workers=workers, seed=seed, device=device, amp=amp, resume=resume,
                 quiet=quiet, throughput_name="tiles_per_s")
    threshold = accuracy = None
    if label_type == "image" and binary and is_main_process():
        dev = next(result.model.parameters()).device
        scores = cam_training_scores(result.model, prepared.dataset, batch_size=batch_size,
                                     device=dev, quiet=quiet)
        threshold, accuracy = search_threshold(scores, prepared.codes)
        ckpt = load_checkpoint(result.checkpoint, kind=KIND)
        ckpt.update(threshold=threshold, threshold_accuracy=accuracy)
        save_checkpoint(result.checkpoint, ckpt, kind=KIND)
    return WeakTrainResult(
        checkpoint=result.checkpoint, history=result.history, label_type=label_type,
        class_names=enc.names, n_labels=prepared.n_labels, n_input=prepared.n_input,
        n_outside=prepared.n_outside, n_nodata=prepared.n_nodata, n_unused=prepared.n_unused,
        threshold=threshold, threshold_accuracy=accuracy, extra=prepared.extra)
