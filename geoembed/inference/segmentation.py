"""Whole-scene segmentation with a trained weak U-Net, stitched without seams, streaming.

:func:`segment` is the Python API behind ``geoembed segment`` (``geoembed.segment``).

Sliding windows (default stride half a tile; the last row / column of windows is flush with
the scene's edge so every pixel is covered) are predicted in batches; their per-pixel
logits are averaged with a smooth weight (a squared sine, highest at the window's centre and
small but positive at its edges), so that predictions change continuously across window
borders. Only a band of ``tile`` rows of accumulators is kept: rows no later window can
reach are converted and written at once, so memory depends on the scene's width, not its
size.

Outputs:
    * the class map: uint8, one band, value ``i`` = ``class_names[i]`` of the checkpoint,
      255 (nodata) where the scene is nodata; tags ``classes`` (JSON list),
      ``CLASS_<i>``, ``threshold``, ``label_type``, ``checkpoint_sha256``.
    * with ``probabilities``: a float32 GeoTIFF ``<stem>_probabilities.tif`` next to the
      class map with one band per class (descriptions = class names), NaN where nodata.
      Binary models: ``P(positive) = sigmoid(logit - t)``, where ``t`` is the CAM threshold
      of an image-level model (0 for pixel / dense models); K classes: softmax.
    * with ``reference``: a JSON report (default ``<stem>_report.json``) of pixel accuracy,
      per-class precision / recall / F1 / IoU and the confusion matrix against a reference
      raster on the same grid.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from geoembed.devices import autocast_context, resolve_device
from geoembed.errors import InputError, RasterError
from geoembed.io.checkpoint import file_sha256, load_checkpoint
from geoembed.io.geotiff import RasterWriter
from geoembed.io.outputs import check_output
from geoembed.io.scenes import Scene, normalize, open_scene
from geoembed.models.unet_cam import WeakUNet, weak_model_from_checkpoint
from geoembed.samplers.grid import WindowGrid, iter_grid_rows

KIND = "weak"
NODATA = 255
#: Smallest blending weight (at a window's outermost pixels), relative to the centre's 1.
MIN_WEIGHT = 1e-3


def blend_weights(tile: int) -> np.ndarray:
    """``(tile, tile)`` float32 weight: ``sin^2`` profile, strictly positive at the edges."""
    i = np.arange(tile, dtype=np.float64)
    w1 = np.sin(np.pi * (i + 0.5) / tile) ** 2
    w1 = np.maximum(w1, MIN_WEIGHT)
    return np.outer(w1, w1).astype(np.float32)


def value_key(v: Any) -> str:
    """A label value as the string used to compare classes (1, 1.0, '1', True -> '1')."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


