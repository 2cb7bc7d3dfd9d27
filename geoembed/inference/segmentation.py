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

Several scenes are a batch run like ``embed``'s (:mod:`geoembed.io.sharded`): one map per
scene, ``<scene stem>_segmentation.tif`` in the output folder, a shard's share of the scenes
(``shard``), a manifest line per map, and reruns that skip complete maps.

Outputs:
    * the class map: uint8, one band, value ``i`` = ``class_names[i]`` of the checkpoint,
      255 (nodata) where the scene is nodata; tags ``classes`` (JSON list),
      ``CLASS_<i>``, ``threshold``, ``label_type``, ``checkpoint_sha256``, ``options_sha256``,
      ``source`` (the scene's file name).
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
from collections.abc import Callable, Mapping, Sequence
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
from geoembed.io.inputs import Shard
from geoembed.io.outputs import atomic_output, check_output
from geoembed.io.resume import OPTIONS_TAG, options_digest
from geoembed.io.scenes import Scene, normalize, open_scene
from geoembed.io.sharded import as_inputs, output_targets, plan
from geoembed.models.unet_cam import WeakUNet, weak_model_from_checkpoint
from geoembed.samplers.grid import WindowGrid

__all__ = ["NODATA", "SegmentConfig", "SegmentResult", "WeakPredictor", "segment"]

KIND = "weak"
NODATA = 255
OUTPUT_SUFFIX = "_segmentation.tif"


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
        self.threshold = _threshold(ckpt)
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
    status: str = "written"
    """``written``, or ``skipped`` when a rerun found the scene's outputs complete."""


def probabilities_path(out: str | os.PathLike) -> Path:
    """``<stem>_probabilities.tif`` next to the class map ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_probabilities.tif")


def report_path_for(out: str | os.PathLike) -> Path:
    """``<stem>_report.json`` next to the class map ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_report.json")


def segment(checkpoint: str | os.PathLike,
            scene: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike,
            config: SegmentConfig | None = None, *, shard: Shard | None = None,
            log: Callable[[str], None] | None = None, **options: Any
            ) -> SegmentResult | list[SegmentResult] | None:
    """Segment whole scenes with a ``weak`` checkpoint into class-map GeoTIFFs.

    Several scenes (or a directory ``out``) make a batch run like ``embed``'s: each scene's
    map is ``<scene stem>_segmentation.tif`` in ``out``, each run appends a line per output
    to its shard's manifest (:mod:`geoembed.io.manifest`), and a rerun skips maps already
    there with this checkpoint's SHA-256 and the same options (tags ``checkpoint_sha256``,
    ``options_sha256``) and their probabilities / report; temporaries left by a killed run
    are removed. One scene into a file ``out`` refuses an existing output unless
    ``overwrite``, as it always did.

    Args:
        checkpoint: a ``geoembed weak train`` checkpoint.
        scene: the raster to segment (the checkpoint's bands are used), or a sequence of
            them (in the order that defines the shards:
            :func:`geoembed.io.inputs.expand_inputs` sorts them).
        out: the class map GeoTIFF (uint8, 255 = nodata) for one scene; a directory for
            several.
        config: the options (:class:`~geoembed.inference.config.SegmentConfig`: stride,
            tile, batch_size, probabilities, reference, reference_positive, reference_map,
            report, overwrite, quiet, device, amp, prefetch, allow_no_crs).
        shard: segment only this shard's scenes (index mod count); None: all.
        log: called with one line per event (shard, skipped outputs, removed temporaries).
        **options: fields of :class:`SegmentConfig`, overriding ``config``'s.

    Returns:
        For one scene given as a path, its :class:`SegmentResult` (``report`` holds the
        scores when ``reference`` is given; None when ``shard`` does not take it); for a
        sequence, the shard's results in order (``status`` ``written`` or ``skipped``).

    Raises:
        InputError: several scenes with ``reference`` / ``report`` (one scene's grid / file),
            and the errors of one scene (CheckpointError, RasterError...): nothing is written
            for a scene that fails; finished scenes are kept.
    """
    cfg = resolve_config(SegmentConfig, config, options)
    paths = as_inputs(scene)
    output_targets(paths, out, OUTPUT_SUFFIX)  # bad --out / names: before loading the model
    if len(paths) > 1 and (cfg.reference is not None or cfg.report is not None):
        raise InputError("--reference / --report name one scene's reference and report: "
                         "segment that scene alone")
    ckpt = load_checkpoint(checkpoint, kind=KIND)
    sha = file_sha256(checkpoint)
    run = plan(paths, out, OUTPUT_SUFFIX, shard=shard, sha256=sha, overwrite=cfg.overwrite,
               log=log)
    digest = options_digest(_pixel_options(ckpt, cfg))
    todo, done = run.pending({"checkpoint_sha256": sha, OPTIONS_TAG: digest}, cfg.overwrite,
                             resume=run.batch,
                             companions=lambda i: [p for p in _companions(run.targets[i], cfg)[1:]
                                                   if p is not None])
    results = {i: _skipped(ckpt, run.targets[i], cfg) for i in done}
    predictor = WeakPredictor(ckpt, device=cfg.device, amp=cfg.amp) if todo else None
    for i in todo:
        with run.record(i):
            results[i] = _segment_scene(ckpt, predictor, paths[i], run.targets[i], cfg,
                                        (str(checkpoint), sha, digest))
    ordered = [results[i] for i in run.mine]
    if isinstance(scene, str | os.PathLike):
        return ordered[0] if ordered else None
    return ordered


def _pixel_options(ckpt: Mapping[str, Any], cfg: SegmentConfig) -> dict[str, Any]:
    """What shapes a scene's outputs besides the checkpoint (digested into a tag)."""
    return {"tile": int(cfg.tile or ckpt["tile_size"]), "stride": cfg.stride,
            "bands": list(ckpt.get("bands") or []), "probabilities": cfg.probabilities,
            "reference": None if cfg.reference is None else str(cfg.reference),
            "reference_positive": list(cfg.reference_positive or []),
            "reference_map": sorted((str(k), str(v))
                                    for k, v in (cfg.reference_map or {}).items())}


def _companions(out: Path, cfg: SegmentConfig) -> tuple[Path, Path | None, Path | None]:
    """The class map, its probabilities and its report (None when not asked for)."""
    prob_path = probabilities_path(out) if cfg.probabilities else None
    rep_path = None
    if cfg.reference is not None:
        rep_path = Path(cfg.report) if cfg.report is not None else report_path_for(out)
    return out, prob_path, rep_path


def _skipped(ckpt: Mapping[str, Any], out: Path, cfg: SegmentConfig) -> SegmentResult:
    """The result of a scene whose outputs are complete (read back, not recomputed)."""
    _, prob_path, rep_path = _companions(out, cfg)
    report = json.loads(rep_path.read_text()) if rep_path is not None else None
    names = list(ckpt["class_names"])
    return SegmentResult(path=out, probabilities=prob_path, report_path=rep_path,
                         report=report, class_names=names, threshold=_threshold(ckpt),
                         n_windows=0, seconds=0.0, status="skipped")


def _threshold(ckpt: Mapping[str, Any]) -> float | None:
    """The decision threshold of a binary model (a CAM's; 0 for pixel models), else None."""
    return float(ckpt.get("threshold") or 0.0) if len(ckpt["class_names"]) == 2 else None


def _segment_scene(ckpt: Mapping[str, Any], predictor: WeakPredictor, scene: Any, out: Path,
                   cfg: SegmentConfig, stamp: tuple[str, str, str]) -> SegmentResult:
    """Segment one scene into ``out`` (and its probabilities / report); ``stamp``: the
    checkpoint's path, its SHA-256 and the options digest."""
    t0 = time.perf_counter()
    checkpoint, sha, digest = stamp
    sc = _open_scene(scene, ckpt, cfg.allow_no_crs)
    with ExitStack() as stack:
        stack.callback(sc.close)
        grid = _window_grid(sc, ckpt, cfg)
        _, prob_path, rep_path = _companions(out, cfg)
        for p in (out, prob_path, rep_path):
            if p is not None:
                check_output(p, cfg.overwrite)
        ref = None
        if cfg.reference is not None:
            mapping, mapping_desc = reference_mapping(
                ckpt, reference_positive=cfg.reference_positive, reference_map=cfg.reference_map)
            ref = Reference(cfg.reference, sc, mapping, len(ckpt["class_names"]))
            stack.callback(ref.close)
        tags = {**_tags(ckpt, predictor, Path(checkpoint).name, sha, grid), OPTIONS_TAG: digest,
                "source": sc.name}
        stack.enter_context(streaming_cache(sc, grid.tile, _block_bytes(sc, predictor, cfg)))
        cls_out = stack.enter_context(_writer(out, sc, 1, "uint8", NODATA, ["class"], tags, cfg))
        prob_out = None if prob_path is None else stack.enter_context(_writer(
            prob_path, sc, predictor.n_classes, "float32", float("nan"),
            [f"p_{n}" for n in predictor.class_names], tags, cfg))
        _stream(sc, grid, predictor, cfg, cls_out, prob_out, ref)
        report = None
        if ref is not None and rep_path is not None:
            report = {"scene": str(sc.path), "checkpoint": checkpoint,
                      "checkpoint_sha256": sha, "reference": str(cfg.reference),
                      "mapping": mapping_desc, **ref.confusion.report(predictor.class_names)}
    if report is not None and rep_path is not None:  # last: its presence marks the scene done
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
