# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Weak supervision: crop maps from one label per tile or one pixel per tile
#
# Following Wang et al. (2020, *Remote Sensing*), geoembed trains U-Nets
# (segmentation-models-pytorch) from cheap labels and maps crop / not crop:
#
# | label type | what is labelled | how the U-Net learns |
# |---|---|---|
# | `image` | one label per 50 x 50 px tile: "at least half crop?" | a class activation map (CAM) per pixel, averaged into one tile logit; the CAM threshold is chosen on the training tiles |
# | `pixel` | one labelled pixel per tile, at a random position | per-pixel logits, loss at the labelled pixel only |
# | `dense` | every pixel of the tile (the expensive upper bound) | per-pixel loss everywhere |
#
# Training uses the bundled sample scene's 367 weak tiles; scoring uses a **held-out
# scene** generated with another seed, so no label of it is ever seen.

# %%
# %config InlineBackend.figure_formats = ["jpeg"]  # JPEG figures keep the notebook small
# %config InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "pil_kwargs": {"quality": 90}}
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import rasterio

import geoembed
from geoembed.demo import class_colors, landcover_rgb, sample_data_dir, scene_rgb

plt.rcParams.update({"figure.dpi": 80, "font.size": 9})
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
SMALL = os.environ.get("GEOEMBED_NOTEBOOK_SMALL") == "1"  # tiny sizes (tests only)
DATA = sample_data_dir()  # the synthetic sample data bundled with geoembed
SCENE = DATA / "scene.tif"
OUT = Path("_out") / "03_weak"
OUT.mkdir(parents=True, exist_ok=True)

# %%
import geopandas as gpd

tiles = gpd.read_file(DATA / "weak_tiles.gpkg")
points = gpd.read_file(DATA / "weak_points.gpkg")
print(f"{len(tiles)} tiles, {int(tiles['crop'].sum())} labelled crop; {len(points)} points")
rgb, extent = scene_rgb(SCENE)
fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
for ax in axes:
    ax.imshow(rgb, extent=extent)
    ax.set_xticks([]); ax.set_yticks([])
tiles.plot(ax=axes[0], column="crop", cmap="RdYlGn", alpha=0.45, edgecolor="k", linewidth=0.3)
axes[0].set_title("image-level labels: crop (green) / not crop (red) per tile")
points.plot(ax=axes[1], column="crop", cmap="RdYlGn", markersize=14, edgecolor="k", linewidth=0.4)
axes[1].set_title("single-pixel labels: one point per tile")
plt.tight_layout()

# %% [markdown]
# Dense labels for the same tiles (the upper bound): the true crop mask inside the 367
# tiles, 255 (unlabelled) elsewhere, written as a label raster on the scene's grid. And
# the held-out scene.

# %%
CROP = [3, 5]  # cropland, orchard in landcover.tif
with rasterio.open(DATA / "landcover.tif") as src:
    lc = src.read(1)
    profile = src.profile
dense = np.full(lc.shape, 255, dtype=np.uint8)
for r, c in zip(tiles["row"], tiles["col"]):
    block = lc[r:r + 50, c:c + 50]
    dense[r:r + 50, c:c + 50] = np.where(block == 255, 255, np.isin(block, CROP))
profile.update(nodata=255)
profile.pop("photometric", None)
with rasterio.open(OUT / "dense_labels.tif", "w", **profile) as dst:
    dst.write(dense, 1)

heldout = geoembed.generate_sample_data(OUT / "heldout", size=256 if SMALL else 512,
                                        seed=2, overwrite=True)
print("held-out scene:", heldout["scene"])

# %% [markdown]
# ## Train the three U-Nets
#
# A small U-Net (ResNet-18 encoder of depth 3, decoder widths 32-16-8, no pretrained
# weights) sized for a CPU; `weak_train` takes the same options as
# `geoembed weak train`.

# %%
common = dict(encoder="resnet18", encoder_depth=3, batch_size=32, seed=0, overwrite=True,
              quiet=True, decoder_channels=(8, 8, 8) if SMALL else (32, 16, 8),
              max_labels=48 if SMALL else None)
