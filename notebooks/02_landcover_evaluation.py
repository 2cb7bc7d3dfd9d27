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
# # Land-cover classification with few labels: embeddings vs. baselines
#
# Do the Tile2Vec embeddings help a land-cover classifier? `geoembed.evaluate` answers
# it for a scene and a set of labelled points: it computes several feature sets for every
# label and cross-validates a classifier on each:
#
# | feature set | what it is |
# |---|---|
# | `embedding` | the trained encoder's embedding of the tile centred on the label |
# | `bands` | the label pixel's band values |
# | `tile-stats` | per-band mean and standard deviation of the same tile |
# | `random-encoder` | the same network, untrained ("is training doing anything?") |
# | `pca` | principal components of the tile's pixels (the paper's unsupervised baseline) |
# | `embedding+bands` | both together |
#
# Cross-validation comes in two kinds. **Random** CV puts labels in folds at random, so
# a test label usually has a training label a few pixels away: neighbours look alike,
# and the score is optimistic. **Spatial** CV groups labels in square blocks (4 tiles
# wide by default) and keeps each block in one fold, which is closer to mapping an area
# you have no labels in.

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
OUT = Path("_out") / "02_evaluation"
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## A small encoder
#
# This time the encoder trains *on the fly*: fresh triplets are sampled from the scene
# every epoch, with no triplet store on disk (the mode for scenes too large to store
# triplets from). Same small TileNet as in the quickstart.

# %%
N_TRIPLETS, WIDTH, Z_DIM, EPOCHS = (100, 4, 8, 1) if SMALL else (2000, 8, 64, 3)
run = geoembed.train(scenes=[SCENE], out=OUT / "run", n_triplets=N_TRIPLETS,
                     tile_size=32, neighborhood=32, z_dim=Z_DIM, base_width=WIDTH,
                     epochs=EPOCHS, batch_size=50, seed=0, overwrite=True, quiet=True)
last = run.history[-1]
print(f"loss {run.history[0]['loss']:.2f} -> {last['loss']:.2f}; "
      f"d(a,n) {last['d_an']:.2f} vs d(a,d) {last['d_ad']:.2f}")

# %% [markdown]
# ## The labels
#
# `points.gpkg` holds 596 labelled points (EPSG:4326, at least 40 per class). geoembed
# reprojects them to the scene's CRS, finds their pixels and drops any outside the scene
# or on nodata.

# %%
import geopandas as gpd

names, colors = class_colors()
points = gpd.read_file(DATA / "points.gpkg")
print(points["class"].value_counts().to_string())
rgb, extent = scene_rgb(SCENE)
with rasterio.open(SCENE) as ds:
    pts = points.to_crs(ds.crs)
fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(rgb, extent=extent, alpha=0.6)
for n, c in zip(names, colors):
    sel = pts[pts["class"] == n]
    ax.scatter(sel.geometry.x, sel.geometry.y, s=10, color=c, edgecolor="k",
               linewidth=0.3, label=n)
ax.legend(fontsize=8, loc="lower left"); ax.set_xticks([]); ax.set_yticks([])
ax.set_title("labelled points")
plt.tight_layout()

# %% [markdown]
# ## Evaluate
#
# Logistic regression (a linear probe: it can only use what the features make linearly
# separable) on every feature set, spatial and random 5-fold CV, and a learning curve:
# each model refitted on 10, 20, 50, ... random training labels of each fold.

# %%
ev = geoembed.evaluate(
    SCENE, OUT / "evaluation", labels=DATA / "points.gpkg", label_column="class",
    checkpoint=run.checkpoint, classifier="logreg", cv="both",
    learning_curve_sizes="10,50,all" if SMALL else "10,20,50,100,200,all",
    repeats=1 if SMALL else 3, pca_tiles=100 if SMALL else 500,
    max_labels=150 if SMALL else None, seed=0, overwrite=True, quiet=True)
for note in ev.warnings:
    print("note:", note)
