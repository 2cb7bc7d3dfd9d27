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
# # Tile2Vec quickstart: from a GeoTIFF to an embedding GeoTIFF
#
# [Tile2Vec](https://arxiv.org/abs/1805.02855) learns a representation of image tiles
# without labels: a tile (the *anchor*) should embed close to a tile from its
# neighbourhood (the *neighbor*) and far from a tile from elsewhere (the *distant* tile).
# This notebook runs the whole unsupervised part of geoembed on the bundled sample scene:
#
# 1. `geoembed.tile`: sample anchor / neighbor / distant triplets into a triplet store;
# 2. `geoembed.train`: train a small TileNet with the triplet loss;
# 3. `geoembed.embed`: embed the whole scene into a georeferenced, multi-band GeoTIFF;
# 4. look at it: a PCA preview and a similarity map.
#
# The sizes here are small enough for a laptop CPU (about a minute). The same calls
# train the paper's configuration on a GPU (`tile_size=50, neighborhood=100,
# base_width=64, z_dim=512, batch_size=50`, 100k triplets).

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
OUT = Path("_out") / "01_quickstart"
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The scene
#
# `sample_data/scene.tif` is synthetic: 1024 x 1024 pixels of 2 m, 4 bands (blue,
# green, red, near infrared), UTM zone 15N, with a nodata border. Its true land cover is
# known (`landcover.tif`) but is **never used for training** here. Two pairs of classes
# have exactly the same per-pixel spectra and differ only in texture: cropland (stripes)
# vs. grassland (random grain), and orchard (trees on a lattice) vs. shrubland (the same
# shrubs at random positions). A per-pixel classifier cannot separate them; something
# that looks at a whole tile can.

# %%
with rasterio.open(SCENE) as ds:
    print(f"{ds.width} x {ds.height} px, {ds.count} bands {ds.descriptions}, {ds.dtypes[0]}, "
          f"{ds.crs}, {ds.res[0]:g} m pixels, nodata {ds.nodata}")
rgb, extent = scene_rgb(SCENE)
names, colors = class_colors()
fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
axes[0].imshow(rgb, extent=extent)
axes[0].set_title("scene.tif (red, green, blue)")
axes[1].imshow(landcover_rgb(DATA / "landcover.tif"), extent=extent)
axes[1].set_title("true land cover (not used for training)")
axes[1].legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c, label=n)
                        for n, c in zip(names, colors)], fontsize=8, loc="lower left")
for ax in axes:
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=7)
plt.tight_layout()

# %% [markdown]
# ## 1. Sample triplets
#
# `geoembed.tile` draws anchors uniformly over the valid (not nodata) area, a neighbor
# whose centre is within `neighborhood` pixels of the anchor's centre, and a distant tile
# farther away (or from another scene when several are given). Tiles touching nodata are
# rejected. The store is one memory-mappable array `(N, 3, bands, tile, tile)`, the tile
# footprints as a GeoPackage in the scene's CRS, and `meta.json` (band statistics, the
# sampler's options, the scenes' georeferencing).

# %%
store = geoembed.tile([SCENE], OUT / "triplets", n_triplets=100 if SMALL else 2000,
                      tile_size=32, neighborhood=32, seed=0, overwrite=True, quiet=True)
print("triplets:", store.triplets.shape, store.triplets.dtype)
footprints = store.footprints()
footprints.head(6)

# %%
role_colors = {"anchor": "red", "neighbor": "orange", "distant": "deepskyblue"}
fig, ax = plt.subplots(figsize=(6.5, 6.5))
ax.imshow(rgb, extent=extent)
shown = footprints[footprints["triplet"] < 8]
for role, color in role_colors.items():
    shown[shown["role"] == role].boundary.plot(ax=ax, color=color, linewidth=1.5, label=role)
for t, group in shown.groupby("triplet"):
    c = group.set_index("role").geometry.centroid
    for other in ("neighbor", "distant"):
        ax.plot([c["anchor"].x, c[other].x], [c["anchor"].y, c[other].y],
                color=role_colors[other], linewidth=0.7, alpha=0.8)
