"""Plots of an evaluation: learning curves and the confusion matrix of one result row.

Figures are made with ``matplotlib.figure.Figure`` (no pyplot), so the user's backend and
open figures are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure


def plot_learning_curves(path: Path, results: Sequence[dict]) -> None:
    """Accuracy and macro-F1 (mean +- std) against training labels, one column per CV scheme:
    one line per feature set (each embedding source is one) and classifier, a colour per
    feature set and a line style per classifier."""
    schemes = list(dict.fromkeys(r["cv"] for r in results))
    names = list(dict.fromkeys(r["features"] for r in results))
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    colour = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    style = {c: ("-", "--", ":", "-.")[i % 4]
             for i, c in enumerate(dict.fromkeys(r["classifier"] for r in results))}
    fig = Figure(figsize=(6 * len(schemes), 8))
    axes = fig.subplots(2, len(schemes), squeeze=False)
    for j, scheme in enumerate(schemes):
        for r in (r for r in results if r["cv"] == scheme and r["learning_curve"]):
            lc = r["learning_curve"]
            n = [p["n_train"] for p in lc]
            for i, key in enumerate(("accuracy", "macro_f1")):
                m = np.array([p[f"{key}_mean"] for p in lc])
                s = np.array([p[f"{key}_std"] for p in lc])
                ax = axes[i, j]
                ax.plot(n, m, marker="o", color=colour[r["features"]],
                        linestyle=style[r["classifier"]],
                        label=f"{r['features']} / {r['classifier']}")
                ax.fill_between(n, m - s, m + s, color=colour[r["features"]], alpha=0.15)
        for i, key in enumerate(("accuracy", "macro-F1")):
            ax = axes[i, j]
            ax.set_xscale("log")
            ax.set_xlabel("training labels")
            ax.set_ylabel(key)
            ax.set_title(f"{key}, {scheme} CV")
            ax.grid(alpha=0.3)
        if axes[0, j].get_legend_handles_labels()[0]:
            axes[0, j].legend(fontsize=7)
        else:
            axes[0, j].text(0.5, 0.5, "no learning curve", ha="center",
                            transform=axes[0, j].transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_confusion(path: Path, row: dict, title: str | None = None) -> None:
    """Row-normalised confusion matrix of one result row, with counts (``title``: default
    features / classifier / CV and the scores)."""
    cm = np.asarray(row["confusion_matrix"], dtype=float)
    names = row["class_order"]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.6 * len(names) + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    if title is None:
        title = (f"{row['features']} / {row['classifier']} / {row['cv']} CV: "
                 f"accuracy {row['accuracy']:.3f}, macro-F1 {row['macro_f1']:.3f}")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


__all__ = ["plot_confusion", "plot_learning_curves"]