epochs = dict(image=1, pixel=1, dense=1) if SMALL else dict(image=6, pixel=20, dense=3)
runs = {
    "image": geoembed.weak_train(SCENE, DATA / "weak_tiles.gpkg", OUT / "image",
                                 label_type="image", label_column="crop", tile_size=50,
                                 epochs=epochs["image"], **common),
    "pixel": geoembed.weak_train(SCENE, DATA / "weak_points.gpkg", OUT / "pixel",
                                 label_type="pixel", label_column="crop", tile_size=32,
                                 epochs=epochs["pixel"], **common),
    "dense": geoembed.weak_train(SCENE, [OUT / "dense_labels.tif"], OUT / "dense",
                                 label_type="dense", tile_size=32,
                                 epochs=epochs["dense"], **common),
}
for mode, r in runs.items():
    h = r.history[-1]
    print(f"{mode:6s} {r.n_labels:4d} training items, {len(r.history)} epochs, final loss "
          f"{h['loss']:.3f}, training accuracy {h['accuracy']:.3f}")
img = runs["image"]
print(f"CAM threshold t = {img.threshold:.3f} (image accuracy on the training tiles "
      f"{img.threshold_accuracy:.3f})")

# %% [markdown]
# ## Class activation maps and the threshold
#
# The image-level U-Net never saw a pixel label. Its CAM is the tile classifier applied
# at every pixel: a per-pixel crop logit. A tile is called crop when **more than half**
# of its CAM pixels exceed the threshold `t`; `t` is the value that makes this rule
# most accurate on the training tiles. Below: for every training tile, the largest `t`
# at which it would still be called crop, and the image accuracy as a function of `t`.

# %%
import torch
from rasterio.windows import Window

from geoembed.io.scenes import open_scene
from geoembed.inference.segmentation import WeakPredictor
from geoembed.trainers.weak_threshold import majority_scores

predictor = WeakPredictor.load(img.checkpoint, device="cpu")
scene = open_scene(SCENE)
windows = [Window(c, r, 50, 50) for r, c in zip(tiles["row"], tiles["col"])]
reads = [scene.read_with_mask(w) for w in windows]
x = predictor.normalize(np.stack([d for d, _ in reads]), np.stack([v for _, v in reads]))
cams = predictor.logits(x)[:, 0] + predictor.threshold  # raw CAM logits
scores = majority_scores(torch.from_numpy(cams)).numpy()
labels = tiles["crop"].to_numpy().astype(bool)
grid = np.linspace(np.percentile(scores, 1), np.percentile(scores, 99), 200)
acc = [np.mean((scores > t) == labels) for t in grid]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
axes[0].hist([scores[labels], scores[~labels]], bins=30, stacked=True,
             color=["tab:green", "tab:red"], label=["crop tiles", "not crop tiles"])
axes[0].axvline(predictor.threshold, color="k", linestyle="--", label=f"t = {predictor.threshold:.2f}")
axes[0].set_xlabel("median CAM logit of the tile"); axes[0].legend(fontsize=8)
axes[1].plot(grid, acc)
axes[1].axvline(predictor.threshold, color="k", linestyle="--")
axes[1].set_xlabel("threshold t"); axes[1].set_ylabel("training image accuracy")
plt.tight_layout()