ax.legend(loc="lower left")
ax.set_title("8 triplets: anchor, neighbor (close), distant (far)")
ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout()

# %%
stats = store.band_stats
lo, hi = np.array(stats.p2)[[2, 1, 0], None, None], np.array(stats.p98)[[2, 1, 0], None, None]

def tile_rgb(t):
    return np.clip((t[[2, 1, 0]] - lo) / (hi - lo), 0, 1).transpose(1, 2, 0)

fig, axes = plt.subplots(3, 6, figsize=(9, 4.8))
for j in range(6):
    for i, role in enumerate(("anchor", "neighbor", "distant")):
        axes[i, j].imshow(tile_rgb(store.triplets[j, i]))
        axes[i, j].set_xticks([]); axes[i, j].set_yticks([])
        if j == 0:
            axes[i, j].set_ylabel(role)
fig.suptitle("the tiles of 6 triplets (32 x 32 px)")
plt.tight_layout()

# %% [markdown]
# ## 2. Train a TileNet
#
# TileNet is the paper's ResNet-18-like encoder. `base_width=8` (the paper: 64) and
# `z_dim=64` (the paper: 512) make it small enough to train in well under a minute on a
# CPU.
# The loss is the paper's triplet loss, `max(0, d(a,n) - d(a,d) + margin)` plus a small
# penalty on the embeddings' norms; tiles are flipped and rotated at random. The run
# directory gets `checkpoint.pt` (self-contained: architecture, weights, band statistics,
# tile size), `metrics.csv` and `loss.png`. `device="auto"` uses a GPU when there is one.

# %%
WIDTH, Z_DIM, EPOCHS = (4, 8, 1) if SMALL else (8, 64, 4)
result = geoembed.train(store.path, OUT / "run", z_dim=Z_DIM, base_width=WIDTH,
                        epochs=EPOCHS, batch_size=50, seed=0, overwrite=True, quiet=True)
hist = result.history
epochs = [h["epoch"] for h in hist]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(epochs, [h["loss"] for h in hist], marker="o")
axes[0].set_title("triplet loss")
axes[1].plot(epochs, [h["d_an"] for h in hist], marker="o", label="d(anchor, neighbor)")
axes[1].plot(epochs, [h["d_ad"] for h in hist], marker="o", label="d(anchor, distant)")
axes[1].set_title("mean embedding distances")
axes[1].legend()
for ax in axes:
    ax.set_xlabel("epoch")
plt.tight_layout()
print(f"last epoch: loss {hist[-1]['loss']:.3f}, d(a,n) {hist[-1]['d_an']:.2f} vs "
      f"d(a,d) {hist[-1]['d_ad']:.2f}; {100 * hist[-1]['violated']:.0f}% of the triplets "
      f"still violate the margin; checkpoint: {result.checkpoint}")

# %% [markdown]
# ## 3. Embed the whole scene
#
# A window of the training tile size slides over the scene (here with a stride of 8 px);
# each output pixel holds the embedding of one window, and the output's transform puts
# the pixel's centre exactly on the window's centre. The result is a tiled, compressed
# Cloud Optimized GeoTIFF with overviews, one band per embedding dimension (`emb_000`,
# `emb_001`, ...), NaN where the window was mostly nodata, and tags that record the
# checkpoint. `dtype="int8"` writes unit vectors quantised like Google's Satellite
# Embedding dataset instead.

# %%
emb_path = geoembed.embed(result.checkpoint, SCENE, OUT / "embeddings.tif",
                          stride=32 if SMALL else 8, overwrite=True, quiet=True)[0]
with rasterio.open(emb_path) as ds:
    print(f"{emb_path}: {ds.count} bands ({ds.descriptions[0]}, {ds.descriptions[1]}, ...), "
          f"{ds.width} x {ds.height} px of {ds.res[0]:g} m, {ds.dtypes[0]}, nodata {ds.nodata}")
    tags = ds.tags()
    print({k: tags[k] for k in ("encoder", "z_dim", "tile_size", "stride", "embedding_dtype")})

