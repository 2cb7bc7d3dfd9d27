"""STAC Items as scenes: the chosen band assets of an item stacked into one VRT.

A STAC Item (a ``.json`` / ``.geojson`` file or URL, or a STAC API ``.../items/ID`` URL), or
an ItemCollection / saved search results (a JSON FeatureCollection of items), stands where
a scene can. Each item becomes one scene, a VRT named ``<item id>.vrt`` (so outputs carry
the item's id: ``<item id>_embedding.tif``) that stacks the chosen assets, in the order
given, onto the grid of the finest asset.

It happens in two steps, so that a shard of a job array only touches its own items:

1. :func:`stac_expander` / :func:`expand_stac`: the JSON is parsed with ``pystac`` and each
   item becomes a VRT path in the cache (``$GEOEMBED_CACHE`` or ``~/.cache/geoembed``,
   ``stac/stac-<key>/<item id>.vrt``) next to a small spec (``<item id>.item.json``: the
   resolved asset hrefs and the resampling). No raster is opened yet.
2. :func:`ensure_vrt`, called by :func:`geoembed.io.scenes.open_dataset`: the first open of
   such a path opens the item's assets (through :func:`geoembed.io.paths.gdal_path` and
   the cloud settings of :func:`geoembed.io.gdal_env.read_env`) and writes the VRT.

Assets in the finest asset's CRS are placed by their geotransform (nearest by default; a
coarser band is resampled by GDAL's VRT source ``resampling``). An asset in another CRS (or
rotated) is warped onto the finest grid by a ``WarpedVRT`` saved next to it, only when a
resampling is named (``--resampling``): otherwise it is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio._err import CPLE_BaseError  # GDAL's errors (CPLE_*); rasterio has no public name
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError

from geoembed.errors import CRSError, InputError, RasterError, first_line
from geoembed.io.gdal_env import read_env
from geoembed.io.paths import (
    STAC_VRT_PREFIX,
    credentials_hint,
    gdal_path,
    is_remote,
    is_stac_vrt,
    url_scheme,
)

RESAMPLING = ("nearest", "bilinear", "cubic", "average")
"""``--resampling`` choices: how a coarser (or reprojected) asset meets the finest grid."""

STAC_SUFFIXES = (".json", ".geojson")
RASTER_TYPES = ("image/tiff", "image/jp2", "geotiff", "application/x-geotiff")
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
SPEC_SUFFIX = ".item.json"

_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
               "uint32": "UInt32", "int32": "Int32", "uint64": "UInt64", "int64": "Int64",
               "float32": "Float32", "float64": "Float64"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# -- recognising and reading STAC JSON ------------------------------------------------------

def _split_ref(text: str) -> tuple[str, str | None]:
    """``"results.json#ITEM"`` -> ``("results.json", "ITEM")``; other text -> ``(text, None)``."""
    source, sep, item = text.partition("#")
    if sep and source.lower().endswith(STAC_SUFFIXES):
        return source, item
    return text, None


def is_stac(text: str) -> bool:
    """True for an input that names STAC JSON: a ``.json`` / ``.geojson`` file or URL (with
    an optional ``#ITEM_ID``), or a STAC API item URL (``.../items/ID``)."""
    source, _ = _split_ref(os.fspath(text))
    path = urllib.parse.urlparse(source).path if url_scheme(source) else source
    if path.lower().endswith(STAC_SUFFIXES):
        return True
    return url_scheme(source) in ("http", "https") and "/items/" in path


def _read_json(source: str) -> Any:
    """The JSON document at a local path or an http(s) URL."""
    scheme = url_scheme(source)
    try:
        if scheme in ("http", "https"):
            with urllib.request.urlopen(source, timeout=60) as response:  # noqa: S310
                text = response.read().decode("utf-8")
        elif scheme is None and not source.startswith("/vsi"):
            text = Path(source).read_text(encoding="utf-8")
        else:
            raise InputError(f"{source}: STAC JSON is read from a local file or an http(s) URL "
                             "(its assets may be anywhere GDAL reads)")
    except (OSError, urllib.error.URLError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise InputError(f"{source}: cannot read the STAC JSON ({reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not JSON ({exc.msg} at line {exc.lineno}); a STAC input "
                         "is an Item or an ItemCollection") from None


def _is_item(d: Any) -> bool:
    return isinstance(d, dict) and d.get("type") == "Feature" and "stac_version" in d


def read_items(source: str) -> list[Any]:
    """The ``pystac.Item`` objects of a STAC Item or ItemCollection (file or URL).

    Raises:
        InputError: unreadable, not STAC, an ItemCollection without items, repeated ids.
    """
    import pystac  # here: only STAC inputs need it

    d = _read_json(source)
    kind = d.get("type") if isinstance(d, dict) else None
    if _is_item(d):
        dicts = [d]
    elif kind == "FeatureCollection" and isinstance(d.get("features"), list):
        dicts = d["features"]
        if not dicts:
            raise InputError(f"{source}: the ItemCollection has no items")
        bad = next((i for i, f in enumerate(dicts) if not _is_item(f)), None)
        if bad is not None:
            raise InputError(f"{source}: feature {bad} is not a STAC Item (no stac_version or "
                             "not a Feature); a STAC input is an Item or an ItemCollection")
    else:
        raise InputError(f"{source}: not a STAC Item or ItemCollection (a JSON Feature or "
                         "FeatureCollection with stac_version)")
    try:
        items = [pystac.Item.from_dict(f) for f in dicts]
    except (pystac.STACError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{source}: not a valid STAC Item ({type(exc).__name__}: "
                         f"{first_line(exc)})") from None
    ids = [item.id for item in items]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"{source}: several items have the id(s) {dupes}")
    return items


def _absolute(href: str, base: str) -> str:
    """``href`` resolved against the file or URL ``base`` (absolute hrefs unchanged)."""
    if url_scheme(href) or href.startswith("/vsi") or os.path.isabs(href):
        return href
    if url_scheme(base):
        return urllib.parse.urljoin(base, href)
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(base)), href))


