"""The footprints of a triplet store: one polygon per tile in a GeoPackage layer.

Layer ``footprints``: columns ``triplet``, ``role``, ``scene``, ``row``, ``col`` and the
window's outline (its corners through the scene's transform, so rotated grids work),
reprojected vertex by vertex to the layer's CRS when a scene has another. The GeoPackage is
written with SQLite directly (no spatial index; GDAL, geopandas and QGIS read it as usual).

This module does not import torch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from geoembed.io.scenes import Scene

LAYER = "footprints"
ROWS_PER_WRITE = 65536  # triplets per footprints write (appending to a GeoPackage is slow)


def write_footprints(path: Path, scenes: Sequence[Scene], tile_size: int, positions: np.ndarray,
                     crs: Any, roles: Sequence[str]) -> None:
    """Write the footprints of ``positions`` ``(N, R, [scene, row, col])`` (R roles) to a new
    GeoPackage at ``path``, :data:`ROWS_PER_WRITE` triplets at a time (positions may be a
    memory map: only one slice is in memory)."""
    for start in range(0, len(positions), ROWS_PER_WRITE):
        part = np.asarray(positions[start:start + ROWS_PER_WRITE])
        append_footprints(path, scenes, tile_size, start, part, crs, roles, first=start == 0)


def append_footprints(path: Path, scenes: Sequence[Scene], tile_size: int, start: int,
                      pos: np.ndarray, crs: Any, roles: Sequence[str], *, first: bool) -> None:
    """Append one row per tile of ``pos`` ``(k, R, 3)`` (triplets ``start ..``) to the layer."""
    rings = footprint_rings(scenes, tile_size, pos, crs)
    flat = pos.reshape(-1, 3)
    k, n_roles = pos.shape[:2]
    triplet = np.repeat(np.arange(start, start + k), n_roles)
    role = np.tile(np.asarray(roles, dtype=object), k)
    with GeoPackageWriter(path, LAYER, crs, create=first) as gpkg:
        gpkg.add(rings, triplet, role, flat[:, 0], flat[:, 1], flat[:, 2])


def footprint_rings(scenes: Sequence[Scene], tile_size: int, pos: np.ndarray, crs: Any
                    ) -> np.ndarray:
    """Closed rings ``(k * R, 5, 2)`` of the windows in ``pos`` ``(k, R, [scene, row, col])``,
    in ``crs``: corners mapped through their scene's transform, then reprojected vertex by
    vertex (GDAL) when the scene has another CRS."""
    flat = pos.reshape(-1, 3)
    t = tile_size
    rings = np.empty((len(flat), 5, 2), dtype=np.float64)
    for si in np.unique(flat[:, 0]):
        sel = np.flatnonzero(flat[:, 0] == si)
        scene = scenes[si]
        rows, cols = flat[sel, 1].astype(np.float64), flat[sel, 2].astype(np.float64)
        px = np.stack([cols, cols + t, cols + t, cols, cols], axis=1)
        py = np.stack([rows, rows, rows + t, rows + t, rows], axis=1)
        x, y = scene.transform @ (px, py)
        if scene.crs is not None and crs is not None and scene.crs != crs:
            xs, ys = warp_transform(scene.crs, crs, x.ravel().tolist(), y.ravel().tolist())
            x, y = np.reshape(xs, x.shape), np.reshape(ys, y.shape)
        rings[sel, :, 0], rings[sel, :, 1] = x, y
    return rings


class GeoPackageWriter:
    """A minimal GeoPackage (OGC 12-128r18) writer for one polygon layer of footprints.

    GDAL's GeoPackage driver writes a feature at a time (over a second per 60,000 rows
    here, about as long as sampling them) and pyogrio pulls pandas and geopandas in; this
    writes the same tables with SQLite directly: the required metadata tables, the feature
    table, and standard GeoPackage geometry blobs (header with envelope + little-endian
    WKB). No spatial index (GDAL and QGIS read the layer without one).
    """

    _COLUMNS = ("triplet", "role", "scene", "row", "col")
    # GeoPackage binary header + WKB polygon with one ring of 5 points
    _BLOB = np.dtype([
        ("magic", "S2"), ("version", "u1"), ("flags", "u1"), ("srs_id", "<i4"),
        ("envelope", "<f8", (4,)),
        ("byte_order", "u1"), ("wkb_type", "<u4"), ("n_rings", "<u4"), ("n_points", "<u4"),
        ("coords", "<f8", (5, 2)),
    ])

    def __init__(self, path: Path, layer: str, crs: Any, *, create: bool) -> None:
        self.path, self.layer = path, layer
        self.con = sqlite3.connect(path, isolation_level=None)
        self.con.execute("PRAGMA synchronous = OFF")
        self.con.execute("BEGIN")
        self.srs_id = self._srs_id(crs)
        if create:
            self._create(crs)
        self.extent = np.array([np.inf, np.inf, -np.inf, -np.inf])

    def _srs_id(self, crs: Any) -> int:
        if crs is None:
            return 99_999  # GDAL's convention for a layer without CRS
        epsg = crs.to_epsg()
        return int(epsg) if epsg else 100_000  # a custom CRS (WKT in gpkg_spatial_ref_sys)

    def _create(self, crs: Any) -> None:
        c = self.con
        c.execute("PRAGMA application_id = 1196444487")  # "GPKG"
        c.execute("PRAGMA user_version = 10300")
        c.execute(
            "CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER "
            "PRIMARY KEY, organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT "
            "NULL, definition TEXT NOT NULL, description TEXT)"
        )
        srs = [
            ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian"),
            ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic"),
            ("WGS 84 geodetic", 4326, "EPSG", 4326, CRS.from_epsg(4326).to_wkt(),
             "longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid"),
        ]
        if self.srs_id == 99_999:
            srs.append(("Undefined SRS", 99_999, "GDAL", 99_999,
                        'LOCAL_CS["Undefined SRS",LOCAL_DATUM["unknown",32767],'
                        'UNIT["unknown",0],AXIS["Easting",EAST],AXIS["Northing",NORTH]]',
                        "Custom undefined coordinate reference system"))
        elif self.srs_id not in (-1, 0, 4326):
            org = "EPSG" if self.srs_id < 100_000 else "NONE"
            name = crs.to_dict().get("proj", "custom") if org == "NONE" else f"EPSG:{self.srs_id}"
            srs.append((str(name), self.srs_id, org, self.srs_id, crs.to_wkt(), None))
        c.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", srs)
        c.execute(
            "CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT "
            "NOT NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '', last_change "
            "DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')), min_x DOUBLE, "
            "min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER, CONSTRAINT "
            "fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))"
        )
        c.execute(
            "CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT "
            "NOT NULL, geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT "
            "NOT NULL, m TINYINT NOT NULL, CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, "
            "column_name), CONSTRAINT uk_gc_table_name UNIQUE (table_name), CONSTRAINT "
            "fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name), "
            "CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys "
            "(srs_id))"
        )
        c.execute(
            f'CREATE TABLE "{self.layer}" (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, '
            'geom POLYGON, triplet INTEGER, role TEXT, scene INTEGER, "row" INTEGER, '
            '"col" INTEGER)'
        )
        c.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, srs_id) "
                  "VALUES (?, 'features', ?, ?)", (self.layer, self.layer, self.srs_id))
        c.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'POLYGON', ?, 0, 0)",
                  (self.layer, self.srs_id))

    def add(self, rings: np.ndarray, triplet: np.ndarray, role: np.ndarray,
            scene: np.ndarray, row: np.ndarray, col: np.ndarray) -> None:
        """Insert one feature per ring ``(n, 5, 2)``; ``role`` holds role names."""
        n = len(rings)
        blob = np.zeros(n, dtype=self._BLOB)
        blob["magic"] = b"GP"
        blob["flags"] = 0b011  # little-endian header, envelope [minx, maxx, miny, maxy]
        blob["srs_id"] = self.srs_id
        lo, hi = rings.min(axis=1), rings.max(axis=1)
        blob["envelope"] = np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], axis=1)
        blob["byte_order"] = 1
        blob["wkb_type"] = 3  # Polygon
        blob["n_rings"] = 1
        blob["n_points"] = 5
        blob["coords"] = rings
        if n:
            self.extent = np.concatenate([np.minimum(self.extent[:2], lo.min(axis=0)),
                                          np.maximum(self.extent[2:], hi.max(axis=0))])
        size = self._BLOB.itemsize
        raw = memoryview(blob.tobytes())
        self.con.executemany(
            f'INSERT INTO "{self.layer}" (geom, triplet, role, scene, "row", "col") '
            "VALUES (?, ?, ?, ?, ?, ?)",
            zip((raw[i * size:(i + 1) * size] for i in range(n)), triplet.tolist(),
                np.asarray(role).tolist(), scene.tolist(), row.tolist(), col.tolist(), strict=True),
        )

    def __enter__(self) -> GeoPackageWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                old = self.con.execute(
                    "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?",
                    (self.layer,)).fetchone()
                ext = self.extent
                if old and old[0] is not None:
                    ext = np.concatenate([np.minimum(ext[:2], old[:2]),
                                          np.maximum(ext[2:], old[2:])])
                if np.isfinite(ext).all():
                    self.con.execute(
                        "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?, "
                        "last_change = strftime('%Y-%m-%dT%H:%M:%fZ','now') "
                        "WHERE table_name = ?", (*map(float, ext), self.layer))
                self.con.execute("COMMIT")
            else:
                self.con.execute("ROLLBACK")
        finally:
            self.con.close()
