""":func:`run_demo`: the pipeline's steps, one small function each, on the sample data."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

import geoembed
from geoembed.analysis.preview import preview
from geoembed.analysis.similarity import similarity_map
from geoembed.demo.data import sample_data_dir
from geoembed.demo.figures import plot_overview
from geoembed.demo.measure import evaluation_metrics, reference_points, similarity_by_class
from geoembed.demo.settings import (
    CROP_IDS,
    FULL,
    MARKER,
    QUICK,
    SIMILAR_CLASS,
    WEAK_LABELS,
    WEAK_WHAT,
    DemoSettings,
    plural,
    segmentation_key,
)
from geoembed.demo.summary import format_summary
from geoembed.devices import resolve_device
from geoembed.errors import OutputExistsError
from geoembed.evaluation.evaluate import evaluate
from geoembed.inference.embedding import embed
from geoembed.inference.segmentation import segment
from geoembed.io.outputs import check_output
from geoembed.io.store import TripletStore
from geoembed.samplers.tiling import tile
from geoembed.trainers.tile2vec import train
from geoembed.trainers.weak import weak_train


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: outputs by name, measurements, seconds per step."""

    out: Path
    outputs: dict[str, Path]
    metrics: dict[str, Any]
    seconds: dict[str, float]
    settings: DemoSettings
    quick: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The summary table printed at the end of ``geoembed demo`` (markdown)."""
        return format_summary(self)


@dataclass
class _Run:
    """One demo run's state: settings and places, and what the steps have produced."""

    s: DemoSettings
    out: Path
    device: str
    quiet: bool
    say: Callable[[str], None]
    data: Path = Path()
    outputs: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    step_no: int = 0

    @property
    def scene(self) -> Path:
        return self.data / "scene.tif"

    @property
    def landcover(self) -> Path:
        return self.data / "landcover.tif"

    @property
    def common(self) -> dict[str, Any]:
        """Keyword arguments every library call of the demo takes."""
        return {"overwrite": True, "quiet": self.quiet}

    @contextmanager
    def step(self, key: str, name: str, what: str) -> Iterator[None]:
        """Announce step ``name`` and time it into ``seconds[key]``."""
        self.step_no += 1
        self.say(f"[{self.step_no}/{7 + 2 * len(self.s.weak_modes)}] {name}: {what}")
        t0 = time.perf_counter()
        yield
        self.seconds[key] = time.perf_counter() - t0


def run_demo(out: str | os.PathLike = "demo_output", *, quick: bool = False,
             overwrite: bool = False, quiet: bool = False, device: str = "auto",
             echo: Callable[[str], None] | None = None,
             settings: DemoSettings | None = None) -> DemoResult:
    """Run the whole pipeline on the sample data into ``out``.

    The sample data is the checkout's ``sample_data/``; an installed geoembed generates the
    same files once into a cache folder (see :func:`geoembed.demo.sample_data_dir`).

    Args:
        out: the demo directory (created; refused if it exists unless ``overwrite``).
        quick: tiny settings (:data:`QUICK`, for tests) instead of :data:`FULL`.
        overwrite: replace a previous demo directory.
        quiet: no progress bars.
        device: torch device of every step (``auto``, ``cpu``, ``cuda``, ``mps``).
        echo: called with one line per step as it starts (e.g. ``print``); None: silent.
        settings: explicit sizes (overrides ``quick``).

    Returns:
        :class:`DemoResult`; ``result.summary()`` is the table the CLI prints.

    Raises:
        OutputExistsError: ``out`` exists (without ``overwrite``) or is not a demo directory.
        InputError: the sample data is missing and cannot be generated.
        DeviceError: an absent ``device``.
    """
    run = _Run(s=settings or (QUICK if quick else FULL), out=Path(out), device=device,
               quiet=quiet, say=echo or (lambda msg: None))
    resolve_device(device)  # fail before writing anything
    _check_out(run.out, overwrite)
    _reset_out(run.out)
    run.data = sample_data_dir(fallback=run.out / "sample_data", echo=run.say)
    store = _tile(run)
    checkpoint = _train(run, store)
    embeddings = _embed(run, checkpoint)
    _preview(run, embeddings)
    _similar(run, embeddings)
    _evaluate(run, checkpoint)
    run.metrics["weak"] = {}
    for mode in run.s.weak_modes:
        _weak(run, mode)
    return _finish(run, quick=quick and settings is None)


