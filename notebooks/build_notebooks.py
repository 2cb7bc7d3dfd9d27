"""Build the example notebooks from the cell sources below, and optionally execute them.

    .venv/bin/python notebooks/build_notebooks.py             # write the .ipynb files
    .venv/bin/python notebooks/build_notebooks.py --execute   # ... and run them in place

The committed notebooks are the executed ones (outputs kept, so that they read well on a
code host). They run with the kernel of the current interpreter (ipykernel's ``python3``)
from the ``notebooks/`` directory and write their files under ``notebooks/_out/`` (ignored by
git). With ``GEOEMBED_NOTEBOOK_SMALL=1`` in the environment they use tiny sizes (the test
``tests/test_notebooks.py`` runs them that way).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
%config InlineBackend.figure_formats = ["jpeg"]  # JPEG figures keep the notebook small
%config InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "pil_kwargs": {"quality": 90}}
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
OUT = Path("_out") / "{name}"
OUT.mkdir(parents=True, exist_ok=True)
'''


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(textwrap.dedent(text).strip())


# ----------------------------------------------------------------------------------------------
# 01: Tile2Vec quickstart
# ----------------------------------------------------------------------------------------------

NB01 = [
    md("""
    # Tile2Vec quickstart: from a GeoTIFF to an embedding GeoTIFF

    [Tile2Vec](https://arxiv.org/abs/1805.02855) learns a representation of image tiles
    without labels: a tile (the *anchor*) should embed close to a tile from its
    neighbourhood (the *neighbor*) and far from a tile from elsewhere (the *distant* tile).
    This notebook runs the whole unsupervised part of geoembed on the bundled sample scene:

    1. `geoembed.tile`: sample anchor / neighbor / distant triplets into a triplet store;
    2. `geoembed.train`: train a small TileNet with the triplet loss;
    3. `geoembed.embed`: embed the whole scene into a georeferenced, multi-band GeoTIFF;
    4. look at it: a PCA preview and a similarity map.

    The sizes here are small enough for a laptop CPU (about a minute). The same calls
    train the paper's configuration on a GPU (`tile_size=50, neighborhood=100,
    base_width=64, z_dim=512, batch_size=50`, 100k triplets).
    """),
    code(SETUP.replace("{name}", "01_quickstart")),
    md("""
    ## The scene

    `sample_data/scene.tif` is synthetic: 1024 x 1024 pixels of 2 m, 4 bands (blue,
    green, red, near infrared), UTM zone 15N, with a nodata border. Its true land cover is
    known (`landcover.tif`) but is **never used for training** here. Two pairs of classes
    have exactly the same per-pixel spectra and differ only in texture: cropland (stripes)
    vs. grassland (random grain), and orchard (trees on a lattice) vs. shrubland (the same
    shrubs at random positions). A per-pixel classifier cannot separate them; something
    that looks at a whole tile can.
    """),
    code("""
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
    """),
    md("""
    ## 1. Sample triplets

    `geoembed.tile` draws anchors uniformly over the valid (not nodata) area, a neighbor
    whose centre is within `neighborhood` pixels of the anchor's centre, and a distant tile
    farther away (or from another scene when several are given). Tiles touching nodata are
    rejected. The store is one memory-mappable array `(N, 3, bands, tile, tile)`, the tile
    footprints as a GeoPackage in the scene's CRS, and `meta.json` (band statistics, the
    sampler's options, the scenes' georeferencing).
    """),
    code("""
    store = geoembed.tile([SCENE], OUT / "triplets", n_triplets=100 if SMALL else 2000,
                          tile_size=32, neighborhood=32, seed=0, overwrite=True, quiet=True)
    print("triplets:", store.triplets.shape, store.triplets.dtype)
    footprints = store.footprints()
    footprints.head(6)
    """),
    code("""
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
    """),
    code("""
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
    """),
    md("""
    ## 2. Train a TileNet

    TileNet is the paper's ResNet-18-like encoder. `base_width=8` (the paper: 64) and
    `z_dim=64` (the paper: 512) make it small enough to train in well under a minute on a
    CPU.
    The loss is the paper's triplet loss, `max(0, d(a,n) - d(a,d) + margin)` plus a small
    penalty on the embeddings' norms; tiles are flipped and rotated at random. The run
    directory gets `checkpoint.pt` (self-contained: architecture, weights, band statistics,
    tile size), `metrics.csv` and `loss.png`. `device="auto"` uses a GPU when there is one.
    """),
    code("""
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
    """),
    md("""
    ## 3. Embed the whole scene

    A window of the training tile size slides over the scene (here with a stride of 8 px);
    each output pixel holds the embedding of one window, and the output's transform puts
    the pixel's centre exactly on the window's centre. The result is a tiled, compressed
    Cloud Optimized GeoTIFF with overviews, one band per embedding dimension (`emb_000`,
    `emb_001`, ...), NaN where the window was mostly nodata, and tags that record the
    checkpoint. `dtype="int8"` writes unit vectors quantised like Google's Satellite
    Embedding dataset instead.
    """),
    code("""
    emb_path = geoembed.embed(result.checkpoint, SCENE, OUT / "embeddings.tif",
                              stride=32 if SMALL else 8, overwrite=True, quiet=True)[0]
    with rasterio.open(emb_path) as ds:
        print(f"{emb_path}: {ds.count} bands ({ds.descriptions[0]}, {ds.descriptions[1]}, ...), "
              f"{ds.width} x {ds.height} px of {ds.res[0]:g} m, {ds.dtypes[0]}, nodata {ds.nodata}")
        tags = ds.tags()
        print({k: tags[k] for k in ("encoder", "z_dim", "tile_size", "stride", "embedding_dtype")})
    """),
    md("""
    ## 4. Look at it: PCA preview and similarity search

    `geoembed.analysis.preview.preview` fits a PCA on the embeddings and shows the first three
    components as RGB: areas the encoder considers alike get alike colours. Compare it with
    the true land cover: the texture-only pairs (cropland / grassland, orchard / shrubland)
    come out in different colours although their pixels have the same spectra.
    """),
    code("""
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
    """),
    md("""
    Similarity search: the cosine similarity of every pixel's embedding to the mean
    embedding at a few reference points, here ten labelled grassland points from
    `points.gpkg` (given in EPSG:4326; geoembed reprojects them). Grassland is the hard
    case: its pixels have exactly the spectra of cropland, only their arrangement differs.
    """),
    code("""
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
    """),
    md("""
    ## Next

    * The same steps from the shell: `geoembed tile`, `geoembed train`, `geoembed embed`,
      `geoembed preview`, `geoembed similar` (see the README), or all at once with
      `geoembed demo`.
    * `02_landcover_evaluation.ipynb`: how much better than the baselines is a land-cover
      classifier trained on these embeddings, with few labels and honest (spatial)
      cross-validation?
    * `03_weak_supervision.ipynb`: U-Nets from one label per tile or one labelled pixel
      per tile.
    * Your own data: any GeoTIFF (any CRS, with nodata) works the same way; read the
      embedding raster back with `geoembed.io.embeddings.read_embeddings` or sample it at points
      with `geoembed.io.embeddings.sample_embeddings`.
    """),
]


# ----------------------------------------------------------------------------------------------
# 02: land-cover evaluation
# ----------------------------------------------------------------------------------------------

NB02 = [
    md("""
    # Land-cover classification with few labels: embeddings vs. baselines

    Do the Tile2Vec embeddings help a land-cover classifier? `geoembed.evaluate` answers
    it for a scene and a set of labelled points: it computes several feature sets for every
    label and cross-validates a classifier on each:

    | feature set | what it is |
    |---|---|
    | `embedding` | the trained encoder's embedding of the tile centred on the label |
    | `bands` | the label pixel's band values |
    | `tile-stats` | per-band mean and standard deviation of the same tile |
    | `random-encoder` | the same network, untrained ("is training doing anything?") |
    | `pca` | principal components of the tile's pixels (the paper's unsupervised baseline) |
    | `embedding+bands` | both together |

    Cross-validation comes in two kinds. **Random** CV puts labels in folds at random, so
    a test label usually has a training label a few pixels away: neighbours look alike,
    and the score is optimistic. **Spatial** CV groups labels in square blocks (4 tiles
    wide by default) and keeps each block in one fold, which is closer to mapping an area
    you have no labels in.
    """),
    code(SETUP.replace("{name}", "02_evaluation")),
    md("""
    ## A small encoder

    This time the encoder trains *on the fly*: fresh triplets are sampled from the scene
    every epoch, with no triplet store on disk (the mode for scenes too large to store
    triplets from). Same small TileNet as in the quickstart.
    """),
    code("""
    N_TRIPLETS, WIDTH, Z_DIM, EPOCHS = (100, 4, 8, 1) if SMALL else (2000, 8, 64, 3)
    run = geoembed.train(scenes=[SCENE], out=OUT / "run", n_triplets=N_TRIPLETS,
                         tile_size=32, neighborhood=32, z_dim=Z_DIM, base_width=WIDTH,
                         epochs=EPOCHS, batch_size=50, seed=0, overwrite=True, quiet=True)
    last = run.history[-1]
    print(f"loss {run.history[0]['loss']:.2f} -> {last['loss']:.2f}; "
          f"d(a,n) {last['d_an']:.2f} vs d(a,d) {last['d_ad']:.2f}")
    """),
    md("""
    ## The labels

    `points.gpkg` holds 596 labelled points (EPSG:4326, at least 40 per class). geoembed
    reprojects them to the scene's CRS, finds their pixels and drops any outside the scene
    or on nodata.
    """),
    code("""
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
    """),
    md("""
    ## Evaluate

    Logistic regression (a linear probe: it can only use what the features make linearly
    separable) on every feature set, spatial and random 5-fold CV, and a learning curve:
    each model refitted on 10, 20, 50, ... random training labels of each fold.
    """),
    code("""
    ev = geoembed.evaluate(
        SCENE, OUT / "evaluation", labels=DATA / "points.gpkg", label_column="class",
        checkpoint=run.checkpoint, classifier="logreg", cv="both",
        learning_curve_sizes="10,50,all" if SMALL else "10,20,50,100,200,all",
        repeats=1 if SMALL else 3, pca_tiles=100 if SMALL else 500,
        max_labels=150 if SMALL else None, seed=0, overwrite=True, quiet=True)
    for note in ev.warnings:
        print("note:", note)
    print(ev.table())
    """),
    md("""
    The spatial folds: each colour is one fold, made of whole blocks.
    """),
    code("""
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
    """),
    md("""
    ## All classes vs. the texture-only classes

    Macro-F1 over all seven classes, and the mean F1 of the four texture-only classes
    (cropland, grassland, orchard, shrubland), where per-pixel values carry no information
    about the class.
    """),
    code("""
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
    """),
    md("""
    ## Learning curve

    Macro-F1 against the number of training labels (spatial CV; mean over random subsets,
    the band is one standard deviation).
    """),
    code("""
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
    """),
    md("""
    ## What it means

    The numbers below are computed from this run's report (so they stay true when you
    change the settings above).
    """),
    code("""
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
    """),
    md("""
    How to read this:

    * **Texture.** Band values and tile mean / standard deviation cannot separate cropland
      from grassland or orchard from shrubland: on the sample data they have the same
      spectra in the same proportions. The embedding was trained without a single label,
      only to tell neighbouring tiles from distant ones, and that was enough to make the
      texture linearly separable; the untrained encoder shows how much of it comes from
      training rather than from the architecture.
    * **Spatial vs. random CV.** Random CV lets a test label's neighbours sit in the
      training folds, so it rewards memorising places. On this synthetic scene the points
      are sparse and the classes repeat all over the scene, so the gap printed above is
      small; with spatially clustered labels on real imagery it is usually larger. Report
      spatial CV when the map will be used away from the labels.
    * **Few labels.** The learning curve is what matters when labels are expensive: the
      question is how many labels a feature set needs to reach a given score.
    * The sample data is synthetic and small; `bench/` has the numbers on real imagery
      (NAIP) when it is available. On your own data, run
      `geoembed evaluate --scene ... --labels ... --label-column ... --checkpoint ...`.
    """),
    code("""
    from geoembed.evaluation.evaluate import plot_confusion
    from IPython.display import Image

    best = max((r for r in ev.report["results"] if r["features"] == "embedding"),
               key=lambda r: r["cv"] == "spatial")
    plot_confusion(OUT / "confusion_embedding.png", best)
    Image(filename=str(OUT / "confusion_embedding.png"), width=480)
    """),
]


# ----------------------------------------------------------------------------------------------
# 03: weak supervision
# ----------------------------------------------------------------------------------------------

NB03 = [
    md("""
    # Weak supervision: crop maps from one label per tile or one pixel per tile

    Following Wang et al. (2020, *Remote Sensing*), geoembed trains U-Nets
    (segmentation-models-pytorch) from cheap labels and maps crop / not crop:

    | label type | what is labelled | how the U-Net learns |
    |---|---|---|
    | `image` | one label per 50 x 50 px tile: "at least half crop?" | a class activation map (CAM) per pixel, averaged into one tile logit; the CAM threshold is chosen on the training tiles |
    | `pixel` | one labelled pixel per tile, at a random position | per-pixel logits, loss at the labelled pixel only |
    | `dense` | every pixel of the tile (the expensive upper bound) | per-pixel loss everywhere |

    Training uses the bundled sample scene's 367 weak tiles; scoring uses a **held-out
    scene** generated with another seed, so no label of it is ever seen.
    """),
    code(SETUP.replace("{name}", "03_weak")),
    code("""
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
    """),
    md("""
    Dense labels for the same tiles (the upper bound): the true crop mask inside the 367
    tiles, 255 (unlabelled) elsewhere, written as a label raster on the scene's grid. And
    the held-out scene.
    """),
    code("""
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
    """),
    md("""
    ## Train the three U-Nets

    A small U-Net (ResNet-18 encoder of depth 3, decoder widths 32-16-8, no pretrained
    weights) sized for a CPU; `weak_train` takes the same options as
    `geoembed weak train`.
    """),
    code("""
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
    """),
    md("""
    ## Class activation maps and the threshold

    The image-level U-Net never saw a pixel label. Its CAM is the tile classifier applied
    at every pixel: a per-pixel crop logit. A tile is called crop when **more than half**
    of its CAM pixels exceed the threshold `t`; `t` is the value that makes this rule
    most accurate on the training tiles. Below: for every training tile, the largest `t`
    at which it would still be called crop, and the image accuracy as a function of `t`.
    """),
    code("""
    import torch
    from rasterio.windows import Window

    from geoembed.io.scenes import open_scene
    from geoembed.inference.segmentation import WeakPredictor
    from geoembed.trainers.weak import majority_scores

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
    """),
    code("""
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
    """),
    md("""
    ## Segment the held-out scene

    `geoembed.segment` slides overlapping windows over the whole scene, blends their
    logits so that window borders leave no seams, writes a class-map GeoTIFF and, with a
    reference raster, a JSON report of pixel precision / recall / F1 / IoU.
    """),
    code("""
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
    """),
    code("""
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
    """),
    md("""
    Reading the maps: green is crop found, red is non-crop called crop, blue is crop
    missed. Dense labels are the upper bound for this U-Net and this many tiles. Single
    pixels give the U-Net exact but sparse supervision. Image-level labels say nothing
    about where in a tile the crop is: the CAM has to discover it, which makes its maps
    blurrier at field edges. The paper's results on Landsat (F1 0.88 with single pixels,
    0.80 with image labels) came from 50 (pixel) and 200 (image) epochs on a GPU; these
    CPU-sized runs train for a few epochs on one small scene, so the ranking can change
    from run to run. `bench/` measures all three at several label counts.

    From the shell: `geoembed weak train scene.tif --labels weak_points.gpkg
    --label-column crop --label-type pixel --out runs/pixel`, then `geoembed segment
    runs/pixel/checkpoint.pt other_scene.tif --out crop.tif`.
    """),
]


NOTEBOOKS = {
    "01_tile2vec_quickstart.ipynb": NB01,
    "02_landcover_evaluation.ipynb": NB02,
    "03_weak_supervision.ipynb": NB03,
}


def build(name: str) -> nbformat.NotebookNode:
    """A fresh notebook (no outputs) from its cell sources."""
    nb = new_notebook(cells=list(NOTEBOOKS[name]))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 900) -> float:
    """Run every cell with a ``python3`` kernel of the current interpreter; return seconds."""
    import json
    import os
    import tempfile

    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as root:
        # a kernelspec for this interpreter, first on JUPYTER_PATH (a user-level "python3"
        # kernelspec for another Python must not run the notebooks)
        spec = Path(root) / "kernels" / "python3"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python"}))
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = root
        try:
            t0 = time.perf_counter()
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(cwd)}}).execute()
            return time.perf_counter() - t0
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="notebooks to build (default: all)")
    p.add_argument("--execute", action="store_true", help="run them and keep the outputs")
    args = p.parse_args(argv)
    for name in args.names or NOTEBOOKS:
        name = Path(name).name
        nb = build(name)
        if args.execute:
            seconds = execute(nb, HERE)
            print(f"{name}: executed in {seconds:.0f} s", file=sys.stderr)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        size = (HERE / name).stat().st_size
        print(f"wrote {HERE / name} ({size / 1024:.0f} KiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
