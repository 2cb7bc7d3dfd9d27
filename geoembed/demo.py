"""``geoembed demo``: the whole pipeline on the bundled sample data, small enough for a CPU.

:func:`run_demo` runs, with the library's Python API, on ``sample_data/`` (a synthetic
1024 x 1024 px, 4-band scene whose true land cover is known, see ``sample_data/README.md``):

1. ``tile``: Tile2Vec triplets from ``scene.tif`` -> ``out/triplets/``;
2. ``train``: a small TileNet with the triplet loss -> ``out/run/`` (``checkpoint.pt``,
   ``metrics.csv``, ``loss.png``);
3. ``embed``: the whole scene -> ``out/embeddings.tif`` (one embedding per output pixel);
4. ``preview``: ``out/preview.png`` (first three principal components as RGB) and
   ``similar``: ``out/similarity.tif`` (cosine similarity to a few grassland points:
   grassland has the same per-pixel spectra as cropland, only its texture differs);
5. ``evaluate``: land-cover classifiers on the embedding against baselines (band values,
   tile mean/std, an untrained encoder, PCA of the tile), spatial and random CV ->
   ``out/evaluation/``;
6. ``weak train``: U-Nets from one labelled pixel per tile (``out/weak/pixel/``) and, in the
   full demo, from one label per tile through class activation maps (``out/weak/image/``);
7. ``segment``: crop maps of the scene scored against the true land cover ->
   ``out/segmentation*.tif`` and ``out/segmentation*_report.json``;
8. ``out/overview.png`` (a picture of it all), ``out/summary.md`` and ``out/demo.json``
   (what was measured, the settings, the seconds per step and where every file is).

The scores are measured on the scene the models were trained on (its labels are sparse:
596 points, one pixel or one label per 50 x 50 tile); ``bench/`` measures held-out scenes.
Each step writes its outputs atomically; a demo that fails part way leaves the steps that
finished. ``overwrite`` replaces a previous demo directory (and refuses to delete a directory
that is not one).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import geoembed
from geoembed.errors import InputError, OutputExistsError

#: Marker file that identifies a demo output directory (so ``overwrite`` may delete it).
MARKER = ".geoembed-demo"
#: The texture-only classes of the sample data (same per-pixel spectra within each pair).
TEXTURE_CLASSES = ("cropland", "grassland", "orchard", "shrubland")
#: The class of the similarity search's reference points (cropland's texture twin).
SIMILAR_CLASS = "grassland"
#: Land-cover ids of the crop classes (cropland, orchard) in ``landcover.tif``.
CROP_IDS = ("3", "5")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run (see :data:`FULL` and :data:`QUICK`)."""

    n_triplets: int
    tile_size: int
    neighborhood: int
    base_width: int
    z_dim: int
    epochs: int
    batch_size: int
    embed_stride: int
    eval_classifier: str
    eval_cv: str
    eval_sizes: str
    eval_repeats: int
    eval_pca_tiles: int
    eval_max_labels: int | None
    weak_modes: tuple[str, ...]
    weak_epochs: dict[str, int]
    weak_tile: dict[str, int]
    weak_max_labels: int | None
    unet_decoder: tuple[int, ...]
    segment_tile: int
    segment_stride: int
    similarity_points: int
    preview_size: int


