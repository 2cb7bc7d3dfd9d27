"""map.json and the printed summary of a map."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from geoembed.evaluation.verdict import verdict_line
from geoembed.io.outputs import atomic_output
from geoembed.mapping.config import MapConfig


def json_value(v: Any) -> Any:
    """A value as JSON can hold it (numpy scalars, paths; other objects by type name)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if isinstance(v, os.PathLike):
        return str(v)
    if isinstance(v, list | tuple):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    return type(v).__name__


def options(cfg: MapConfig) -> dict:
    """The options of a map, as JSON."""
    return {k: json_value(v) for k, v in dataclasses.asdict(cfg).items()}


def class_table(names: list[str], values: list, label_counts: np.ndarray, pixels: np.ndarray,
                area: np.ndarray | None) -> list[dict]:
    """One row per mapped class: code, name, label value, labels, pixels, hectares."""
    return [{"code": i, "name": names[i], "value": json_value(values[i]),
             "labels": int(label_counts[i]), "pixels": int(pixels[i]),
             "area_ha": None if area is None else float(area[i])}
            for i in range(len(names))]


def write_report(path: str | os.PathLike, report: dict, overwrite: bool) -> Path:
    """Write map.json atomically."""
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=json_value) + "\n",
                       encoding="utf-8")
    return Path(path)


def summary_text(report: dict) -> str:
    """A few lines: the grid, the CV estimate, the area of each class."""
    cv, grid = report["cv"], report["grid"]
    lines = [f"map {report['map']}: {grid['width']} x {grid['height']} px at stride "
             f"{grid['stride']} ({grid['stride_reason']}); {report['labels']['used']} labels, "
             f"{len(report['classes'])} classes",
             f"spatial CV ({report['classifier']}, {cv['folds']} folds, groups: "
             f"{cv.get('groups', 'blocks')}): accuracy "
             f"{cv['accuracy']:.3f}, macro-F1 {cv['macro_f1']:.3f}",
             "| class | labels | CV F1 | mapped ha | % |", "|---|---:|---:|---:|---:|"]
    line = verdict_line(report.get("verdict"))
    if line:
        lines.insert(2, line)
    f1 = {name: row["f1"] for name, row in cv["per_class"].items()}
    total = sum(c["pixels"] for c in report["classes"]) or 1
    for c in report["classes"]:
        ha = "-" if c["area_ha"] is None else f"{c['area_ha']:.2f}"
        lines.append(f"| {c['name']} | {c['labels']} | {f1.get(c['name'], float('nan')):.3f} "
                     f"| {ha} | {100 * c['pixels'] / total:.1f} |")
    ref = report.get("reference")
    if ref:
        lines.append(f"against {ref['path']} ({ref['pixels']} pixels, classes matched by "
                     f"{ref['matched_by']}): accuracy {ref['accuracy']:.3f}, macro-F1 "
                     f"{ref['macro_f1']:.3f}")
        est = ref.get("area_estimates")
        if est:
            lines.append(f"area estimates from {est['sample_size']} reference sample pixels "
                         f"(Olofsson et al. 2014, 95 % CI, {est['units']}):")
            for name, c in est["classes"].items():
                if c["area"] is not None:
                    half = (c["area_ci_high"] - c["area_ci_low"]) / 2 \
                        if c["area_ci_high"] is not None else float("nan")
                    lines.append(f"  {name}: {c['area']:.2f} +- {half:.2f}")
    return "\n".join(lines)


__all__ = ["class_table", "json_value", "options", "summary_text", "write_report"]
