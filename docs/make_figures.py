"""Make the README's pictures (docs/img/*.png) from a finished `geoembed demo` run.

    .venv/bin/geoembed demo --out demo_output --overwrite
    .venv/bin/python docs/make_figures.py demo_output
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no backend to choose
from PIL import Image

from geoembed.demo import evaluation_metrics, plot_overview

HERE = Path(__file__).resolve().parent
IMG = HERE / "img"


def evaluation_figure(demo_dir: Path, path: Path, dpi: int = 80) -> Path:
    """Macro-F1 (all classes) and mean F1 of the texture-only classes per feature set,
    spatial CV, from the demo's evaluation report."""
    report = json.loads((demo_dir / "evaluation" / "report.json").read_text())
    rows = [r for r in evaluation_metrics(report)["rows"] if r["cv"] == "spatial"]
    order = ["embedding", "embedding+bands", "random-encoder", "pca", "tile-stats", "bands"]
    rows = sorted(rows, key=lambda r: order.index(r["features"]) if r["features"] in order
                  else len(order))
    names = [r["features"] for r in rows]
    fig = Figure(figsize=(9, 2.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(axes, ("macro_f1", "texture_f1"),
                              ("macro-F1, 7 classes", "mean F1, texture-only classes"),
                              strict=True):
        values = [r[key] for r in rows]
        colors = ["tab:blue" if n.startswith("embedding") else "tab:gray" for n in names]
        ax.barh(names, values, color=colors)
        for y, v in enumerate(values):
            ax.text(v + 0.01, y, f"{v:.2f}", va="center", fontsize=8)
        ax.set_xlim(0, 1.08)
        ax.set_title(title, fontsize=10)
    axes[0].invert_yaxis()  # shared: once for both
    fig.suptitle(f"Logistic regression on {report['n_labels']} labelled points, spatial "
                 "cross-validation (sample data)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def shrink(path: Path, colors: int = 256) -> None:
    """Rewrite a PNG with a palette of ``colors`` colours (a fraction of the bytes)."""
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=colors, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("demo_dir", nargs="?", default="demo_output", type=Path)
    args = p.parse_args(argv)
    IMG.mkdir(parents=True, exist_ok=True)
    for path in (plot_overview(args.demo_dir, IMG / "demo_overview.png", dpi=64),
                 evaluation_figure(args.demo_dir, IMG / "demo_evaluation.png")):
        shrink(path)
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
