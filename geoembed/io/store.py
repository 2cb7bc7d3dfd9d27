"""The on-disk triplet store written by ``geoembed tile``.

A store is a directory holding:

- ``triplets.npy``: one array ``(N, 3, C, T, T)`` in the scenes' dtype (anchor, neighbor,
  distant), loadable with ``np.load(path, mmap_mode="r")``;
- ``footprints.gpkg``: layer ``footprints``, one row per tile with columns ``triplet``,
  ``role`` (anchor / neighbor / distant), ``scene`` (index into ``meta["scenes"]``), ``row``,
  ``col`` (pixel offset of the window's top-left corner) and the window's footprint polygon.
  Footprints are in the first scene's CRS (``meta["footprints_crs"]``): footprints of scenes
  in another CRS are reprojected to it (vertex by vertex). The GeoPackage is written with
  SQLite directly (no spatial index; GDAL, geopandas and QGIS read it as usual);
- ``meta.json``: tile size, neighborhood, bands, band statistics, scenes (path, CRS,
  transform, size, nodata - ``"nan"`` for NaN), seed, sampler options and the geoembed
  version. With ``max_nodata > 0`` tiles may hold nodata pixels (the scene's nodata value).

The store is written streaming (pixels go straight to the file at their offset, memory does
not grow with N or with scene size) into a temporary directory renamed into place at the end.
This module does not import torch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from geoembed import __version__
from geoembed.errors import CRSError, InputError, OutputExistsError
from geoembed.io.outputs import temporary_sibling
from geoembed.io.scenes import BandStats, Scene, band_statistics, open_scenes
from geoembed.samplers.triplets import ROLES, TripletSampler

FORMAT = "geoembed-triplets"
TRIPLETS = "triplets.npy"
FOOTPRINTS = "footprints.gpkg"
META = "meta.json"
_GDAL_CACHE_BYTES = 32 * 2**20  # keeps GDAL's block cache (and so peak memory) small
_FOOTPRINT_ROWS = 65536  # triplets per footprints write (appending to a GeoPackage is slow)


@dataclass
class TripletStore:
    """An opened triplet store: ``triplets`` is a read-only memory map ``(N, 3, C, T, T)``."""

    path: Path
    triplets: np.ndarray
    meta: dict

    @property
    def n_triplets(self) -> int:
        return int(self.triplets.shape[0])

    @property
    def tile_size(self) -> int:
        return int(self.meta["tile_size"])

    @property
    def bands(self) -> list[int]:
        """1-based band indexes of the scenes that the store holds."""
        return list(self.meta["bands"])

    @property
    def band_count(self) -> int:
        return int(self.meta["band_count"])

    @property
    def band_stats(self) -> BandStats:
        return BandStats.from_dict(self.meta["band_stats"])

    @property
    def footprints_path(self) -> Path:
        return self.path / FOOTPRINTS

    def footprints(self) -> Any:
        """The footprints as a GeoDataFrame (one row per tile)."""
        import geopandas as gpd

        return gpd.read_file(self.footprints_path, layer="footprints")

    def __len__(self) -> int:
        return self.n_triplets


def open_store(path: str | os.PathLike) -> TripletStore:
    """Open a triplet store, checking that its files agree with each other.

    Raises:
        InputError: a missing directory or file, a foreign or corrupt ``meta.json``, or a
            ``triplets.npy`` that is truncated or whose shape/dtype disagrees with the metadata.
    """
    path = Path(path)
    hint = "write one with `geoembed tile`"
    if not path.is_dir():
        raise InputError(f"{path}: no triplet store there ({hint})")
    meta_path = path / META
    if not meta_path.is_file():
        raise InputError(f"{path}: not a triplet store, {META} is missing ({hint})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{meta_path}: unreadable metadata ({exc}); rewrite the store") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{meta_path}: not a geoembed triplet store ({hint})")
    npy = path / TRIPLETS
    if not npy.is_file():
        raise InputError(f"{path}: {TRIPLETS} is missing; rewrite the store ({hint})")
    try:
        triplets = np.load(npy, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{npy}: truncated or corrupt ({str(exc).strip()}); rewrite the store ({hint})"
        ) from None
    try:
        expected = (int(meta["n_triplets"]), 3, int(meta["band_count"]), int(meta["tile_size"]),
                    int(meta["tile_size"]))
        dtype = np.dtype(meta["dtype"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{meta_path}: incomplete metadata ({exc}); rewrite the store") from None
    if triplets.shape != expected or triplets.dtype != dtype:
        raise InputError(
            f"{npy}: array {triplets.shape} {triplets.dtype} does not match {META} "
            f"({expected} {dtype}); rewrite the store"
        )
    return TripletStore(path=path, triplets=triplets, meta=meta)


def tile(scenes: Sequence[str | os.PathLike], out: str | os.PathLike, *, n_triplets: int,
         tile_size: int = 50, neighborhood: float = 100, bands: Sequence[int] | None = None,
         max_nodata: float = 0.0, distant_other_scene_prob: float | None = None,
         aoi: Any = None, seed: int = 0, overwrite: bool = False, quiet: bool = False,
         allow_no_crs: bool = False) -> TripletStore:
    """Sample Tile2Vec triplets from scenes into a triplet store at ``out``.

    Args:
        scenes: raster paths (same band count after the ``bands`` selection).
        out: the store directory to write.
        n_triplets: number of triplets ``N``.
        tile_size: tile side in pixels.
        neighborhood: neighbor radius in pixels (centers, Euclidean).
        bands: 1-based bands to keep (default: every band).
        max_nodata: largest nodata fraction of a tile.
        distant_other_scene_prob: probability that a distant tile comes from another scene
            (default 0.5 with several scenes, 0 with one).
        aoi: vector file (any CRS) or GeoDataFrame restricting anchors' centers.
        seed: random seed; the same seed gives the same store.
        overwrite: replace an existing ``out``.
        quiet: no progress bar.
        allow_no_crs: accept rasters without a CRS.

    Returns:
        The opened :class:`TripletStore`.

    Raises:
        GeoembedError subclasses for bad input (nothing is written then).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    n_triplets = int(n_triplets)
    if n_triplets < 1:
        raise InputError(f"the number of triplets must be at least 1, got {n_triplets}")
    opened = open_scenes(scenes, bands, allow_no_crs=allow_no_crs)
    crss = [s.crs for s in opened]
    if any(c is None for c in crss) and any(c is not None for c in crss):
        raise CRSError("some scenes have a CRS and others do not; assign a CRS to every scene")
    sampler = TripletSampler(opened, tile_size, neighborhood, max_nodata=max_nodata,
                             distant_other_scene_prob=distant_other_scene_prob, aoi=aoi)
    stats = band_statistics(opened, n_windows=32, window_size=128, seed=seed,
                           max_pixels=262_144)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(out)
    tmp.mkdir()
    try:
        with rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_BYTES):
            _write_triplets(tmp, sampler, n_triplets, seed, quiet)
        meta = _meta(opened, sampler, n_triplets, stats, seed, aoi)
        (tmp / META).write_text(json.dumps(meta, indent=1))
        if out.exists():
            if not overwrite:  # appeared meanwhile
                raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            else:
                out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_store(out)