class WeakPredictor:
    """A trained weak U-Net ready for inference on standardised windows.

    ``logits`` returns per-pixel *decision* logits: for a binary model one channel whose
    sign is the class (the CAM minus its threshold for image-level models), for K classes K
    channels whose argmax is the class.
    """

    def __init__(self, ckpt: Mapping[str, Any], device: str | torch.device = "cpu",
                 amp: bool = True) -> None:
        self.ckpt = ckpt
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.amp = amp
        self.model: WeakUNet = weak_model_from_checkpoint(dict(ckpt)).to(self.device)
        self.class_names: list[str] = list(ckpt["class_names"])
        self.n_classes = len(self.class_names)
        self.binary = self.n_classes == 2
        self.threshold = float(ckpt.get("threshold") or 0.0) if self.binary else None
        self.tile = int(ckpt["tile_size"])
        self.bands = tuple(ckpt["bands"])
        self.stats = ckpt["band_stats"]

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto", amp: bool = True
             ) -> WeakPredictor:
        return cls(load_checkpoint(path, kind=KIND), device=device, amp=amp)

    def normalize(self, tiles: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Standardise raw ``(n, C, h, w)`` windows (nodata -> 0) as in training."""
        return normalize(tiles, self.stats, valid)

    @torch.no_grad()
    def logits(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Decision logits ``(n, n_out, h, w)`` float32 of standardised windows."""
        self.model.eval()
        outs = []
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size])).to(
                self.device)
            with autocast_context(self.device, self.amp):
                out = self.model(xb)
            out = out.float()
            if self.binary:
                out = out - self.threshold
            outs.append(out.cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0,), np.float32)

    def classes(self, logits: np.ndarray) -> np.ndarray:
        """Class codes ``(..., h, w)`` uint8 from decision logits ``(..., n_out, h, w)``."""
        if self.binary:
            return (logits[..., 0, :, :] > 0).astype(np.uint8)
        return logits.argmax(axis=-3).astype(np.uint8)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Per-class probabilities ``(..., K, h, w)`` float32 from decision logits."""
        if self.binary:
            p = 1.0 / (1.0 + np.exp(-logits[..., 0:1, :, :].astype(np.float64)))
            return np.concatenate([1 - p, p], axis=-3).astype(np.float32)
        z = logits - logits.max(axis=-3, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=-3, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Reference scoring
# ---------------------------------------------------------------------------------------------

def reference_mapping(ckpt: Mapping[str, Any], *, reference_positive: Sequence[Any] | None = None,
                      reference_map: Mapping[Any, Any] | None = None) -> tuple[Any, str]:
    """A function reference value -> model class code (-1: not scored) and its description.

    * ``reference_map``: ``{reference value: class code or class name}``; other values are
      not scored.
    * ``reference_positive`` (binary models): these reference values are the positive class,
      every other valid value the negative one.
    * default: a one-vs-rest model's positive label values are positive, the rest negative;
      otherwise a reference value scores as the class whose label value it equals.
    """
    names = list(ckpt["class_names"])
    values = [list(v) for v in ckpt.get("class_values") or [[n] for n in names]]
    binary = len(names) == 2
    if reference_map is not None and reference_positive is not None:
        raise InputError("give either --reference-positive or --reference-map, not both")
    if reference_map is not None:
        table: dict[str, int] = {}
        for k, v in reference_map.items():
            key = value_key(v)
            if key in names:
                code = names.index(key)
            else:
                try:
                    code = int(key)
                except ValueError:
                    code = -2
                if not 0 <= code < len(names):
                    raise InputError(f"--reference-map: {v!r} is not a class of the model "
                                     f"(classes: {', '.join(names)}; or codes 0..{len(names)-1})")
            table[value_key(k)] = code
        return (lambda v: table.get(value_key(v), -1)), f"map {table}"
    if reference_positive is not None:
        if not binary:
            raise InputError("--reference-positive is for binary models; this model has "
                             f"{len(names)} classes: use --reference-map")
        pos = {value_key(p) for p in reference_positive}
        return (lambda v: 1 if value_key(v) in pos else 0), f"positive {sorted(pos)}"
    if ckpt.get("positive"):
        pos = {value_key(p) for p in ckpt["positive"]}
        return (lambda v: 1 if value_key(v) in pos else 0), f"positive {sorted(pos)}"
    table = {k: i for i, vals in enumerate(values) for k in vals}
    return (lambda v: table.get(value_key(v), -1)), f"label values {table}"


class ConfusionAccumulator:
    """Confusion matrix of class codes, accumulated chunk by chunk (sklearn's)."""

    def __init__(self, n_classes: int) -> None:
        self.n = n_classes
        self.matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.n_unmapped = 0

    def add(self, truth: np.ndarray, pred: np.ndarray) -> None:
        from sklearn.metrics import confusion_matrix

        if truth.size:
            self.matrix += confusion_matrix(truth, pred, labels=list(range(self.n)))

    def report(self, class_names: Sequence[str]) -> dict[str, Any]:
        """Accuracy, per-class precision / recall / F1 / IoU / support, macro means."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        total = m.sum()

        def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

        precision = ratio(tp, m.sum(axis=0))
        recall = ratio(tp, m.sum(axis=1))
        f1 = ratio(2 * precision * recall, precision + recall)
        iou = ratio(tp, m.sum(axis=0) + m.sum(axis=1) - tp)
        per = {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                      "f1": float(f1[i]), "iou": float(iou[i]),
                      "support": int(m.sum(axis=1)[i])}
               for i, name in enumerate(class_names)}
        present = m.sum(axis=1) > 0
        return {
            "pixels": int(total),
            "accuracy": float(tp.sum() / total) if total else float("nan"),
            "classes": per,
            "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
            "mean_iou": float(iou[present].mean()) if present.any() else float("nan"),
            "confusion_matrix": self.matrix.tolist(),
            "unmapped_pixels": int(self.n_unmapped),
        }


class _Reference:
    """A reference raster on the scene's grid, read chunk by chunk and mapped to codes."""

    def __init__(self, path: str | os.PathLike, scene: Scene, mapping: Any) -> None:
        from geoembed.io.labels import check_same_grid

        self.scene = open_scene(path, bands=[1], allow_no_crs=scene.crs is None)
        check_same_grid(scene, self.scene, what="reference raster")
        self.mapping = mapping

    def codes(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(codes int64 (h, w) with -1 = not scored, valid reference pixels (h, w))``."""
        raw = self.scene.read(window)
        valid = self.scene.read_valid(window, data=raw)
        raw = raw[0]
        out = np.full(raw.shape, -1, dtype=np.int64)
        for u in np.unique(raw[valid]):
            out[(raw == u) & valid] = self.mapping(u)
        return out, valid


# ---------------------------------------------------------------------------------------------
# segment
# ---------------------------------------------------------------------------------------------

@dataclass
class SegmentResult:
    """What :func:`segment` wrote."""

    path: Path
    probabilities: Path | None
    report_path: Path | None
    report: dict | None
    class_names: list[str]
    threshold: float | None
    n_windows: int
    seconds: float


def probabilities_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}_probabilities.tif")


def report_path_for(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}_report.json")


def segment(
    checkpoint: str | os.PathLike,
    scene: str | os.PathLike,
    out: str | os.PathLike,
    *,
    stride: int | None = None,
    tile: int | None = None,
    batch_size: int = 32,
    probabilities: bool = False,
    reference: str | os.PathLike | None = None,
    reference_positive: Sequence[Any] | None = None,
    reference_map: Mapping[Any, Any] | None = None,
    report: str | os.PathLike | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    device: str = "auto",
    amp: bool = True,
    allow_no_crs: bool = False,
) -> SegmentResult:
    """Segment a whole scene with a ``weak`` checkpoint into a class-map GeoTIFF.

    Args:
        checkpoint: a ``geoembed weak train`` checkpoint.
        scene: the raster to segment (the checkpoint's bands are used).
        out: the class map GeoTIFF (uint8, 255 = nodata).
        stride: window step in pixels (default half the window).
        tile: window size (default the training tile size; the U-Net is fully
            convolutional, so larger windows are faster with the same model).
        batch_size: windows per forward pass.
        probabilities: also write ``<stem>_probabilities.tif`` (float32, one band per class).
        reference: a reference class raster on the scene's grid to score against.
        reference_positive, reference_map: how reference values map to the model's classes
            (see :func:`reference_mapping`).
        report: where to write the JSON report (default ``<stem>_report.json``).

    Returns:
        :class:`SegmentResult`; ``report`` holds the scores when ``reference`` is given.
    """
    t0 = time.perf_counter()
    ckpt = load_checkpoint(checkpoint, kind=KIND)
    sc = open_scene(scene, bands=None, allow_no_crs=allow_no_crs)
    bands = tuple(ckpt.get("bands") or range(1, sc.count + 1))
    if max(bands) > sc.count:
        raise RasterError(f"{sc.path} has {sc.count} bands but the checkpoint was trained on "
                          f"bands {list(bands)}")
    sc = open_scene(scene, bands=bands, allow_no_crs=allow_no_crs)
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    tile = int(tile or ckpt["tile_size"])
    if tile < 1:
        raise InputError("--tile must be at least 1")
    tile = min(tile, sc.height, sc.width)
    stride = int(stride) if stride is not None else max(tile // 2, 1)
    if not 1 <= stride <= tile:
        raise InputError(f"--stride {stride} must be between 1 and the window size ({tile})")
    out = Path(out)
    prob_path = probabilities_path(out) if probabilities else None
    rep_path = (Path(report) if report is not None else report_path_for(out)) \
        if reference is not None else None
    for p in (out, prob_path, rep_path):
        if p is not None:
            check_output(p, overwrite)
    ref = None
    if reference is not None:
        mapping, mapping_desc = reference_mapping(ckpt, reference_positive=reference_positive,
                                                  reference_map=reference_map)
        ref = _Reference(reference, sc, mapping)
    elif reference_positive is not None or reference_map is not None:
        raise InputError("--reference-positive / --reference-map need --reference")

    predictor = WeakPredictor(ckpt, device=device, amp=amp)
    names = predictor.class_names
    grid = WindowGrid.for_scene(sc, tile, stride, cover_end=True)
    sha = file_sha256(checkpoint)
    tags = {"classes": json.dumps(names), "label_type": ckpt.get("label_type"),
            "threshold": predictor.threshold, "checkpoint": Path(checkpoint).name,
            "checkpoint_sha256": sha, "tile": tile, "stride": stride,
            **{f"CLASS_{i}": n for i, n in enumerate(names)}}
    confusion = ConfusionAccumulator(predictor.n_classes) if ref is not None else None

    from contextlib import ExitStack

    from tqdm.auto import tqdm

    with ExitStack() as stack:
        cls_out = stack.enter_context(RasterWriter(
            out, width=sc.width, height=sc.height, count=1, dtype="uint8", crs=sc.crs,
            transform=sc.transform, nodata=NODATA, descriptions=["class"], tags=tags,
            overwrite=overwrite))
        prob_out = None
        if prob_path is not None:
            prob_out = stack.enter_context(RasterWriter(
                prob_path, width=sc.width, height=sc.height, count=predictor.n_classes,
                dtype="float32", crs=sc.crs, transform=sc.transform, nodata=float("nan"),
                descriptions=[f"p_{n}" for n in names], tags=tags, overwrite=overwrite))
        _stream(sc, grid, predictor, batch_size, cls_out, prob_out, ref, confusion,
                bar=tqdm(total=grid.n_windows, desc="segment", unit="win", disable=quiet,
                         leave=False))
        report_dict = None
        if confusion is not None and rep_path is not None:
            report_dict = {"scene": str(sc.path), "checkpoint": str(checkpoint),
                           "checkpoint_sha256": sha, "reference": str(reference),
                           "mapping": mapping_desc, **confusion.report(names)}
            _write_json(rep_path, report_dict)
    return SegmentResult(path=out, probabilities=prob_path, report_path=rep_path,
                         report=report_dict, class_names=names, threshold=predictor.threshold,
                         n_windows=grid.n_windows, seconds=time.perf_counter() - t0)


def _write_json(path: Path, data: dict) -> None:
    from geoembed.io.outputs import replace_path, temporary_sibling

    tmp = temporary_sibling(path)
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        replace_path(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _stream(scene: Scene, grid: WindowGrid, predictor: WeakPredictor, batch_size: int,
            cls_out: RasterWriter, prob_out: RasterWriter | None, ref: _Reference | None,
            confusion: ConfusionAccumulator | None, bar: Any) -> None:
    """Predict the grid row by row, accumulate weighted logits in a ``tile``-row band, and
    write every row that no later window reaches."""
    t, width = grid.tile, scene.width
    n_out = 1 if predictor.binary else predictor.n_classes
    weight = blend_weights(t)
    acc = np.zeros((n_out, t, width), dtype=np.float32)
    wsum = np.zeros((t, width), dtype=np.float32)
    valid = np.zeros((t, width), dtype=bool)
    base = 0  # scene row of the band's first row

    def flush(n_rows: int) -> None:
        nonlocal acc, wsum, valid, base
        if n_rows <= 0:
            return
        logits = acc[:, :n_rows] / wsum[:n_rows]
        v = valid[:n_rows]
        classes = predictor.classes(logits[None])[0]
        classes[~v] = NODATA
        window = Window(0, base, width, n_rows)
        cls_out.write(classes, window)
        if prob_out is not None:
            prob = predictor.probabilities(logits[None])[0]
            prob[:, ~v] = np.nan
            prob_out.write(prob, window)
        if ref is not None and confusion is not None:
            truth, ref_valid = ref.codes(window)
            scored = v & (truth >= 0)
            confusion.n_unmapped += int((v & ref_valid & (truth < 0)).sum())
            confusion.add(truth[scored], classes[scored].astype(np.int64))
        # shift the band up by n_rows
        acc = np.roll(acc, -n_rows, axis=1)
        wsum = np.roll(wsum, -n_rows, axis=0)
        valid = np.roll(valid, -n_rows, axis=0)
        acc[:, -n_rows:] = 0
        wsum[-n_rows:] = 0
        valid[-n_rows:] = False
        base += n_rows

    try:
        for row in iter_grid_rows(scene, grid):
            r = grid.row_offsets[row.index]
            flush(r - base)  # rows above this window row are final
            x = predictor.normalize(row.tiles, row.valid)
            logits = predictor.logits(x, batch_size=batch_size)
            for j, c in enumerate(grid.col_offsets):
                acc[:, :, c:c + t] += logits[j] * weight
                wsum[:, c:c + t] += weight
                valid[:, c:c + t] |= row.valid[j]
            bar.update(len(grid.col_offsets))
        flush(scene.height - base)
    finally:
        bar.close()
