"""Query points for similarity search: read them from a vector file, merge them with ones given
on the command line, each with its CRS.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from geoembed.errors import InputError, first_line
from geoembed.io.embeddings import transform_points


def read_points_file(path: str | os.PathLike, crs: Any = None
                     ) -> tuple[np.ndarray, np.ndarray, Any]:
    """Points from a vector file (GeoPackage, GeoJSON, Shapefile...) or a CSV.

    A CSV needs ``x`` and ``y`` (or ``lon``/``lat``, ``longitude``/``latitude``) columns in
    ``crs``. A vector file carries its own CRS (``crs`` is used only when it has none).

    Returns:
        ``(xs, ys, crs)``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() in (".csv", ".txt"):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise InputError(f"{path}: no points in the file")
        cols = {c.lower().strip(): c for c in rows[0]}
        for cx, cy in (("x", "y"), ("lon", "lat"), ("longitude", "latitude")):
            if cx in cols and cy in cols:
                try:
                    xs = np.array([float(r[cols[cx]]) for r in rows])
                    ys = np.array([float(r[cols[cy]]) for r in rows])
                except ValueError as exc:
                    raise InputError(f"{path}: bad coordinate ({exc})") from None
                return xs, ys, crs
        raise InputError(f"{path}: the CSV needs x,y (or lon,lat) columns; it has "
                         f"{list(rows[0])}")
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:
        raise InputError(f"{path}: not a vector file ({type(exc).__name__}: "
                         f"{first_line(exc, 120)})") from None
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if gdf.empty:
        raise InputError(f"{path}: no points in the file")
    if not (gdf.geom_type == "Point").all():
        raise InputError(f"{path}: only point geometries can be used as references "
                         f"(found {sorted(set(gdf.geom_type))})")
    return gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy(), gdf.crs or crs


def merge_points(groups: Sequence[tuple[Sequence[float], Sequence[float], Any]]
                 ) -> tuple[np.ndarray, np.ndarray, Any]:
    """Points given in several CRSs (``[(xs, ys, crs), ...]``) -> all in the first's CRS."""
    groups = [g for g in groups if len(g[0])]
    if not groups:
        return np.zeros(0), np.zeros(0), None
    crs = groups[0][2]
    xs, ys = [], []
    for gx, gy, gcrs in groups:
        gx, gy = np.asarray(gx, dtype=float), np.asarray(gy, dtype=float)
        if gcrs is not None and crs is not None and str(gcrs) != str(crs):
            gx, gy = transform_points(gx, gy, gcrs, crs)
        xs.append(gx)
        ys.append(gy)
    return np.concatenate(xs), np.concatenate(ys), crs