print(ev.table())

# %% [markdown]
# The spatial folds: each colour is one fold, made of whole blocks.

# %%
import pandas as pd

pred = pd.read_csv(ev.out_dir / "predictions.csv")
fig, ax = plt.subplots(figsize=(5.5, 5.5))
ax.imshow(rgb, extent=extent, alpha=0.5)
sc = ax.scatter(pred["x"], pred["y"], c=pred["fold_spatial"], cmap="tab10", s=12,
                vmin=0, vmax=9)
block = ev.report["block_size"] * 2.0  # pixels of 2 m
for x in np.arange(extent[0], extent[1], block):
    ax.axvline(x, color="k", linewidth=0.3)
for y in np.arange(extent[3], extent[2], -block):
    ax.axhline(y, color="k", linewidth=0.3)
ax.set_xlim(extent[:2]); ax.set_ylim(extent[2:]); ax.set_xticks([]); ax.set_yticks([])
ax.set_title(f"spatial CV: blocks of {ev.report['block_size']} px, one colour per fold")
plt.tight_layout()

# %% [markdown]
# ## All classes vs. the texture-only classes
#
# Macro-F1 over all seven classes, and the mean F1 of the four texture-only classes
# (cropland, grassland, orchard, shrubland), where per-pixel values carry no information
# about the class.

# %%
from geoembed.demo import evaluation_metrics

rows = pd.DataFrame(evaluation_metrics(ev.report)["rows"])
table = rows.pivot(index="features", columns="cv", values=["macro_f1", "texture_f1"])
table = table.loc[[f for f in ("embedding", "embedding+bands", "random-encoder",
                               "tile-stats", "pca", "bands") if f in table.index]]
display(table.round(3))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
for ax, metric, title in zip(axes, ("macro_f1", "texture_f1"),
                             ("macro-F1, all classes", "mean F1, texture-only classes")):
    table[metric][["spatial", "random"]].plot.barh(ax=ax, color=["tab:blue", "lightgrey"])
    ax.set_title(title); ax.set_xlim(0, 1); ax.invert_yaxis(); ax.set_ylabel("")
plt.tight_layout()

# %% [markdown]
# ## Learning curve
#
# Macro-F1 against the number of training labels (spatial CV; mean over random subsets,
# the band is one standard deviation).

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, cv in zip(axes, ("spatial", "random")):
    for r in ev.report["results"]:
        if r["cv"] != cv or not r["learning_curve"]:
            continue
        n = [p["n_train"] for p in r["learning_curve"]]
        m = np.array([p["macro_f1_mean"] for p in r["learning_curve"]])
        s = np.array([p["macro_f1_std"] for p in r["learning_curve"]])
        line, = ax.plot(n, m, marker="o", label=r["features"],
                        linewidth=2.5 if r["features"] == "embedding" else 1.2)
        ax.fill_between(n, m - s, m + s, alpha=0.12, color=line.get_color())
    ax.set_xscale("log"); ax.set_xlabel("training labels"); ax.set_title(f"{cv} CV")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("macro-F1"); axes[0].legend(fontsize=8)
plt.tight_layout()


# %% [markdown]
# ## What it means
#
# The numbers below are computed from this run's report (so they stay true when you
# change the settings above).

# %%
def row(features, cv="spatial"):
    return rows[(rows.features == features) & (rows.cv == cv)].iloc[0]

emb, stats, rand, bands = (row(f) for f in ("embedding", "tile-stats", "random-encoder", "bands"))
print(f"Spatial CV, all classes: embedding macro-F1 {emb.macro_f1:.2f} vs tile-stats "
      f"{stats.macro_f1:.2f}, untrained encoder {rand.macro_f1:.2f}, band values {bands.macro_f1:.2f}.")
print(f"Texture-only classes (mean F1): embedding {emb.texture_f1:.2f} vs tile-stats "
      f"{stats.texture_f1:.2f} and band values {bands.texture_f1:.2f}.")