#: The demo of ``make demo``: a few minutes on 2 CPU cores, large enough to show that the
#: embedding separates the texture-only classes that per-pixel values and tile statistics
#: cannot.
FULL = DemoSettings(
    n_triplets=3000, tile_size=32, neighborhood=32, base_width=8, z_dim=64, epochs=5,
    batch_size=50, embed_stride=8, eval_classifier="logreg", eval_cv="both",
    eval_sizes="10,20,50,100,200,all", eval_repeats=3, eval_pca_tiles=500,
    eval_max_labels=None, weak_modes=("pixel", "image"),
    weak_epochs={"pixel": 20, "image": 8}, weak_tile={"pixel": 32, "image": 50},
    weak_max_labels=None, unet_decoder=(32, 16, 8), segment_tile=256, segment_stride=192,
    similarity_points=10, preview_size=512,
)
#: ``--quick``: tiny sizes that exercise every step in well under a minute (for tests).
QUICK = DemoSettings(
    n_triplets=200, tile_size=32, neighborhood=32, base_width=4, z_dim=8, epochs=1,
    batch_size=50, embed_stride=32, eval_classifier="logreg", eval_cv="both",
    eval_sizes="20,all", eval_repeats=1, eval_pca_tiles=64, eval_max_labels=200,
    weak_modes=("pixel",), weak_epochs={"pixel": 1, "image": 1},
    weak_tile={"pixel": 32, "image": 50}, weak_max_labels=64, unet_decoder=(8, 8, 8),
    segment_tile=256, segment_stride=256, similarity_points=3, preview_size=256,
)


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


def sample_data_dir() -> Path:
    """The ``sample_data/`` directory of the source checkout (next to the package)."""
    d = Path(geoembed.__file__).resolve().parent.parent / "sample_data"
    if not (d / "scene.tif").is_file():
        raise InputError(
            f"sample data not found in {d}; run the demo from a source checkout, or "
            "generate it with `python -m geoembed.synthetic sample_data --overwrite`"
        )
    return d


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
        if not out.is_dir():
            raise OutputExistsError(f"{out} is a file, not a demo directory; choose another "
                                    "--out")
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise OutputExistsError(f"{out} is not a geoembed demo directory (no {MARKER}); "
                                    "--overwrite only replaces a previous demo: choose "
                                    "another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by `geoembed demo`; --overwrite may delete this "
                              "directory\n")