def _is_raster_asset(asset: Any) -> bool:
    media = (asset.media_type or "").lower()
    if media:
        return any(t in media for t in RASTER_TYPES)
    return urllib.parse.urlparse(asset.href).path.lower().endswith(RASTER_SUFFIXES)


def item_assets(item: Any, assets: Sequence[str] | None, base: str) -> list[tuple[str, str]]:
    """``(asset key, absolute href)`` of the chosen assets, in the order given.

    Without ``assets``, an item with exactly one raster asset (GeoTIFF / JPEG 2000) uses it.
    Relative hrefs resolve against the item's own ``self`` link, else against ``base`` (the
    file or URL the item was read from).

    Raises:
        InputError: an asset the item does not have (the message lists those it has), or no
            ``assets`` for an item with several raster assets.
    """
    have = list(item.assets)
    if not assets:
        rasters = [k for k, a in item.assets.items() if _is_raster_asset(a)]
        if len(rasters) != 1:
            raise InputError(f"STAC item {item.id}: pass --assets to pick its band assets, e.g. "
                             f"--assets {','.join(rasters[:4]) or 'KEY'}; it has "
                             f"{', '.join(have) or 'no assets'}")
        assets = rasters
    missing = [k for k in assets if k not in item.assets]
    if missing:
        raise InputError(f"STAC item {item.id} has no asset(s) {', '.join(missing)}; it has "
                         f"{', '.join(have) or 'no assets'}")
    if len(set(assets)) != len(assets):
        raise InputError(f"--assets {','.join(assets)}: an asset is named twice")
    self_href = item.get_self_href()
    root = self_href if self_href and (url_scheme(self_href) or os.path.isabs(self_href)) \
        else base
    return [(k, _absolute(item.assets[k].href, root)) for k in assets]


# -- the cache of item VRTs -----------------------------------------------------------------