leak = {f: row(f, "random").macro_f1 - row(f).macro_f1 for f in rows.features.unique()}
print("Random CV minus spatial CV (macro-F1): "
      + ", ".join(f"{f} {d:+.2f}" for f, d in leak.items()))
lc = {r["features"]: r["learning_curve"] for r in ev.report["results"] if r["cv"] == "spatial"}
n_few = max(p["n_train"] for p in lc["embedding"] if p["n_train"] <= 50)
few = {f: next((p["macro_f1_mean"] for p in c if p["n_train"] == n_few), float("nan"))
       for f, c in lc.items()}
print(f"With {n_few} training labels: " + ", ".join(f"{f} {v:.2f}" for f, v in few.items()))

# %% [markdown]
# How to read this:
#
# * **Texture.** Band values and tile mean / standard deviation cannot separate cropland
#   from grassland or orchard from shrubland: on the sample data they have the same
#   spectra in the same proportions. The embedding was trained without a single label,
#   only to tell neighbouring tiles from distant ones, and that was enough to make the
#   texture linearly separable; the untrained encoder shows how much of it comes from
#   training rather than from the architecture.
# * **Spatial vs. random CV.** Random CV lets a test label's neighbours sit in the
#   training folds, so it rewards memorising places. On this synthetic scene the points
#   are sparse and the classes repeat all over the scene, so the gap printed above is
#   small; with spatially clustered labels on real imagery it is usually larger. Report
#   spatial CV when the map will be used away from the labels.
# * **Few labels.** The learning curve is what matters when labels are expensive: the
#   question is how many labels a feature set needs to reach a given score.
# * The sample data is synthetic and small; `bench/` has the numbers on real imagery
#   (NAIP) when it is available. On your own data, run
#   `geoembed evaluate --scene ... --labels ... --label-column ... --checkpoint ...`.

# %%
from geoembed.evaluation.plots import plot_confusion
from IPython.display import Image

best = max((r for r in ev.report["results"] if r["features"] == "embedding"),
           key=lambda r: r["cv"] == "spatial")
plot_confusion(OUT / "confusion_embedding.png", best)
Image(filename=str(OUT / "confusion_embedding.png"), width=480)

# %% [markdown]
# ## From labels to a map
#
# The evaluation says which features to trust; `geoembed.map` uses them. It estimates the
# classifier's accuracy with the same spatial cross-validation, fits it on every label and
# classifies every pixel of the scene into a class map (a Cloud Optimized GeoTIFF with a
# colour table, the class names and a `.qml` style for QGIS), with `map.json` next to it.
#
# Features come from a checkpoint (a tile around every output pixel: by default on scenes
# over 512 x 512 px the map then has one pixel per `tile // 5` scene pixels), from
# embedding rasters, or from baselines. Here the scene is embedded once with
# `geoembed.embed` and the map samples that raster at every scene pixel (nearest
# embedding pixel), which is fast. `reference=` scores the map against the true land
# cover and estimates the area of each class from a stratified random sample of the
# reference pixels (Olofsson et al. 2014), with 95 % confidence intervals.

# %%
STRIDE = 32 if SMALL else 8  # embedding stride: one vector per 8 x 8 scene pixels
emb = geoembed.embed(run.checkpoint, SCENE, OUT / "embeddings.tif", stride=STRIDE,
                     overwrite=True, quiet=True)[0]
mp = geoembed.map(SCENE, OUT / "map" / "map.tif", labels=DATA / "points.gpkg",
                  label_column="class", embeddings=emb, reference=DATA / "landcover.tif",
                  confidence=OUT / "map" / "confidence.tif", stride=4 if SMALL else None,
                  seed=0, overwrite=True, quiet=True)
for note in mp.warnings:
    print("note:", note)
print(mp.summary())

# %% [markdown]
# The map next to the truth (same colours), and the classifier's confidence (the highest
# class probability) at every pixel: it drops on the field borders and in the
# texture-only pairs.