# %%
order = np.argsort(tiles["crop_fraction"].to_numpy())
pick = order[np.linspace(0, len(order) - 1, 6).astype(int)]
stats = predictor.stats
lo = np.array(stats["p2"])[[2, 1, 0], None, None]
hi = np.array(stats["p98"])[[2, 1, 0], None, None]
fig, axes = plt.subplots(3, 6, figsize=(10, 5.4))
vmax = np.abs(cams[pick] - predictor.threshold).max()
for j, i in enumerate(pick):
    data, _ = reads[i]
    r, c = int(tiles["row"].iloc[i]), int(tiles["col"].iloc[i])
    axes[0, j].imshow(np.clip((data[[2, 1, 0]] - lo) / (hi - lo), 0, 1).transpose(1, 2, 0))
    axes[0, j].set_title(f"crop {tiles['crop_fraction'].iloc[i]:.0%}", fontsize=8)
    axes[1, j].imshow(np.isin(lc[r:r + 50, c:c + 50], CROP), cmap="Greens", vmin=0, vmax=1.3)
    axes[2, j].imshow(cams[i] - predictor.threshold, cmap="RdYlGn", vmin=-vmax, vmax=vmax)
    axes[2, j].contour(cams[i] > predictor.threshold, levels=[0.5], colors="k", linewidths=0.8)
for ax in axes.flat:
    ax.set_xticks([]); ax.set_yticks([])
for i, name in enumerate(("tile", "true crop", "CAM - t")):
    axes[i, 0].set_ylabel(name)
plt.tight_layout()

# %% [markdown]
# ## Segment the held-out scene
#
# `geoembed.segment` slides overlapping windows over the whole scene, blends their
# logits so that window borders leave no seams, writes a class-map GeoTIFF and, with a
# reference raster, a JSON report of pixel precision / recall / F1 / IoU.

# %%
from geoembed.demo import crop_comparison_rgb

scores_by_mode = {}
for mode, r in runs.items():
    seg = geoembed.segment(r.checkpoint, heldout["scene"], OUT / f"crop_{mode}.tif",
                           tile=256, stride=192, batch_size=4,
                           reference=heldout["landcover"], reference_positive=CROP,
                           overwrite=True, quiet=True)
    crop = seg.report["classes"][seg.class_names[1]]
    scores_by_mode[mode] = {"F1": crop["f1"], "IoU": crop["iou"], "precision": crop["precision"],
                            "recall": crop["recall"], "pixel accuracy": seg.report["accuracy"]}
import pandas as pd
display(pd.DataFrame(scores_by_mode).T.round(3))

# %%
h_rgb, h_extent = scene_rgb(heldout["scene"])
fig, axes = plt.subplots(1, 5, figsize=(16, 3.8))
axes[0].imshow(h_rgb, extent=h_extent); axes[0].set_title("held-out scene")
axes[1].imshow(landcover_rgb(heldout["landcover"]), extent=h_extent)
axes[1].set_title("true land cover")
for ax, mode in zip(axes[2:], runs):
    ax.imshow(crop_comparison_rgb(OUT / f"crop_{mode}.tif", heldout["landcover"]),
              extent=h_extent)
    ax.set_title(f"{mode} labels: F1 {scores_by_mode[mode]['F1']:.2f}")
for ax in axes:
    ax.set_xticks([]); ax.set_yticks([])
axes[-1].legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c, label=n) for c, n in (
    ((0.20, 0.63, 0.17), "crop, found"), ((0.89, 0.10, 0.11), "false crop"),
    ((0.12, 0.47, 0.71), "crop, missed"), ((0.85, 0.85, 0.85), "not crop"))],
    fontsize=7, loc="lower left")
plt.tight_layout()

# %% [markdown]
# Reading the maps: green is crop found, red is non-crop called crop, blue is crop
# missed. Dense labels are the upper bound for this U-Net and this many tiles. Single
# pixels give the U-Net exact but sparse supervision. Image-level labels say nothing
# about where in a tile the crop is: the CAM has to discover it, which makes its maps
# blurrier at field edges. The paper's results on Landsat (F1 0.88 with single pixels,
# 0.80 with image labels) came from 50 (pixel) and 200 (image) epochs on a GPU; these
# CPU-sized runs train for a few epochs on one small scene, so the ranking can change
# from run to run. `bench/` measures all three at several label counts.
#
# From the shell: `geoembed weak train scene.tif --labels weak_points.gpkg
# --label-column crop --label-type pixel --out runs/pixel`, then `geoembed segment
# runs/pixel/checkpoint.pt other_scene.tif --out crop.tif`.
