"""The outputs of an evaluation: the report dict, its table, ``predictions.csv`` and the files.

Outputs are written to a temporary directory, then renamed (:func:`geoembed.io.outputs.
atomic_output`): ``report.json`` (with the scores of every fold in each result row's
``per_fold`` and, with several embedding sources, their ``ranking``: see
:mod:`~geoembed.evaluation.ranking`), ``predictions.csv`` (the out-of-fold prediction of every
feature set x classifier x CV for each label and its fold, enough to recompute every number),
``learning_curve.png`` (unless there is no learning curve) and ``confusion.png`` (the best
row by macro-F1 under the first CV scheme).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoembed import __version__
from geoembed.evaluation.config import EvaluateConfig
from geoembed.evaluation.inputs import LabelledPixels
from geoembed.evaluation.plots import plot_confusion, plot_learning_curves
from geoembed.evaluation.ranking import source_rankings
from geoembed.evaluation.sources import Source
from geoembed.evaluation.verdict import embedding_verdict
from geoembed.io.outputs import atomic_output

BEST_KEYS = ("features", "classifier", "cv", "accuracy", "macro_f1")


@dataclass
class EvaluationResult:
    """What :func:`~geoembed.evaluation.evaluate.evaluate` produced: the report dict, the
    output directory and warnings."""

    report: dict
    out_dir: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[dict]:
        return self.report["results"]

    def table(self) -> str:
        """Markdown table: feature set, classifier, CV, accuracy, macro-F1."""
        return format_table(self.rows)

    def ranking_table(self) -> str:
        """The ranking of the embedding sources (empty with fewer than two sources)."""
        return format_ranking(self.report.get("ranking", []))


def format_table(rows: Sequence[dict]) -> str:
    """A markdown table of result rows (feature set, classifier, CV, accuracy, macro-F1)."""
    lines = ["| feature set | classifier | cv | accuracy | macro-F1 |",
             "|---|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['features']} | {r['classifier']} | {r['cv']} | "
                     f"{r['accuracy']:.3f} | {r['macro_f1']:.3f} |")
    return "\n".join(lines)


def _pm(mean: float, std: float, sign: str = "") -> str:
    return f"{mean:{sign}.3f} ± {std:.3f}"


def format_ranking(ranking: Sequence[dict]) -> str:
    """Markdown tables of the sources ranked per CV scheme x classifier: mean ± std over the
    folds, and the difference to the best paired by fold (mean ± std, folds the best wins)."""
    blocks = []
    for group in ranking:
        n = group["sources"][0]["n_folds"]
        lines = [f"sources ranked by macro-F1 ({group['cv']} CV, {group['classifier']}; "
                 f"mean ± std over {n} folds; difference to the best paired by fold):",
                 "| rank | source | accuracy | macro-F1 | Δ accuracy | Δ macro-F1 | best wins |",
                 "|---:|---|---:|---:|---:|---:|---:|"]
        for r in group["sources"]:
            acc, f1 = r["vs_best"]["accuracy"], r["vs_best"]["macro_f1"]
            diff = ("best", "best", "-") if r["rank"] == 1 else (
                _pm(acc["mean_diff"], acc["std_diff"], "+"),
                _pm(f1["mean_diff"], f1["std_diff"], "+"), f"{f1['best_wins']}/{n}")
            lines.append(f"| {r['rank']} | {r['source']} | "
                         f"{_pm(r['accuracy_mean'], r['accuracy_std'])} | "
                         f"{_pm(r['macro_f1_mean'], r['macro_f1_std'])} | "
                         + " | ".join(diff) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _paths(sources: Sequence[Source], kind: str) -> str | list[str] | None:
    """The paths of one kind of source: None, one path, or a list of several."""
    paths = [str(s.path) for s in sources if s.kind == kind]
    return None if not paths else paths[0] if len(paths) == 1 else paths


def best_row(results: Sequence[dict], scheme: str) -> dict:
    """The result row with the highest macro-F1 under ``scheme`` (the first one on ties)."""
    return max((r for r in results if r["cv"] == scheme), key=lambda r: r["macro_f1"])


def build_report(scene: object, cfg: EvaluateConfig, lab: LabelledPixels, *,
                 feature_dims: dict[str, int], n_folds: dict[str, int], block: int, tile: int,
                 notes: list[str], results: list[dict],
                 sources: Sequence[Source] = (), cv_groups: dict | None = None) -> dict:
    """The ``report.json`` dict (key order as written); ``cv_groups``: how spatial folds
    grouped the labels (``by``, the ``option`` given, ``n_groups``)."""
    px = lab.pixels
    names = [s.name for s in sources]
    best = best_row(results, cfg.cv[0])
    return {
        "geoembed_version": __version__,
        "scene": str(scene),
        "labels": lab.source,
        "label_column": cfg.label_column,
        "checkpoint": _paths(sources, "checkpoint"),
        "embeddings": _paths(sources, "embeddings"),
        "sources": [{"name": s.name, "kind": s.kind, "path": str(s.path),
                     "not_covered": lab.embedding_info.get(s.name, {}).get("not_covered", 0)}
                    for s in sources],
        "n_input": int(px.n_input),
        "n_labels": int(len(lab.y)),
        "n_in_scene": int(lab.n_kept),
        "n_dropped": int(px.n_outside + px.n_nodata + lab.n_no_embedding),
        "dropped": {"outside": int(px.n_outside), "nodata": int(px.n_nodata),
                    "no_embedding": int(lab.n_no_embedding)},
        "classes": [{"name": str(c), "count": int(lab.counts[i]), "in_cv": lab.in_cv[i]}
                    for i, c in enumerate(lab.classes)],
        "excluded_classes": [str(c) for c, ok in zip(lab.classes, lab.in_cv, strict=True)
                             if not ok],
        "cv": list(cfg.cv),
        "folds": n_folds,
        "block_size": block,
        "cv_groups": cv_groups,
        "tile_size": tile,
        "seed": cfg.seed,
        "feature_sets": feature_dims,
        "classifiers": list(cfg.classifier),
        "learning_curve_sizes": list(cfg.learning_curve_sizes),
        "repeats": cfg.repeats,
        "warnings": notes,
        "best": {k: best[k] for k in BEST_KEYS},
        "ranking": source_rankings(results, names),
        "verdict": embedding_verdict(results, names, cfg.cv[0]),
        "results": results,
    }


def write_predictions(path: Path, rows: np.ndarray, cols: np.ndarray, x: np.ndarray,
                      y_map: np.ndarray, y: np.ndarray, classes: list,
                      fold_of: dict[str, np.ndarray], preds: dict[str, np.ndarray]) -> None:
    """One line per label: row, col, x, y, true, fold_<cv>..., pred|<features>|<clf>|<cv>..."""
    names = [str(c) for c in classes]
    header = ["row", "col", "x", "y", "true", *[f"fold_{s}" for s in fold_of], *preds]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(len(y)):
            w.writerow([int(rows[i]), int(cols[i]), f"{x[i]:.3f}", f"{y_map[i]:.3f}",
                        names[y[i]], *[int(v[i]) for v in fold_of.values()],
                        *[names[p[i]] for p in preds.values()]])


def write_outputs(out: Path, report: dict, lab: LabelledPixels, xy: tuple[np.ndarray, np.ndarray],
                  fold_of: dict[str, np.ndarray], preds: dict[str, np.ndarray], *,
                  overwrite: bool = False, plots: bool = True) -> None:
    """``report.json``, ``predictions.csv`` and the plots into ``out`` (atomically)."""
    with atomic_output(out, overwrite, directory=True) as tmp:
        with open(tmp / "report.json", "w") as f:
            json.dump(report, f, indent=2)
        write_predictions(tmp / "predictions.csv", lab.rows, lab.cols, xy[0], xy[1], lab.y,
                          lab.cv_classes, fold_of, preds)
        if plots:
            if any(r["learning_curve"] for r in report["results"]):
                plot_learning_curves(tmp / "learning_curve.png", report["results"])
            plot_confusion(tmp / "confusion.png", best_row(report["results"], report["cv"][0]))


__all__ = ["EvaluationResult", "build_report", "format_ranking", "format_table",
           "write_outputs", "write_predictions"]