def run_demo(out: str | os.PathLike = "demo_output", *, quick: bool = False,
             overwrite: bool = False, quiet: bool = False, device: str = "auto",
             echo: Callable[[str], None] | None = None,
             settings: DemoSettings | None = None) -> DemoResult:
    """Run the whole pipeline on ``sample_data/`` into ``out``.

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
        InputError: the sample data is missing. DeviceError: an absent ``device``.
    """
    from geoembed.devices import resolve_device

    s = settings or (QUICK if quick else FULL)
    say = echo or (lambda msg: None)
    data = sample_data_dir()
    resolve_device(device)  # fail before writing anything
    out = Path(out)
    _prepare_out(out, overwrite)
    scene, landcover = data / "scene.tif", data / "landcover.tif"
    outputs: dict[str, Path] = {}
    metrics: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    notes: list[str] = []
    n_steps = 7 + len(s.weak_modes) * 2
    step_no = [0]

    def step(name: str, what: str) -> float:
        step_no[0] += 1
        say(f"[{step_no[0]}/{n_steps}] {name}: {what}")
        return time.perf_counter()

    # 1. tile
    from geoembed.io.store import tile

    t0 = step("tile", f"{s.n_triplets} triplets of {s.tile_size} px tiles from {scene.name}")
    store = tile([scene], out / "triplets", n_triplets=s.n_triplets, tile_size=s.tile_size,
                 neighborhood=s.neighborhood, seed=0, overwrite=True, quiet=quiet)
    seconds["tile"] = time.perf_counter() - t0
    outputs["triplets"] = store.path
    metrics["tile"] = {"n_triplets": store.n_triplets, "tile_size": store.tile_size,
                       "neighborhood": s.neighborhood, "bands": store.band_count}

    # 2. train
    from geoembed.trainers.tile2vec import train

    t0 = step("train", f"TileNet (base width {s.base_width}, z_dim {s.z_dim}), "
                       f"{_plural(s.epochs, 'epoch')}")
    fit = train(store.path, out / "run", z_dim=s.z_dim, base_width=s.base_width,
                epochs=s.epochs, batch_size=s.batch_size, seed=0, device=device,
                overwrite=True, quiet=quiet)
    seconds["train"] = time.perf_counter() - t0
    run = fit.checkpoint.parent
    outputs.update(checkpoint=fit.checkpoint, metrics_csv=run / "metrics.csv",
                   loss_plot=run / "loss.png")
    first, last = fit.history[0], fit.history[-1]
    metrics["train"] = {"epochs": int(last["epoch"]), "first_loss": first["loss"],
                        "final_loss": last["loss"], "d_an": last["d_an"], "d_ad": last["d_ad"],
                        "violated": last["violated"],
                        "triplets_per_s": last.get("triplets_per_s")}

    # 3. embed
    from geoembed.inference.embedding import embed

    t0 = step("embed", f"the whole scene, stride {s.embed_stride} px")
    emb_path = embed(fit.checkpoint, scene, out / "embeddings.tif", stride=s.embed_stride,
                     device=device, overwrite=True, quiet=quiet)[0]
    seconds["embed"] = time.perf_counter() - t0
    outputs["embeddings"] = emb_path
    import rasterio

    with rasterio.open(emb_path) as ds:
        metrics["embed"] = {"bands": ds.count, "width": ds.width, "height": ds.height,
                            "dtype": ds.dtypes[0], "stride": s.embed_stride}

    # 4. preview + similar
    from geoembed.analysis.preview import preview
    from geoembed.analysis.similarity import similarity_map

    t0 = step("preview", "PCA of the embeddings as RGB")
    pv = preview(emb_path, out / "preview.png", max_size=s.preview_size, overwrite=True,
                 quiet=quiet)
    seconds["preview"] = time.perf_counter() - t0
    outputs["preview"] = pv.path
    metrics["preview"] = {"explained_variance_ratio": pv.explained_variance_ratio}

    t0 = step("similar", f"cosine similarity to {s.similarity_points} {SIMILAR_CLASS} points")
    xs, ys, crs = reference_points(emb_path, data / "points.gpkg", SIMILAR_CLASS,
                                   s.similarity_points)
    sim_path, _ = similarity_map(emb_path, xs, ys, out / "similarity.tif", crs=crs,
                                 overwrite=True, quiet=quiet)
    seconds["similar"] = time.perf_counter() - t0
    outputs["similarity"] = sim_path
    metrics["similar"] = {"reference_class": SIMILAR_CLASS, "n_points": len(xs),
                          "mean_by_class": similarity_by_class(sim_path, landcover)}

    # 5. evaluate
    from geoembed.evaluation.evaluate import evaluate

    t0 = step("evaluate", "classifiers on the embedding vs. baselines (spatial and random CV)")
    ev = evaluate(scene, out / "evaluation", labels=data / "points.gpkg", label_column="class",
                  checkpoint=fit.checkpoint, classifier=s.eval_classifier, cv=s.eval_cv,
                  learning_curve_sizes=s.eval_sizes, repeats=s.eval_repeats,
                  pca_tiles=s.eval_pca_tiles, max_labels=s.eval_max_labels, seed=0,
                  device=device, overwrite=True, quiet=quiet)
    seconds["evaluate"] = time.perf_counter() - t0
    notes.extend(ev.warnings)
    outputs.update(evaluation_report=ev.out_dir / "report.json",
                   learning_curve=ev.out_dir / "learning_curve.png",
                   confusion=ev.out_dir / "confusion.png")
    metrics["evaluate"] = evaluation_metrics(ev.report)

    # 6-7. weak train + segment
    from geoembed.inference.segmentation import segment
    from geoembed.trainers.weak import weak_train

    labels = {"pixel": data / "weak_points.gpkg", "image": data / "weak_tiles.gpkg"}
    what = {"pixel": "one labelled pixel per tile", "image": "one label per tile (CAM)"}
    metrics["weak"] = {}
    for mode in s.weak_modes:
        t0 = step(f"weak train ({mode})", f"U-Net from {what[mode]}, "
                                          f"{_plural(s.weak_epochs[mode], 'epoch')}")
        wr = weak_train(scene, labels[mode], out / "weak" / mode, label_type=mode,
                        label_column="crop", tile_size=s.weak_tile[mode], encoder="resnet18",
                        encoder_depth=len(s.unet_decoder), decoder_channels=s.unet_decoder,
                        epochs=s.weak_epochs[mode], batch_size=32,
                        max_labels=s.weak_max_labels, seed=0, device=device, overwrite=True,
                        quiet=quiet)
        seconds[f"weak_{mode}"] = time.perf_counter() - t0
        outputs[f"weak_{mode}_checkpoint"] = wr.checkpoint

        name = "segmentation.tif" if mode == "pixel" else f"segmentation_{mode}.tif"
        t0 = step(f"segment ({mode})", f"the scene, scored against {landcover.name}")
        seg = segment(wr.checkpoint, scene, out / name, tile=s.segment_tile,
                      stride=s.segment_stride, batch_size=4, reference=landcover,
                      reference_positive=list(CROP_IDS), overwrite=True, quiet=quiet,
                      device=device)
        seconds[f"segment_{mode}"] = time.perf_counter() - t0
        key = "segmentation" if mode == "pixel" else f"segmentation_{mode}"
        outputs[key] = seg.path
        outputs[f"{key}_report"] = seg.report_path
        crop = seg.report["classes"][seg.class_names[1]]
        metrics["weak"][mode] = {
            "n_labels": wr.n_labels, "epochs": s.weak_epochs[mode],
            "final_loss": wr.history[-1]["loss"], "threshold": wr.threshold,
            "crop_f1": crop["f1"], "crop_iou": crop["iou"], "crop_precision":
            crop["precision"], "crop_recall": crop["recall"],
            "accuracy": seg.report["accuracy"]}

    # 8. overview, summary, demo.json
    t0 = step("overview", "a picture of the outputs")
    plot_overview(out, out / "overview.png", data)
    seconds["overview"] = time.perf_counter() - t0
    outputs["overview"] = out / "overview.png"
    outputs["summary"] = out / "summary.md"
    outputs["demo_json"] = out / "demo.json"
    result = DemoResult(out=out, outputs=outputs, metrics=metrics, seconds=seconds,
                        settings=s, quick=quick and settings is None, notes=notes)
    (out / "summary.md").write_text(result.summary() + "\n")
    (out / "demo.json").write_text(json.dumps({
        "geoembed_version": geoembed.__version__,
        "quick": result.quick,
        "seconds": seconds,
        "total_seconds": sum(seconds.values()),
        "metrics": metrics,
        "outputs": {k: str(v) for k, v in outputs.items()},
        "settings": asdict(s),
        "notes": notes,
    }, indent=1, default=_json_default) + "\n")
    return result


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ------------------------------------------------------------------------------ measurements