# %% [markdown]
# ## 4. Look at it: PCA preview and similarity search
#
# `geoembed.analysis.preview.preview` fits a PCA on the embeddings and shows the first three
# components as RGB: areas the encoder considers alike get alike colours. Compare it with
# the true land cover: the texture-only pairs (cropland / grassland, orchard / shrubland)
# come out in different colours although their pixels have the same spectra.

# %%
from geoembed.analysis.preview import preview
from geoembed.analysis.similarity import similarity_map

pv = preview(emb_path, OUT / "preview.png", max_size=512, overwrite=True, quiet=True)
print("explained variance of the 3 components:",
      ", ".join(f"{v:.2f}" for v in pv.explained_variance_ratio))
with rasterio.open(emb_path) as ds:
    emb_extent = (ds.bounds.left, ds.bounds.right, ds.bounds.bottom, ds.bounds.top)
fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
axes[0].imshow(plt.imread(pv.path), extent=emb_extent)
axes[0].set_title("embedding: first 3 principal components")
axes[1].imshow(landcover_rgb(DATA / "landcover.tif"), extent=extent)
axes[1].set_title("true land cover")
for ax in axes:
    ax.set_xlim(extent[:2]); ax.set_ylim(extent[2:]); ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout()

# %% [markdown]
# Similarity search: the cosine similarity of every pixel's embedding to the mean
# embedding at a few reference points, here ten labelled grassland points from
# `points.gpkg` (given in EPSG:4326; geoembed reprojects them). Grassland is the hard
# case: its pixels have exactly the spectra of cropland, only their arrangement differs.

# %%
from geoembed.demo import reference_points, similarity_by_class

xs, ys, crs = reference_points(emb_path, DATA / "points.gpkg", "grassland", 10)
sim_path, _ = similarity_map(emb_path, xs, ys, OUT / "similarity.tif", crs=crs,
                             overwrite=True, quiet=True)
with rasterio.open(sim_path) as ds:
    sim = ds.read(1)
import geopandas as gpd
refs = gpd.GeoSeries(gpd.points_from_xy(xs, ys), crs=crs).to_crs(store.meta["footprints_crs"])
by_class = similarity_by_class(sim_path, DATA / "landcover.tif")
fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.2, 1]})
im = axes[0].imshow(sim, extent=emb_extent, cmap="magma", vmin=np.nanpercentile(sim, 2), vmax=1)
axes[0].scatter(refs.x, refs.y, s=60, facecolor="none", edgecolor="cyan", label="reference points")
axes[0].legend(loc="lower left"); axes[0].set_xticks([]); axes[0].set_yticks([])
axes[0].set_title("cosine similarity to grassland")
plt.colorbar(im, ax=axes[0], fraction=0.046)
order = sorted(by_class, key=by_class.get)
axes[1].barh(order, [by_class[k] for k in order],
             color=[colors[names.index(k)] for k in order])
axes[1].set_xlim(min(by_class.values()) - 0.02, 1)
axes[1].set_title("mean similarity by true class")
plt.tight_layout()
print(f"grassland {by_class['grassland']:.2f} vs cropland {by_class['cropland']:.2f} "
      "(same spectra, different texture)")

# %% [markdown]
# ## Next
#
# * The same steps from the shell: `geoembed tile`, `geoembed train`, `geoembed embed`,
#   `geoembed preview`, `geoembed similar` (see the README), or all at once with
#   `geoembed demo`.
# * `02_landcover_evaluation.ipynb`: how much better than the baselines is a land-cover
#   classifier trained on these embeddings, with few labels and honest (spatial)
#   cross-validation?
# * `03_weak_supervision.ipynb`: U-Nets from one label per tile or one labelled pixel
#   per tile.
# * Your own data: any GeoTIFF (any CRS, with nodata) works the same way; read the
#   embedding raster back with `geoembed.io.embeddings.read_embeddings` or sample it at points
#   with `geoembed.io.embeddings.sample_embeddings`.
