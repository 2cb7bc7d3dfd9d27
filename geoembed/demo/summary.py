"""The demo's summary: a markdown table of what each step measured and where its files are,
then the evaluation of the embedding against the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoembed.demo.settings import plural, segmentation_key

if TYPE_CHECKING:  # the result type only; run.py imports this module
    from geoembed.demo.run import DemoResult

WEAK_LABEL_NAMES = {"pixel": "single-pixel labels", "image": "image-level labels (CAM)"}


def format_summary(result: DemoResult) -> str:
    """Two markdown tables: what each step measured and where its files are, then the
    evaluation of the embedding against the baselines."""
    out, sec = result.out, result.seconds
    lines = [f"geoembed demo{' (--quick)' if result.quick else ''}: "
             f"{sum(sec.values()):.0f} s; outputs in {out}/", "",
             "| step | result | files | s |", "|---|---|---|---:|"]
    lines += [f"| {step} | {text} | {_files(result, keys)} | {seconds:.0f} |"
              for step, text, keys, seconds in _step_rows(result)]
    return "\n".join(lines + _evaluation_table(result.metrics["evaluate"]["rows"]))


def _files(result: DemoResult, keys: tuple[str, ...]) -> str:
    """The outputs ``keys`` as paths relative to the demo directory (a trailing ``/`` kept)."""
    names = []
    for key in keys:
        name, slash = key.rstrip("/"), "/" if key.endswith("/") else ""
        if name in result.outputs:
            names.append(_rel(result.outputs[name], result.out) + slash)
    return ", ".join(names)


def _rel(path: Path, out: Path) -> str:
    try:
        return str(Path(path).relative_to(out))
    except ValueError:
        return str(path)


def _step_rows(result: DemoResult) -> list[tuple[str, str, tuple[str, ...], float]]:
    """``(step, result, output keys, seconds)`` per row of the first table."""
    m, sec = result.metrics, result.seconds
    tile, tr, em, sim = m["tile"], m["train"], m["embed"], m["similar"]
    by_class = sim["mean_by_class"]
    rows = [
        ("tile", f"{tile['n_triplets']} triplets, {tile['tile_size']} px tiles, "
                 f"neighborhood {tile['neighborhood']} px", ("triplets/",), sec["tile"]),
        ("train", f"TileNet, {plural(tr['epochs'], 'epoch')}: triplet loss "
                  f"{tr['first_loss']:.2f} -> {tr['final_loss']:.2f}; d(a,n) {tr['d_an']:.2f} "
                  f"vs d(a,d) {tr['d_ad']:.2f}", ("checkpoint", "metrics_csv", "loss_plot"),
         sec["train"]),
        ("embed", f"{em['bands']} bands x {em['width']} x {em['height']} px ({em['dtype']}, "
                  f"stride {em['stride']} px)", ("embeddings",), sec["embed"]),
        ("preview", "PCA explained variance " + ", ".join(
            f"{v:.2f}" for v in m["preview"]["explained_variance_ratio"]), ("preview",),
         sec["preview"]),
        ("similar", f"to {sim['n_points']} {sim['reference_class']} points: mean cosine "
         + ", ".join(f"{k} {by_class[k]:.2f}" for k in (sim["reference_class"], "cropland")
                     if k in by_class) + " (same spectra, other texture)", ("similarity",),
         sec["similar"]),
    ]
    rows += _evaluate_row(m["evaluate"], sec["evaluate"])
    for mode, w in m["weak"].items():
        key = segmentation_key(mode)
        rows.append(("weak train + segment",
                     f"{WEAK_LABEL_NAMES[mode]}, {w['n_labels']} tiles: crop F1 "
                     f"{w['crop_f1']:.2f}, IoU {w['crop_iou']:.2f} (pixel accuracy "
                     f"{w['accuracy']:.2f})", (f"weak_{mode}_checkpoint", key, key + "_report"),
                     sec[f"weak_{mode}"] + sec[f"segment_{mode}"]))
    rows.append(("overview", "scene, land cover, PCA, similarity, segmentation",
                 ("overview", "summary", "demo_json"), sec["overview"]))
    return rows


def _evaluate_row(ev: dict[str, Any], seconds: float
                  ) -> list[tuple[str, str, tuple[str, ...], float]]:
    """The evaluate row: the embedding vs. tile statistics under spatial CV (if both ran)."""
    best: dict[str, dict] = {}
    for r in ev["rows"]:
        if r["cv"] == "spatial":
            best.setdefault(r["features"], r)
    emb, stats = best.get("embedding"), best.get("tile-stats")
    if not (emb and stats):
        return []
    return [("evaluate", f"{ev['n_labels']} labels, spatial CV: macro-F1 embedding "
                         f"{emb['macro_f1']:.2f} vs tile-stats {stats['macro_f1']:.2f}; texture "
                         f"classes {emb['texture_f1']:.2f} vs {stats['texture_f1']:.2f}",
             ("evaluation_report", "learning_curve", "confusion"), seconds)]


def _evaluation_table(rows: list[dict[str, Any]]) -> list[str]:
    """The second table: every feature set x CV of the evaluation."""
    lines = ["", "Land-cover classification on the embedding vs. baselines (logistic "
             "regression; texture = mean F1 of cropland, grassland, orchard, shrubland):",
             "", "| features | cv | accuracy | macro-F1 | texture F1 |",
             "|---|---|---:|---:|---:|"]
    return lines + [f"| {r['features']} | {r['cv']} | {r['accuracy']:.3f} | "
                    f"{r['macro_f1']:.3f} | {r['texture_f1']:.3f} |" for r in rows]