def cache_dir() -> Path:
    """Where item VRTs go: ``$GEOEMBED_CACHE``, else ``$XDG_CACHE_HOME/geoembed``, else
    ``~/.cache/geoembed``."""
    if os.environ.get("GEOEMBED_CACHE"):
        return Path(os.environ["GEOEMBED_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "geoembed"


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` atomically unless ``path`` holds it already; True when written.

    Shards of a job array may write the same file at once: the content is the same, and
    the rename is atomic.
    """
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def _check_resampling(resampling: str | None) -> None:
    if resampling is not None and resampling not in RESAMPLING:
        raise InputError(f"--resampling {resampling}: choose from {', '.join(RESAMPLING)}")


def expand_stac(text: str, assets: Sequence[str] | None = None,
                resampling: str | None = None, cache: str | os.PathLike | None = None
                ) -> list[str] | None:
    """The scene paths (item VRTs, not yet built) a STAC input stands for; None otherwise.

    ``text`` is a STAC Item or ItemCollection file / URL, or ``SOURCE#ITEM_ID`` (one item of
    a collection). Each item's spec is written to the cache now (its assets checked); the
    VRT itself is built when the scene is first opened (:func:`ensure_vrt`).

    Raises:
        InputError: not STAC, no items, an item without the named assets, an unknown id.
    """
    text = os.fspath(text)
    if not is_stac(text):
        return None
    _check_resampling(resampling)
    source, wanted = _split_ref(text)
    items = read_items(source)
    if wanted is not None:
        items = [item for item in items if item.id == wanted]
        if not items:
            raise InputError(f"{text}: {source} has no item with the id {wanted}")
    chosen = list(assets) if assets else None
    key = hashlib.sha256(json.dumps([source if is_remote(source) else os.path.abspath(source),
                                     chosen, resampling]).encode()).hexdigest()[:16]
    folder = Path(cache) if cache is not None else cache_dir()
    folder = folder / "stac" / f"{STAC_VRT_PREFIX}{key}"
    paths = []
    for item in items:
        spec = {"id": item.id, "source": source, "resampling": resampling,
                "assets": [{"key": k, "href": h} for k, h in item_assets(item, chosen, source)]}
        vrt = folder / f"{_UNSAFE.sub('_', item.id)}.vrt"
        if _write_if_changed(_spec_path(vrt), json.dumps(spec, indent=1)):
            vrt.unlink(missing_ok=True)  # built from an older spec
        paths.append(str(vrt))
    return paths


def stac_expander(assets: Sequence[str] | None = None, resampling: str | None = None,
                  cache: str | os.PathLike | None = None) -> Callable[[str], list[str] | None]:
    """:func:`expand_stac` with these options, as an input expander
    (:func:`geoembed.io.inputs.expand_inputs`)."""
    _check_resampling(resampling)
    return lambda text: expand_stac(text, assets, resampling, cache)


def scene_inputs(items: Sequence[str | os.PathLike], assets: Sequence[str] | None = None,
                 resampling: str | None = None, cache: str | os.PathLike | None = None
                 ) -> list[str]:
    """``items`` with every STAC input replaced by its item scenes, order kept (for the
    commands whose scene order matters: ``tile``, ``train``)."""
    out: list[str] = []
    for item in items:
        more = expand_stac(os.fspath(item), assets, resampling, cache)
        out.extend(more if more is not None else [os.fspath(item)])
    if assets and len(out) == len(items) and not any(is_stac_vrt(p) for p in out):
        raise InputError(f"--assets {','.join(assets)} applies to STAC items, and no input is "
                         "one")
    return out


def _spec_path(vrt: Path) -> Path:
    return vrt.with_name(vrt.name[:-len(".vrt")] + SPEC_SUFFIX)


# -- building the VRT -----------------------------------------------------------------------

@dataclass(frozen=True)
class AssetGrid:
    """What the VRT needs of one asset: where it is, its grid, bands and data type."""

    key: str
    href: str
    crs: Any
    transform: Any
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None

    @property
    def pixel_area(self) -> float:
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)

    @property
    def axis_aligned(self) -> bool:
        return self.transform.b == 0 and self.transform.d == 0


def open_asset(key: str, href: str) -> AssetGrid:
    """Open one asset (a URL or a path) and read its grid.

    Raises:
        InputError: a local asset that does not exist.
        RasterError: GDAL cannot open it.
    """
    if not is_remote(href) and not os.path.exists(href):
        raise InputError(f"asset {key}: {href}: no such file")
    try:
        with read_env(href), rasterio.open(gdal_path(href)) as ds:
            return AssetGrid(key, href, ds.crs, ds.transform, ds.width, ds.height, ds.count,
                             ds.dtypes[0], ds.nodata)
    except (RasterioIOError, CPLE_BaseError) as exc:
        raise RasterError(f"asset {key}: {href}: cannot open it as a raster "
                          f"({first_line(exc)}){credentials_hint(href)}") from None


def _number(value: float) -> str:
    """A coordinate for the VRT: an integer when it is one, else full precision."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _dst_rect(asset: AssetGrid, grid: AssetGrid) -> tuple[float, float, float, float]:
    """(x offset, y offset, width, height) of an axis-aligned asset in the grid's pixels."""
    g, a = grid.transform, asset.transform
    return ((a.c - g.c) / g.a, (a.f - g.f) / g.e,
            asset.width * a.a / g.a, asset.height * a.e / g.e)


def vrt_xml(assets: Sequence[AssetGrid], grid: AssetGrid, resampling: str = "nearest",
            sources: Sequence[str] | None = None, descriptions: Sequence[str] | None = None
            ) -> str:
    """A VRT stacking every band of ``assets``, in order, onto ``grid``.

    Hand-written VRT XML, the one place geoembed writes any: rasterio has no BuildVRT and
    GDAL's Python bindings (``gdal.BuildVRT``) are not a dependency. Each band is one
    ``SimpleSource`` whose ``SrcRect`` is the whole asset and whose ``DstRect`` is the
    asset's footprint in the grid's pixels (from the two geotransforms: a coarser asset
    gets a larger rectangle, which GDAL fills with ``resampling``). Every asset must be
    axis-aligned in the grid's CRS (warp it first otherwise).

    Args:
        assets: the assets, in band order; each contributes all its bands.
        grid: the target grid (the finest asset): CRS, transform, size.
        resampling: GDAL's resampling for sources whose resolution differs.
        sources: the GDAL path of each asset (default: ``gdal_path(asset.href)``).
        descriptions: per asset, the band description (default: the asset key; an asset
            with several bands gets ``KEY_1``, ``KEY_2``...).
    """
    sources = list(sources) if sources is not None else [gdal_path(a.href) for a in assets]
    names = list(descriptions) if descriptions is not None else [a.key for a in assets]
    dtype = np.result_type(*[np.dtype(a.dtype) for a in assets]).name
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    ET.SubElement(root, "SRS").text = grid.crs.to_wkt() if grid.crs else ""
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(float(v)) for v in grid.transform.to_gdal())
    band = 0
    for asset, source, name in zip(assets, sources, names, strict=True):
        x, y, w, h = _dst_rect(asset, grid)
        for b in range(1, asset.count + 1):
            band += 1
            el = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype],
                               band=str(band))
            ET.SubElement(el, "Description").text = name if asset.count == 1 else f"{name}_{b}"
            if asset.nodata is not None:
                ET.SubElement(el, "NoDataValue").text = _number(asset.nodata)
            src = ET.SubElement(el, "SimpleSource", resampling=resampling)
            ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = source
            ET.SubElement(src, "SourceBand").text = str(b)
            ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(asset.width),
                          ySize=str(asset.height))
            ET.SubElement(src, "DstRect", xOff=_number(x), yOff=_number(y), xSize=_number(w),
                          ySize=_number(h))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _warp(asset: AssetGrid, grid: AssetGrid, resampling: str, path: Path) -> str:
    """Save ``asset`` warped onto ``grid`` as a warped VRT at ``path``; its path."""
    from rasterio.vrt import WarpedVRT

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.vrt")
    try:
        with read_env(asset.href), rasterio.open(gdal_path(asset.href)) as src, \
                WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                          height=grid.height, resampling=Resampling[resampling]) as warped:
            rasterio.shutil.copy(warped, tmp, driver="VRT")
    except (RasterioIOError, CPLE_BaseError) as exc:
        tmp.unlink(missing_ok=True)
        raise RasterError(f"asset {asset.key}: {asset.href}: cannot warp it onto "
                          f"{grid.key}'s grid ({first_line(exc)})") from None
    os.replace(tmp, path)
    return str(path)


def build_vrt(vrt: str | os.PathLike) -> str:
    """Build an item's VRT from its spec (written by :func:`expand_stac`); its path.

    Raises:
        InputError: the spec is missing (expand the STAC input first).
        CRSError: assets in different CRSs (or rotated) and no resampling named.
        RasterError: an asset GDAL cannot open.
    """
    vrt = Path(vrt)
    try:
        spec = json.loads(_spec_path(vrt).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise InputError(f"{vrt}: no STAC item spec next to it; give the STAC item itself "
                         "as the input") from None
    resampling = spec.get("resampling")
    assets = [open_asset(a["key"], a["href"]) for a in spec["assets"]]
    grid = min(assets, key=lambda a: a.pixel_area)  # the finest; ties: the first given
    sources = []
    for i, asset in enumerate(assets):
        if asset.crs == grid.crs and asset.axis_aligned:
            sources.append(gdal_path(asset.href))
            continue
        if resampling is None:
            what = (f"is in {_crs_name(asset.crs)}, {grid.key} in {_crs_name(grid.crs)}"
                    if asset.crs != grid.crs else "has a rotated grid")
            raise CRSError(f"STAC item {spec['id']}: asset {asset.key} {what}; pass "
                           f"--resampling ({'|'.join(RESAMPLING)}) to warp it onto "
                           f"{grid.key}'s grid")
        warped = vrt.with_name(f"{vrt.stem}.{_UNSAFE.sub('_', asset.key)}.warped.vrt")
        sources.append(_warp(asset, grid, resampling, warped))
        assets[i] = AssetGrid(asset.key, asset.href, grid.crs, grid.transform, grid.width,
                              grid.height, asset.count, asset.dtype, asset.nodata)
    _write_if_changed(vrt, vrt_xml(assets, grid, resampling or "nearest", sources))
    return str(vrt)


def _crs_name(crs: Any) -> str:
    if crs is None:
        return "no CRS"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()[:60]


def ensure_vrt(path: str | os.PathLike) -> None:
    """Build the item VRT ``path`` if it is one (:func:`geoembed.io.paths.is_stac_vrt`) and
    is not built yet. Called on every open of a scene (a string check for other paths)."""
    if is_stac_vrt(path) and not os.path.exists(path):
        build_vrt(path)
