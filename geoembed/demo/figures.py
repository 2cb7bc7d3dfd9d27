"""The demo's pictures: scene and land cover as RGB, crop map vs. truth, the overview PNG.

Used by :func:`geoembed.demo.run_demo`, the notebooks and ``docs/make_figures.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import rasterio
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone
from matplotlib.image import imread
from matplotlib.patches import Patch
from rasterio.enums import Resampling

from geoembed.demo.data import sample_data_dir
from geoembed.demo.settings import CROP_IDS, SIMILAR_CLASS
from geoembed.io.outputs import atomic_output

#: Colours of the crop map vs. truth (true positive, false positive, false negative, true
#: negative), with their legend labels.
COMPARISON = (((0.20, 0.63, 0.17), "crop, found"), ((0.89, 0.10, 0.11), "false crop"),
              ((0.12, 0.47, 0.71), "crop, missed"), ((0.85, 0.85, 0.85), "not crop"))


def _decimated_shape(ds: rasterio.io.DatasetReader, max_size: int) -> tuple[int, int]:
    """``(rows, cols)`` of the dataset read at most ``max_size`` px on its longer side."""
    scale = min(1.0, max_size / max(ds.width, ds.height))
    return max(1, round(ds.height * scale)), max(1, round(ds.width * scale))


def _extent(ds: rasterio.io.DatasetReader) -> tuple[float, float, float, float]:
    """``(left, right, bottom, top)`` for ``imshow``."""
    b = ds.bounds
    return b.left, b.right, b.bottom, b.top


def scene_rgb(path: str | os.PathLike, bands: tuple[int, int, int] = (3, 2, 1),
              max_size: int = 512) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """An RGB rendering (2-98 % stretch per band, nodata white) of a scene, decimated to at
    most ``max_size`` px, and its extent ``(left, right, bottom, top)`` for ``imshow``."""
    with rasterio.open(path) as ds:
        shape = _decimated_shape(ds, max_size)
        data = ds.read(list(bands), out_shape=(3, *shape),
                       resampling=Resampling.average).astype(np.float32)
        mask = ds.read_masks(1, out_shape=shape) > 0
        extent = _extent(ds)
    rgb = np.ones((*shape, 3), dtype=np.float32)
    for i in range(3):
        v = data[i][mask]
        lo, hi = np.percentile(v, [2, 98]) if v.size else (0.0, 1.0)
        rgb[..., i] = np.where(mask, np.clip((data[i] - lo) / max(hi - lo, 1e-6), 0, 1), 1.0)
    return rgb, extent


def class_colors(data: str | os.PathLike | None = None) -> tuple[list[str], list[str]]:
    """Names and colours of the sample data's classes (``classes.json``), in id order."""
    classes = json.loads((Path(data or sample_data_dir()) / "classes.json").read_text())
    classes = sorted(classes, key=lambda c: c["id"])
    return [c["name"] for c in classes], [c["color"] for c in classes]


def _read_band(path: str | os.PathLike, max_size: int) -> tuple[np.ndarray, float | None]:
    """Band 1 decimated (nearest) to at most ``max_size`` px, and its nodata value."""
    with rasterio.open(path) as ds:
        return (ds.read(1, out_shape=_decimated_shape(ds, max_size),
                        resampling=Resampling.nearest), ds.nodata)


def landcover_rgb(path: str | os.PathLike, data: str | os.PathLike | None = None,
                  max_size: int = 512) -> np.ndarray:
    """The true land cover as an RGB picture (nodata white)."""
    _, colors = class_colors(data)
    lc, _ = _read_band(path, max_size)
    lut = np.ones((256, 3), dtype=np.float32)
    for i, c in enumerate(colors):
        lut[i] = to_rgb(c)
    return lut[lc]


def crop_comparison_rgb(segmentation: str | os.PathLike, landcover: str | os.PathLike,
                        crop_ids: tuple[str, ...] = CROP_IDS, max_size: int = 512
                        ) -> np.ndarray:
    """Crop map vs. truth as RGB: true positive green, false positive red, false negative
    blue, true negative light grey, nodata white."""
    seg, seg_nd = _read_band(segmentation, max_size)
    lc, lc_nd = _read_band(landcover, max_size)
    valid = (seg != seg_nd) & (lc != lc_nd)
    truth = np.isin(lc, [int(c) for c in crop_ids])
    pred = seg == 1
    rgb = np.ones((*seg.shape, 3), dtype=np.float32)
    for (color, _), where in zip(COMPARISON, (truth & pred, ~truth & pred, truth & ~pred,
                                              ~truth & ~pred), strict=True):
        rgb[valid & where] = color
    return rgb


def plot_overview(demo_dir: str | os.PathLike, path: str | os.PathLike,
                  data: str | os.PathLike | None = None, dpi: int = 80) -> Path:
    """One PNG of the demo: scene, true land cover, PCA preview, similarity to grassland,
    and the single-pixel-label crop map against the truth."""
    demo_dir, data = Path(demo_dir), Path(data or sample_data_dir())
    fig = Figure(figsize=(20, 4.6))
    axes = fig.subplots(1, 5)
    extent = _scene_panels(axes[:2], data)
    with rasterio.open(demo_dir / "embeddings.tif") as ds:
        axes[2].imshow(imread(demo_dir / "preview.png"), extent=_extent(ds))
    axes[2].set_title("embedding, PCA as RGB")
    with rasterio.open(demo_dir / "similarity.tif") as ds:
        sim, sim_extent = ds.read(1), _extent(ds)
    im = axes[3].imshow(sim, extent=sim_extent, cmap="magma", vmin=np.nanpercentile(sim, 2),
                        vmax=1)
    fig.colorbar(im, ax=axes[3], fraction=0.046, pad=0.02)
    axes[3].set_title(f"cosine similarity to {SIMILAR_CLASS}")
    axes[4].imshow(crop_comparison_rgb(demo_dir / "segmentation.tif", data / "landcover.tif"),
                   extent=extent)
    axes[4].legend(handles=[Patch(color=c, label=n) for c, n in COMPARISON],
                   fontsize=7, loc="lower left", framealpha=0.8)
    axes[4].set_title("crop map (single-pixel labels) vs. truth")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    fig.tight_layout()
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return Path(path)


def _scene_panels(axes: np.ndarray, data: Path) -> tuple[float, float, float, float]:
    """The scene as RGB and its true land cover (with a legend) on two axes; their extent."""
    rgb, extent = scene_rgb(data / "scene.tif")
    names, colors = class_colors(data)
    axes[0].imshow(rgb, extent=extent)
    axes[0].set_title("scene (RGB)")
    axes[1].imshow(landcover_rgb(data / "landcover.tif", data), extent=extent)
    axes[1].set_title("true land cover")
    axes[1].legend(handles=[Patch(color=c, label=n) for n, c in zip(names, colors,
                                                                    strict=True)],
                   fontsize=7, loc="lower left", framealpha=0.8)
    return extent