def reference_points(embeddings: str | os.PathLike, points: str | os.PathLike,
                     class_name: str, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``n`` points of class ``class_name`` that have a valid embedding.

    Returns ``(xs, ys, crs)`` in the points file's CRS.
    """
    import geopandas as gpd

    from geoembed.io.embeddings import sample_embeddings

    gdf = gpd.read_file(points)
    gdf = gdf[gdf["class"] == class_name]
    crs = gdf.crs.to_string()
    xs, ys = gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy()
    _, valid = sample_embeddings(embeddings, xs, ys, crs=crs)
    if not valid.any():
        raise InputError(f"no {class_name} point of {points} has an embedding")
    keep = np.flatnonzero(valid)[:n]
    return xs[keep], ys[keep], crs


def similarity_by_class(similarity: str | os.PathLike, landcover: str | os.PathLike
                        ) -> dict[str, float]:
    """Mean similarity per true class, at the similarity raster's pixel centers."""
    import rasterio

    with rasterio.open(similarity) as ds:
        sim = ds.read(1)
        rows, cols = np.mgrid[0:ds.height, 0:ds.width]
        xs, ys = ds.transform @ (cols.ravel() + 0.5, rows.ravel() + 0.5)
    with rasterio.open(landcover) as lc:
        names = {int(k.split("_", 1)[1]): v for k, v in lc.tags().items()
                 if k.startswith("CLASS_")}
        lc_cols, lc_rows = ~lc.transform @ (np.asarray(xs), np.asarray(ys))
        lc_rows = np.clip(np.floor(lc_rows).astype(int), 0, lc.height - 1)
        lc_cols = np.clip(np.floor(lc_cols).astype(int), 0, lc.width - 1)
        truth = lc.read(1)[lc_rows, lc_cols]
    values = sim.ravel()
    ok = np.isfinite(values) & (truth != lc.nodata)
    return {names.get(int(c), str(c)): float(values[ok & (truth == c)].mean())
            for c in np.unique(truth[ok])}


def evaluation_metrics(report: dict) -> dict[str, Any]:
    """Per feature set x classifier x CV: accuracy, macro-F1 and the mean F1 of the
    texture-only classes (the ones per-pixel values cannot separate)."""
    rows = []
    for r in report["results"]:
        tex = [r["per_class"][c]["f1"] for c in TEXTURE_CLASSES if c in r["per_class"]]
        rows.append({"features": r["features"], "classifier": r["classifier"], "cv": r["cv"],
                     "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                     "texture_f1": float(np.mean(tex)) if tex else float("nan")})
    return {"n_labels": report["n_labels"], "folds": report["folds"], "rows": rows,
            "best": report["best"]}


# ------------------------------------------------------------------------------ summary

def _rel(path: Path, out: Path) -> str:
    try:
        return str(Path(path).relative_to(out))
    except ValueError:
        return str(path)


def format_summary(result: DemoResult) -> str:
    """Two markdown tables: what each step measured and where its files are, then the
    evaluation of the embedding against the baselines."""
    m, o, out = result.metrics, result.outputs, result.out
    sec = result.seconds

    def files(*keys: str) -> str:
        return ", ".join(_rel(o[k], out) for k in keys if k in o)

    tr, em, ev = m["train"], m["embed"], m["evaluate"]
    sim = m["similar"]["mean_by_class"]
    lines = [
        f"geoembed demo{' (--quick)' if result.quick else ''}: "
        f"{sum(sec.values()):.0f} s; outputs in {out}/",
        "",
        "| step | result | files | s |",
        "|---|---|---|---:|",
        f"| tile | {m['tile']['n_triplets']} triplets, {m['tile']['tile_size']} px tiles, "
        f"neighborhood {m['tile']['neighborhood']} px | {files('triplets')}/ | "
        f"{sec['tile']:.0f} |",
        f"| train | TileNet, {_plural(tr['epochs'], 'epoch')}: triplet loss "
        f"{tr['first_loss']:.2f} -> {tr['final_loss']:.2f}; d(a,n) {tr['d_an']:.2f} vs "
        f"d(a,d) {tr['d_ad']:.2f} | "
        f"{files('checkpoint', 'metrics_csv', 'loss_plot')} | {sec['train']:.0f} |",
        f"| embed | {em['bands']} bands x {em['width']} x {em['height']} px ({em['dtype']}, "
        f"stride {em['stride']} px) | {files('embeddings')} | {sec['embed']:.0f} |",
        "| preview | PCA explained variance "
        + ", ".join(f"{v:.2f}" for v in m["preview"]["explained_variance_ratio"])
        + f" | {files('preview')} | {sec['preview']:.0f} |",
        f"| similar | to {m['similar']['n_points']} {m['similar']['reference_class']} points: "
        "mean cosine " + ", ".join(f"{k} {sim[k]:.2f}" for k in (
            m["similar"]["reference_class"], "cropland") if k in sim)
        + " (same spectra, other texture)"
        + f" | {files('similarity')} | {sec['similar']:.0f} |",
    ]
    best = {}
    for r in ev["rows"]:
        if r["cv"] == "spatial":
            best.setdefault(r["features"], r)
    emb, stats = best.get("embedding"), best.get("tile-stats")
    if emb and stats:
        lines.append(
            f"| evaluate | {ev['n_labels']} labels, spatial CV: macro-F1 embedding "
            f"{emb['macro_f1']:.2f} vs tile-stats {stats['macro_f1']:.2f}; texture classes "
            f"{emb['texture_f1']:.2f} vs {stats['texture_f1']:.2f} | "
            f"{files('evaluation_report', 'learning_curve', 'confusion')} | "
            f"{sec['evaluate']:.0f} |")
    for mode, w in m["weak"].items():
        key = "segmentation" if mode == "pixel" else f"segmentation_{mode}"
        label = {"pixel": "single-pixel labels", "image": "image-level labels (CAM)"}[mode]
        lines.append(
            f"| weak train + segment | {label}, {w['n_labels']} tiles: crop F1 "
            f"{w['crop_f1']:.2f}, IoU {w['crop_iou']:.2f} (pixel accuracy "
            f"{w['accuracy']:.2f}) | {files(f'weak_{mode}_checkpoint', key, key + '_report')}"
            f" | {sec[f'weak_{mode}'] + sec[f'segment_{mode}']:.0f} |")
    lines.append(f"| overview | scene, land cover, PCA, similarity, segmentation | "
                 f"{files('overview', 'summary', 'demo_json')} | {sec['overview']:.0f} |")
    lines += ["", "Land-cover classification on the embedding vs. baselines (logistic "
              "regression; texture = mean F1 of cropland, grassland, orchard, shrubland):",
              "", "| features | cv | accuracy | macro-F1 | texture F1 |",
              "|---|---|---:|---:|---:|"]
    for r in ev["rows"]:
        lines.append(f"| {r['features']} | {r['cv']} | {r['accuracy']:.3f} | "
                     f"{r['macro_f1']:.3f} | {r['texture_f1']:.3f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ pictures

def scene_rgb(path: str | os.PathLike, bands: tuple[int, int, int] = (3, 2, 1),
              max_size: int = 512) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """An RGB rendering (2-98 % stretch per band, nodata white) of a scene, decimated to at
    most ``max_size`` px, and its extent ``(left, right, bottom, top)`` for ``imshow``."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as ds:
        scale = min(1.0, max_size / max(ds.width, ds.height))
        shape = (max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
        data = ds.read(list(bands), out_shape=(3, *shape),
                       resampling=Resampling.average).astype(np.float32)
        mask = ds.read_masks(1, out_shape=shape) > 0
        b = ds.bounds
    rgb = np.ones((*shape, 3), dtype=np.float32)
    for i in range(3):
        v = data[i][mask]
        lo, hi = np.percentile(v, [2, 98]) if v.size else (0.0, 1.0)
        rgb[..., i] = np.where(mask, np.clip((data[i] - lo) / max(hi - lo, 1e-6), 0, 1), 1.0)
    return rgb, (b.left, b.right, b.bottom, b.top)


def class_colors(data: str | os.PathLike | None = None) -> tuple[list[str], list[str]]:
    """Names and colours of the sample data's classes (``classes.json``), in id order."""
    classes = json.loads((Path(data or sample_data_dir()) / "classes.json").read_text())
    classes = sorted(classes, key=lambda c: c["id"])
    return [c["name"] for c in classes], [c["color"] for c in classes]


def landcover_rgb(path: str | os.PathLike, data: str | os.PathLike | None = None,
                  max_size: int = 512) -> np.ndarray:
    """The true land cover as an RGB picture (nodata white)."""
    import rasterio
    from matplotlib.colors import to_rgb
    from rasterio.enums import Resampling

    _, colors = class_colors(data)
    with rasterio.open(path) as ds:
        scale = min(1.0, max_size / max(ds.width, ds.height))
        shape = (max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
        lc = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
    lut = np.ones((256, 3), dtype=np.float32)
    for i, c in enumerate(colors):
        lut[i] = to_rgb(c)
    return lut[lc]


def crop_comparison_rgb(segmentation: str | os.PathLike, landcover: str | os.PathLike,
                        crop_ids: tuple[str, ...] = CROP_IDS, max_size: int = 512
                        ) -> np.ndarray:
    """Crop map vs. truth as RGB: true positive green, false positive red, false negative
    blue, true negative light grey, nodata white."""
    import rasterio
    from rasterio.enums import Resampling

    def read(path: str | os.PathLike) -> tuple[np.ndarray, Any]:
        with rasterio.open(path) as ds:
            scale = min(1.0, max_size / max(ds.width, ds.height))
            shape = (max(1, round(ds.height * scale)), max(1, round(ds.width * scale)))
            return ds.read(1, out_shape=shape, resampling=Resampling.nearest), ds.nodata

    seg, seg_nd = read(segmentation)
    lc, lc_nd = read(landcover)
    valid = (seg != seg_nd) & (lc != lc_nd)
    truth = np.isin(lc, [int(c) for c in crop_ids])
    pred = seg == 1
    rgb = np.ones((*seg.shape, 3), dtype=np.float32)
    rgb[valid & truth & pred] = (0.20, 0.63, 0.17)
    rgb[valid & ~truth & pred] = (0.89, 0.10, 0.11)
    rgb[valid & truth & ~pred] = (0.12, 0.47, 0.71)
    rgb[valid & ~truth & ~pred] = (0.85, 0.85, 0.85)
    return rgb


def plot_overview(demo_dir: str | os.PathLike, path: str | os.PathLike,
                  data: str | os.PathLike | None = None, dpi: int = 80) -> Path:
    """One PNG of the demo: scene, true land cover, PCA preview, similarity to grassland,
    and the single-pixel-label crop map against the truth."""
    import rasterio
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone
    from matplotlib.image import imread
    from matplotlib.patches import Patch

    from geoembed.io.outputs import replace_path, temporary_sibling

    demo_dir, data = Path(demo_dir), Path(data or sample_data_dir())
    rgb, extent = scene_rgb(data / "scene.tif")
    names, colors = class_colors(data)
    fig = Figure(figsize=(20, 4.6))
    axes = fig.subplots(1, 5)
    axes[0].imshow(rgb, extent=extent)
    axes[0].set_title("scene (RGB)")
    axes[1].imshow(landcover_rgb(data / "landcover.tif", data), extent=extent)
    axes[1].set_title("true land cover")
    axes[1].legend(handles=[Patch(color=c, label=n) for n, c in zip(names, colors,
                                                                    strict=True)],
                   fontsize=7, loc="lower left", framealpha=0.8)
    axes[2].imshow(imread(demo_dir / "preview.png"), extent=_extent(
        demo_dir / "embeddings.tif"))
    axes[2].set_title("embedding, PCA as RGB")
    with rasterio.open(demo_dir / "similarity.tif") as ds:
        sim = ds.read(1)
        sim_extent = (ds.bounds.left, ds.bounds.right, ds.bounds.bottom, ds.bounds.top)
    im = axes[3].imshow(sim, extent=sim_extent, cmap="magma", vmin=np.nanpercentile(sim, 2),
                        vmax=1)
    fig.colorbar(im, ax=axes[3], fraction=0.046, pad=0.02)
    axes[3].set_title(f"cosine similarity to {SIMILAR_CLASS}")
    seg = demo_dir / "segmentation.tif"
    axes[4].imshow(crop_comparison_rgb(seg, data / "landcover.tif"), extent=extent)
    axes[4].legend(handles=[Patch(color=c, label=n) for c, n in (
        ((0.20, 0.63, 0.17), "crop, found"), ((0.89, 0.10, 0.11), "false crop"),
        ((0.12, 0.47, 0.71), "crop, missed"), ((0.85, 0.85, 0.85), "not crop"))],
        fontsize=7, loc="lower left", framealpha=0.8)
    axes[4].set_title("crop map (single-pixel labels) vs. truth")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    fig.tight_layout()
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        replace_path(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _extent(path: str | os.PathLike) -> tuple[float, float, float, float]:
    import rasterio

    with rasterio.open(path) as ds:
        b = ds.bounds
    return b.left, b.right, b.bottom, b.top