def _write_triplets(tmp: Path, sampler: TripletSampler, n: int, seed: int, quiet: bool) -> None:
    """Stream pixels into ``triplets.npy``, then write ``footprints.gpkg``.

    Pixels arrive in scene order (the sampler reads strips), so they are written at their
    offsets in the file (buffered, sorted and coalesced); positions go to a temporary file
    and the footprints are written after the pixels (the vector stack is imported only then).
    """
    from tqdm.auto import tqdm

    shape = (n, *sampler.tile_shape)
    mm = np.lib.format.open_memmap(tmp / TRIPLETS, mode="w+", dtype=sampler.dtype, shape=shape)
    header = int(mm.offset)
    del mm
    pos_path = tmp / ".positions.npy"
    positions = np.lib.format.open_memmap(pos_path, mode="w+", dtype=np.int64,
                                          shape=(n, 3, 3))
    tile_bytes = int(np.prod(sampler.tile_shape[1:])) * sampler.dtype.itemsize
    fd = os.open(tmp / TRIPLETS, os.O_RDWR)
    try:
        if hasattr(os, "posix_fallocate"):
            try:  # allocate blocks up front: much faster scattered writes on some filesystems
                os.posix_fallocate(fd, 0, header + n * 3 * tile_bytes)
            except OSError:
                pass
        writer = _ScatterWriter(fd, header, tile_bytes)
        with tqdm(total=n, unit="triplet", disable=quiet, desc="sampling") as bar:
            def sink(t: np.ndarray, r: np.ndarray, tiles: np.ndarray) -> None:
                writer.add(t * 3 + r, tiles)
                bar.update(max(0, min(n, writer.count // 3) - bar.n))

            for start, pos, _ in sampler.iter_groups(n, seed, sink=sink):
                positions[start:start + len(pos)] = pos
            bar.update(n - bar.n)
    finally:
        os.close(fd)
    positions.flush()
    fp_crs = sampler.scenes[0].crs
    step = _FOOTPRINT_ROWS
    for start in range(0, n, step):
        _append_footprints(tmp / FOOTPRINTS, sampler, start,
                           np.asarray(positions[start:start + step]), fp_crs, start == 0)
    del positions
    pos_path.unlink()


class _ScatterWriter:
    """Write tiles to their slots of the file; consecutive slots in one write.

    The sampler hands over tiles sorted by (triplet, role), so an anchor and its neighbor
    cut from the same strip usually go out in one write.
    """

    def __init__(self, fd: int, header: int, tile_bytes: int) -> None:
        self.fd, self.header, self.tile_bytes = fd, header, tile_bytes
        self.count = 0

    def add(self, slots: np.ndarray, tiles: np.ndarray) -> None:
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) > 1 and (np.diff(slots) <= 0).any():  # not sorted: sort (last wins)
            order = np.lexsort((np.arange(len(slots)), slots))
            s = slots[order]
            order = order[np.append(s[1:] != s[:-1], True)]
            slots, tiles = slots[order], tiles[order]
        tiles = np.ascontiguousarray(tiles)
        starts = np.flatnonzero(np.diff(slots, prepend=-2) != 1)
        ends = np.append(starts[1:], len(slots))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            os.pwrite(self.fd, tiles[a:b], self.header + int(slots[a]) * self.tile_bytes)
        self.count += len(slots)


def _footprint_rows(sampler: TripletSampler, pos: np.ndarray, crs: Any
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Footprint rings ``(3k, 5, 2)`` of the tiles in ``pos`` (k, 3, 3), in ``crs``, and the
    flat ``(3k, 3)`` positions. Windows are mapped through their scene's transform (so
    rotated grids work); other CRSs are reprojected vertex by vertex (GDAL)."""
    from rasterio.warp import transform as warp_transform

    flat = pos.reshape(-1, 3)
    t = sampler.tile_size
    rings = np.empty((len(flat), 5, 2), dtype=np.float64)
    for si in np.unique(flat[:, 0]):
        sel = np.flatnonzero(flat[:, 0] == si)
        scene = sampler.scenes[si]
        rows, cols = flat[sel, 1].astype(np.float64), flat[sel, 2].astype(np.float64)
        a, b, c, d, e, f = tuple(scene.transform)[:6]
        px = np.stack([cols, cols + t, cols + t, cols, cols], axis=1)
        py = np.stack([rows, rows, rows + t, rows + t, rows], axis=1)
        x, y = a * px + b * py + c, d * px + e * py + f
        if scene.crs is not None and crs is not None and scene.crs != crs:
            xs, ys = warp_transform(scene.crs, crs, x.ravel().tolist(), y.ravel().tolist())
            x, y = np.reshape(xs, x.shape), np.reshape(ys, y.shape)
        rings[sel, :, 0], rings[sel, :, 1] = x, y
    return rings, flat


def _append_footprints(path: Path, sampler: TripletSampler, start: int, pos: np.ndarray,
                       crs: Any, first: bool) -> None:
    """Append one row per tile of ``pos`` (k, 3, 3) to the footprints GeoPackage."""
    rings, flat = _footprint_rows(sampler, pos, crs)
    k = len(pos)
    triplet = np.repeat(np.arange(start, start + k), 3)
    role = np.tile(np.arange(3), k)
    with _GeoPackageWriter(path, "footprints", crs, create=first) as gpkg:
        gpkg.add(rings, triplet, role, flat[:, 0], flat[:, 1], flat[:, 2])


class _GeoPackageWriter:
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
        import sqlite3

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
        from rasterio.crs import CRS

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
        names = np.asarray(ROLES, dtype=object)[role]
        self.con.executemany(
            f'INSERT INTO "{self.layer}" (geom, triplet, role, scene, "row", "col") '
            "VALUES (?, ?, ?, ?, ?, ?)",
            zip((raw[i * size:(i + 1) * size] for i in range(n)), triplet.tolist(),
                names.tolist(), scene.tolist(), row.tolist(), col.tolist(), strict=True),
        )

    def __enter__(self) -> _GeoPackageWriter:
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


def crs_string(crs: Any) -> str | None:
    """``EPSG:xxxx`` when the CRS has an EPSG code, else its WKT (None without CRS)."""
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _scene_meta(s: Scene) -> dict[str, Any]:
    nodata = s.nodata
    if nodata is not None and isinstance(nodata, float) and not math.isfinite(nodata):
        nodata = str(nodata)  # JSON has no NaN
    return {
        "path": str(Path(s.path).resolve()),
        "crs": crs_string(s.crs),
        "transform": [float(v) for v in tuple(s.transform)[:6]],
        "width": int(s.width),
        "height": int(s.height),
        "nodata": nodata,
        "descriptions": list(s.descriptions),
    }


def _meta(scenes: list[Scene], sampler: TripletSampler, n: int, stats: BandStats, seed: int,
          aoi: Any) -> dict[str, Any]:
    if aoi is None or isinstance(aoi, (str, os.PathLike)):
        aoi_meta = None if aoi is None else str(Path(aoi).resolve())
    else:
        aoi_meta = "<in-memory GeoDataFrame>"
    return {
        "format": FORMAT,
        "geoembed_version": __version__,
        "n_triplets": n,
        "tile_size": sampler.tile_size,
        "neighborhood": sampler.neighborhood,
        "bands": [int(b) for b in scenes[0].bands],
        "band_count": scenes[0].count,
        "dtype": np.dtype(sampler.dtype).name,
        "band_stats": stats.to_dict(),
        "scenes": [_scene_meta(s) for s in scenes],
        "seed": seed,
        "max_nodata": sampler.max_nodata,
        "distant_other_scene_prob": sampler.distant_other_scene_prob,
        "aoi": aoi_meta,
        "footprints_crs": crs_string(scenes[0].crs),
        "roles": list(ROLES),
    }
