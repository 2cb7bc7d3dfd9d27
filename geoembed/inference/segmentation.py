"""Whole-scene segmentation with a trained weak U-Net, stitched without seams, streaming.

:func:`segment` is the Python API behind ``geoembed segment`` (``geoembed.segment``); its
options are a :class:`~geoembed.inference.config.SegmentConfig`.

Sliding windows (default stride half a tile; the last row / column of windows is flush with
the scene's edge so every pixel is covered) are predicted in batches by
:mod:`geoembed.inference.engine`; their per-pixel logits are averaged with a smooth weight
(a squared sine, highest at the window's centre and small but positive at its edges), so
that predictions change continuously across window borders. Only a band of ``tile`` rows of
accumulators is kept: rows no later window can reach are converted and written at once, so
memory depends on the scene's width, not its size.

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
      raster on the same grid (:mod:`geoembed.inference.reference`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoembed.devices import autocast_context, resolve_device
from geoembed.errors import InputError, RasterError
from geoembed.inference.config import SegmentConfig, resolve_config
from geoembed.inference.engine import predict_rows, progress, streaming_cache
from geoembed.inference.reference import Reference, reference_mapping
from geoembed.inference.stitch import BlendBand, Block, blend_rows
from geoembed.io.checkpoint import file_sha256, load_checkpoint
from geoembed.io.geotiff import RasterWriter
from geoembed.io.outputs import atomic_output, check_output
from geoembed.io.scenes import Scene, normalize, open_scene
from geoembed.models.unet_cam import WeakUNet, weak_model_from_checkpoint
from geoembed.samplers.grid import WindowGrid

__all__ = ["NODATA", "SegmentConfig", "SegmentResult", "WeakPredictor", "segment"]

KIND = "weak"
NODATA = 255


class WeakPredictor:
    """A trained weak U-Net ready for inference on standardised windows.

    ``logits`` returns per-pixel *decision* logits: for a binary model one channel whose
    sign is the class (the CAM minus its threshold for image-level models), for K classes K
    channels whose argmax is the class. ``launch``/``collect`` make it a
    :class:`~geoembed.inference.engine.WindowModel` over raw windows.
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
        self.n_out = 1 if self.binary else self.n_classes
        self.threshold = float(ckpt.get("threshold") or 0.0) if self.binary else None
        self.tile = int(ckpt["tile_size"])
        self.bands = tuple(ckpt["bands"])
        self.stats = ckpt["band_stats"]

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto", amp: bool = True
             ) -> WeakPredictor:
        """Load a ``weak`` checkpoint onto ``device``."""
        return cls(load_checkpoint(path, kind=KIND), device=device, amp=amp)

    def normalize(self, tiles: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
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

    def launch(self, tiles: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """Decision logits of raw windows, as one batch."""
        return self.logits(self.normalize(tiles, valid), batch_size=len(tiles))

    def collect(self, handle: np.ndarray) -> np.ndarray:
        return handle

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
    """``<stem>_probabilities.tif`` next to the class map ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_probabilities.tif")


def report_path_for(out: str | os.PathLike) -> Path:
    """``<stem>_report.json`` next to the class map ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_report.json")


def segment(checkpoint: str | os.PathLike, scene: str | os.PathLike, out: str | os.PathLike,
            config: SegmentConfig | None = None, **options: Any) -> SegmentResult:
    """Segment a whole scene with a ``weak`` checkpoint into a class-map GeoTIFF.

    Args:
        checkpoint: a ``geoembed weak train`` checkpoint.
        scene: the raster to segment (the checkpoint's bands are used).
        out: the class map GeoTIFF (uint8, 255 = nodata).
        config: the options (:class:`~geoembed.inference.config.SegmentConfig`: stride,
            tile, batch_size, probabilities, reference, reference_positive, reference_map,
            report, overwrite, quiet, device, amp, prefetch, allow_no_crs).
        **options: fields of :class:`SegmentConfig`, overriding ``config``'s.

    Returns:
        :class:`SegmentResult`; ``report`` holds the scores when ``reference`` is given.
    """
    t0 = time.perf_counter()
    cfg = resolve_config(SegmentConfig, config, options)
    ckpt = load_checkpoint(checkpoint, kind=KIND)
    sc = _open_scene(scene, ckpt, cfg.allow_no_crs)
    with ExitStack() as stack:
        stack.callback(sc.close)
        grid = _window_grid(sc, ckpt, cfg)
        out = Path(out)
        prob_path = probabilities_path(out) if cfg.probabilities else None
        rep_path = None
        if cfg.reference is not None:
            rep_path = Path(cfg.report) if cfg.report is not None else report_path_for(out)
        for p in (out, prob_path, rep_path):
            if p is not None:
                check_output(p, cfg.overwrite)
        ref = None
        if cfg.reference is not None:
            mapping, mapping_desc = reference_mapping(
                ckpt, reference_positive=cfg.reference_positive, reference_map=cfg.reference_map)
            ref = Reference(cfg.reference, sc, mapping, len(ckpt["class_names"]))
            stack.callback(ref.close)
        predictor = WeakPredictor(ckpt, device=cfg.device, amp=cfg.amp)
        sha = file_sha256(checkpoint)
        tags = _tags(ckpt, predictor, Path(checkpoint).name, sha, grid)
        stack.enter_context(streaming_cache(sc, grid.tile, _block_bytes(sc, predictor, cfg)))
        cls_out = stack.enter_context(_writer(out, sc, 1, "uint8", NODATA, ["class"], tags, cfg))
        prob_out = None if prob_path is None else stack.enter_context(_writer(
            prob_path, sc, predictor.n_classes, "float32", float("nan"),
            [f"p_{n}" for n in predictor.class_names], tags, cfg))
        _stream(sc, grid, predictor, cfg, cls_out, prob_out, ref)
        report = None
        if ref is not None and rep_path is not None:
            report = {"scene": str(sc.path), "checkpoint": str(checkpoint),
                      "checkpoint_sha256": sha, "reference": str(cfg.reference),
                      "mapping": mapping_desc, **ref.confusion.report(predictor.class_names)}
            with atomic_output(rep_path, cfg.overwrite) as tmp:
                tmp.write_text(json.dumps(report, indent=2) + "\n")
    return SegmentResult(path=out, probabilities=prob_path, report_path=rep_path, report=report,
                         class_names=predictor.class_names, threshold=predictor.threshold,
                         n_windows=grid.n_windows, seconds=time.perf_counter() - t0)


def _open_scene(path: str | os.PathLike, ckpt: Mapping[str, Any], allow_no_crs: bool) -> Scene:
    """The scene with the checkpoint's bands (all bands when it names none)."""
    whole = open_scene(path, bands=None, allow_no_crs=allow_no_crs)
    whole.close()
    bands = tuple(ckpt.get("bands") or range(1, whole.count + 1))
    if max(bands) > whole.count:
        raise RasterError(f"{whole.path} has {whole.count} bands but the checkpoint was trained "
                          f"on bands {list(bands)}")
    return open_scene(path, bands=bands, allow_no_crs=allow_no_crs)


def _window_grid(sc: Scene, ckpt: Mapping[str, Any], cfg: SegmentConfig) -> WindowGrid:
    """Windows of ``cfg.tile`` (default the training tile, at most the scene) covering it."""
    tile = min(int(cfg.tile or ckpt["tile_size"]), sc.height, sc.width)
    stride = int(cfg.stride) if cfg.stride is not None else max(tile // 2, 1)
    if not 1 <= stride <= tile:
        raise InputError(f"--stride {stride} must be between 1 and the window size ({tile})")
    return WindowGrid.for_scene(sc, tile, stride, cover_end=True)


def _tags(ckpt: Mapping[str, Any], predictor: WeakPredictor, name: str, sha: str,
          grid: WindowGrid) -> dict[str, Any]:
    names = predictor.class_names
    return {"classes": json.dumps(names), "label_type": ckpt.get("label_type"),
            "threshold": predictor.threshold, "checkpoint": name, "checkpoint_sha256": sha,
            "tile": grid.tile, "stride": grid.stride,
            **{f"CLASS_{i}": n for i, n in enumerate(names)}}


def _writer(path: Path, sc: Scene, count: int, dtype: str, nodata: float,
            descriptions: list[str], tags: dict[str, Any], cfg: SegmentConfig) -> RasterWriter:
    """A GeoTIFF on the scene's grid."""
    return RasterWriter(path, width=sc.width, height=sc.height, count=count, dtype=dtype,
                        crs=sc.crs, transform=sc.transform, nodata=nodata,
                        descriptions=descriptions, tags=tags, overwrite=cfg.overwrite)


def _block_bytes(sc: Scene, predictor: WeakPredictor, cfg: SegmentConfig) -> int:
    """Bytes of one row of output blocks (the class map and the probabilities)."""
    per_pixel = 1 + (4 * predictor.n_classes if cfg.probabilities else 0)
    return sc.width * 256 * per_pixel


def _stream(sc: Scene, grid: WindowGrid, predictor: WeakPredictor, cfg: SegmentConfig,
            cls_out: RasterWriter, prob_out: RasterWriter | None, ref: Reference | None
            ) -> None:
    """Predict every window, blend, and write (and score) each block of finished rows."""
    t = grid.tile
    band = BlendBand(predictor.n_out, t, sc.width)
    with progress(grid.n_windows, "segment", cfg.quiet) as bar:
        rows = predict_rows(sc, grid, predictor, (predictor.n_out, t, t),
                            batch_size=cfg.batch_size, prefetch=cfg.prefetch, bar=bar)
        for block in blend_rows(rows, grid, band, sc.height):
            _write_block(block, predictor, cls_out, prob_out, ref)


def _write_block(block: Block, predictor: WeakPredictor, cls_out: RasterWriter,
                 prob_out: RasterWriter | None, ref: Reference | None) -> None:
    classes = predictor.classes(block.values[None])[0]
    classes[~block.valid] = NODATA
    cls_out.write(classes, block.window)
    if prob_out is not None:
        prob = predictor.probabilities(block.values[None])[0]
        prob[:, ~block.valid] = np.nan
        prob_out.write(prob, block.window)
    if ref is not None:
        ref.score(block.window, classes, block.valid)