def _check_out(out: Path, overwrite: bool) -> None:
    """The output policy, plus the demo's own: ``overwrite`` only replaces a demo directory
    (one holding :data:`MARKER`) or an empty one, never a file or another directory."""
    check_output(out, overwrite)
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputExistsError(f"{out} is a file, not a demo directory; choose another "
                                "--out")
    if any(out.iterdir()) and not (out / MARKER).exists():
        raise OutputExistsError(f"{out} is not a geoembed demo directory (no {MARKER}); "
                                "--overwrite only replaces a previous demo: choose "
                                "another --out")


def _reset_out(out: Path) -> None:
    """An empty ``out`` holding only the marker file (a checked previous demo is deleted)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by `geoembed demo`; --overwrite may delete this "
                              "directory\n")


def _tile(run: _Run) -> TripletStore:
    s = run.s
    with run.step("tile", "tile", f"{s.n_triplets} triplets of {s.tile_size} px tiles from "
                                  f"{run.scene.name}"):
        store = tile([run.scene], run.out / "triplets", n_triplets=s.n_triplets,
                     tile_size=s.tile_size, neighborhood=s.neighborhood, seed=0, **run.common)
    run.outputs["triplets"] = store.path
    run.metrics["tile"] = {"n_triplets": store.n_triplets, "tile_size": store.tile_size,
                           "neighborhood": s.neighborhood, "bands": store.band_count}
    return store


def _train(run: _Run, store: TripletStore) -> Path:
    s = run.s
    with run.step("train", "train", f"TileNet (base width {s.base_width}, z_dim {s.z_dim}, "
                                    f"pooling {s.pooling}), {plural(s.epochs, 'epoch')}"):
        fit = train(store.path, run.out / "run", z_dim=s.z_dim, base_width=s.base_width,
                    pooling=s.pooling, epochs=s.epochs, batch_size=s.batch_size, seed=0,
                    device=run.device, **run.common)
    folder = fit.checkpoint.parent
    run.outputs.update(checkpoint=fit.checkpoint, metrics_csv=folder / "metrics.csv",
                       loss_plot=folder / "loss.png")
    first, last = fit.history[0], fit.history[-1]
    run.metrics["train"] = {
        "epochs": int(last["epoch"]), "first_loss": first["loss"], "final_loss": last["loss"],
        "d_an": last["d_an"], "d_ad": last["d_ad"], "violated": last["violated"],
        "triplets_per_s": last.get("triplets_per_s")}
    return fit.checkpoint


def _embed(run: _Run, checkpoint: Path) -> Path:
    stride = run.s.embed_stride
    with run.step("embed", "embed", f"the whole scene, stride {stride} px"):
        path = embed(checkpoint, run.scene, run.out / "embeddings.tif", stride=stride,
                     device=run.device, **run.common)[0]
    run.outputs["embeddings"] = path
    with rasterio.open(path) as ds:
        run.metrics["embed"] = {"bands": ds.count, "width": ds.width, "height": ds.height,
                                "dtype": ds.dtypes[0], "stride": stride}
    return path


def _preview(run: _Run, embeddings: Path) -> None:
    with run.step("preview", "preview", "PCA of the embeddings as RGB"):
        pv = preview(embeddings, run.out / "preview.png", max_size=run.s.preview_size,
                     **run.common)
    run.outputs["preview"] = pv.path
    run.metrics["preview"] = {"explained_variance_ratio": pv.explained_variance_ratio}


def _similar(run: _Run, embeddings: Path) -> None:
    n = run.s.similarity_points
    with run.step("similar", "similar", f"cosine similarity to {n} {SIMILAR_CLASS} points"):
        xs, ys, crs = reference_points(embeddings, run.data / "points.gpkg", SIMILAR_CLASS, n)
        path, _ = similarity_map(embeddings, xs, ys, run.out / "similarity.tif", crs=crs,
                                 **run.common)
    run.outputs["similarity"] = path
    run.metrics["similar"] = {"reference_class": SIMILAR_CLASS, "n_points": len(xs),
                              "mean_by_class": similarity_by_class(path, run.landcover)}


def _evaluate(run: _Run, checkpoint: Path) -> None:
    s = run.s
    with run.step("evaluate", "evaluate",
                  "classifiers on the embedding vs. baselines (spatial and random CV)"):
        ev = evaluate(run.scene, run.out / "evaluation", labels=run.data / "points.gpkg",
                      label_column="class", checkpoint=checkpoint, classifier=s.eval_classifier,
                      cv=s.eval_cv, learning_curve_sizes=s.eval_sizes, repeats=s.eval_repeats,
                      pca_tiles=s.eval_pca_tiles, max_labels=s.eval_max_labels, seed=0,
                      device=run.device, **run.common)
    run.notes.extend(ev.warnings)
    run.outputs.update(evaluation_report=ev.out_dir / "report.json",
                       learning_curve=ev.out_dir / "learning_curve.png",
                       confusion=ev.out_dir / "confusion.png")
    run.metrics["evaluate"] = evaluation_metrics(ev.report)


def _weak(run: _Run, mode: str) -> None:
    """Weak-label training in ``mode`` and the crop map it gives, scored against the truth."""
    s, epochs = run.s, run.s.weak_epochs[mode]
    with run.step(f"weak_{mode}", f"weak train ({mode})",
                  f"U-Net from {WEAK_WHAT[mode]}, {plural(epochs, 'epoch')}"):
        wr = weak_train(run.scene, run.data / WEAK_LABELS[mode], run.out / "weak" / mode,
                        label_type=mode, label_column="crop", tile_size=s.weak_tile[mode],
                        encoder="resnet18", encoder_depth=len(s.unet_decoder),
                        decoder_channels=s.unet_decoder, epochs=epochs, batch_size=32,
                        max_labels=s.weak_max_labels, seed=0, device=run.device, **run.common)
    run.outputs[f"weak_{mode}_checkpoint"] = wr.checkpoint
    key = segmentation_key(mode)
    with run.step(f"segment_{mode}", f"segment ({mode})",
                  f"the scene, scored against {run.landcover.name}"):
        seg = segment(wr.checkpoint, run.scene, run.out / f"{key}.tif", tile=s.segment_tile,
                      stride=s.segment_stride, batch_size=4, reference=run.landcover,
                      reference_positive=list(CROP_IDS), device=run.device, **run.common)
    run.outputs[key] = seg.path
    run.outputs[f"{key}_report"] = seg.report_path
    crop = seg.report["classes"][seg.class_names[1]]
    run.metrics["weak"][mode] = {
        "n_labels": wr.n_labels, "epochs": epochs, "final_loss": wr.history[-1]["loss"],
        "threshold": wr.threshold, "crop_f1": crop["f1"], "crop_iou": crop["iou"],
        "crop_precision": crop["precision"], "crop_recall": crop["recall"],
        "accuracy": seg.report["accuracy"]}


def _finish(run: _Run, quick: bool) -> DemoResult:
    """The overview picture, ``summary.md`` and ``demo.json``."""
    out = run.out
    with run.step("overview", "overview", "a picture of the outputs"):
        plot_overview(out, out / "overview.png", run.data)
    run.outputs.update(overview=out / "overview.png", summary=out / "summary.md",
                       demo_json=out / "demo.json")
    result = DemoResult(out=out, outputs=run.outputs, metrics=run.metrics,
                        seconds=run.seconds, settings=run.s, quick=quick, notes=run.notes)
    (out / "summary.md").write_text(result.summary() + "\n")
    (out / "demo.json").write_text(json.dumps({
        "geoembed_version": geoembed.__version__,
        "quick": result.quick,
        "seconds": run.seconds,
        "total_seconds": sum(run.seconds.values()),
        "metrics": run.metrics,
        "outputs": {k: str(v) for k, v in run.outputs.items()},
        "settings": asdict(run.s),
        "notes": run.notes,
    }, indent=1, default=_json_default) + "\n")
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