# %%
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

color_of = dict(zip(names, colors))
mapped = [c["name"] for c in mp.report["classes"]]  # the map's codes 0, 1, ... in order
cmap = ListedColormap([color_of[n] for n in mapped])
with rasterio.open(mp.map_path) as ds:
    codes = ds.read(1, masked=True)
with rasterio.open(OUT / "map" / "confidence.tif") as ds:
    conf = ds.read(1, masked=True)
fig, axes = plt.subplots(1, 3, figsize=(14, 4.8))
axes[0].imshow(codes, cmap=cmap, vmin=-0.5, vmax=len(mapped) - 0.5, extent=extent,
               interpolation="nearest")
axes[0].set_title(f"map: {mp.report['classifier']} on the embedding "
                  f"(spatial-CV macro-F1 {mp.report['cv']['macro_f1']:.2f})")
axes[1].imshow(landcover_rgb(DATA / "landcover.tif"), extent=extent)
axes[1].set_title(f"true land cover (map accuracy {mp.report['reference']['accuracy']:.2f})")
axes[1].legend(handles=[Patch(color=c, label=n) for n, c in zip(names, colors)],
               fontsize=7, loc="lower left", framealpha=0.8)
im = axes[2].imshow(conf, cmap="viridis", vmin=0, vmax=1, extent=extent)
fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
axes[2].set_title("confidence (highest class probability)")
for ax in axes:
    ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout()

# %% [markdown]
# Areas. Counting mapped pixels gives the *mapped* area, which carries the map's errors
# (a class the classifier over-predicts is over-counted). The estimate corrects it with
# the reference sample; on the sample data the true area (every reference pixel counted)
# is known, so we can check that the 95 % intervals cover it.

# %%
ref = mp.report["reference"]
est = ref["area_estimates"]
areas = pd.DataFrame([
    {"class": n, "mapped ha": ref["mapped_area"][n], "estimated ha": c["area"],
     "95 % CI low": c["area_ci_low"], "95 % CI high": c["area_ci_high"],
     "true ha": ref["reference_area"].get(n), "user's acc.": c["users_accuracy"],
     "producer's acc.": c["producers_accuracy"]}
    for n, c in est["classes"].items()]).set_index("class")
display(areas.round(2))
covered = ((areas["95 % CI low"] <= areas["true ha"])
           & (areas["true ha"] <= areas["95 % CI high"])).sum()
print(f"{est['sample_size']} reference sample pixels; overall accuracy "
      f"{est['overall_accuracy']:.3f} +- {est['overall_accuracy_ci']:.3f}; the true area is "
      f"inside the 95 % interval for {covered} of {len(areas)} classes")

# %% [markdown]
# ## Comparing embedding sources
#
# Which embedding should the map use: yours, a coarser one, a downloaded one (such as
# Google's Satellite Embedding)? `geoembed.evaluate` takes several sources at once
# (`embeddings={name: path}`, and `checkpoint=` alike), evaluates each on the same labels
# and the same folds, and ranks them: mean ± standard deviation over the folds, and each
# source's difference to the best *paired by fold* (the folds' difficulty cancels out), with
# the number of folds the best one wins. Here: the embedding above against the same
# encoder's embedding stored as int8 (the quantisation of Google's Satellite Embedding
# dataset, a quarter of the size).

# %%
emb8 = geoembed.embed(run.checkpoint, SCENE, OUT / "embeddings_int8.tif", stride=STRIDE,
                      dtype="int8", overwrite=True, quiet=True)[0]
cmp = geoembed.evaluate(
    SCENE, OUT / "compare", labels=DATA / "points.gpkg", label_column="class",
    embeddings={"float32": emb, "int8": emb8}, features="embedding,tile-stats",
    classifier="logreg", cv="spatial", learning_curve_sizes="none",
    max_labels=150 if SMALL else None, seed=0, overwrite=True, quiet=True)
print(cmp.table())
print()
print(cmp.ranking_table())
