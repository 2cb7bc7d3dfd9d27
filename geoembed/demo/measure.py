"""What the demo measures on its outputs: similarity per true class, the evaluation's rows."""

from __future__ import annotations

import os
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio

from geoembed.demo.settings import TEXTURE_CLASSES
from geoembed.errors import InputError
from geoembed.io.embeddings import sample_embeddings
from geoembed.io.georef import rowcol_to_xy, xy_to_rowcol


def reference_points(embeddings: str | os.PathLike, points: str | os.PathLike,
                     class_name: str, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``n`` points of class ``class_name`` that have a valid embedding.

    Returns ``(xs, ys, crs)`` in the points file's CRS.
    """
    gdf = gpd.read_file(points)
    gdf = gdf[gdf["class"] == class_name]
    crs = gdf.crs.to_string()
    xs, ys = gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy()
    _, valid = sample_embeddings(embeddings, xs, ys, crs=crs)
    if not valid.any():
        raise InputError(f"no {class_name} point of {points} has an embedding")
    keep = np.flatnonzero(valid)[:n]
    return xs[keep], ys[keep], crs


def similarity_by_class(similarity: str | os.PathLike, landcover: str | os.PathLike
                        ) -> dict[str, float]:
    """Mean similarity per true class, at the similarity raster's pixel centers."""
    with rasterio.open(similarity) as ds:
        sim = ds.read(1)
        rows, cols = np.mgrid[0:ds.height, 0:ds.width]
        xs, ys = rowcol_to_xy(ds.transform, rows.ravel(), cols.ravel())
    with rasterio.open(landcover) as lc:
        names = {int(k.split("_", 1)[1]): v for k, v in lc.tags().items()
                 if k.startswith("CLASS_")}
        lc_rows, lc_cols = xy_to_rowcol(lc.transform, xs, ys)
        lc_rows = np.clip(lc_rows, 0, lc.height - 1)
        lc_cols = np.clip(lc_cols, 0, lc.width - 1)
        truth = lc.read(1)[lc_rows, lc_cols]
        nodata = lc.nodata
    values = sim.ravel()
    ok = np.isfinite(values) & (truth != nodata)
    return {names.get(int(c), str(c)): float(values[ok & (truth == c)].mean())
            for c in np.unique(truth[ok])}


def evaluation_metrics(report: dict) -> dict[str, Any]:
    """Per feature set x classifier x CV: accuracy, macro-F1 and the mean F1 of the
    texture-only classes (the ones per-pixel values cannot separate)."""
    rows = []
    for r in report["results"]:
        tex = [r["per_class"][c]["f1"] for c in TEXTURE_CLASSES if c in r["per_class"]]
        rows.append({"features": r["features"], "classifier": r["classifier"], "cv": r["cv"],
                     "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                     "texture_f1": float(np.mean(tex)) if tex else float("nan")})
    return {"n_labels": report["n_labels"], "folds": report["folds"], "rows": rows,
            "best": report["best"]}
