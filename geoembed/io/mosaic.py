"""One mosaic over many outputs (embeddings, class maps): a VRT, or a COG.

The sources are the outputs a folder's manifests list (:mod:`geoembed.io.manifest`), or its
``*.tif`` files. The mosaic is in one CRS (``crs``, else the first source's); a source in
another CRS is reprojected (nearest neighbour: int8 codes and class values must not be
blended) into a GeoTIFF next to the mosaic, ``<mosaic stem>_reprojected/``, through a
rasterio ``WarpedVRT``.

VRT: rasterio does not expose GDAL's ``BuildVRT`` and its ``WarpedVRT`` is one source, in
memory; GDAL's Python bindings (``osgeo``) are not a dependency, and an optional
``BuildVRT`` path would make the output depend on what else is installed. So
:func:`vrt_xml` writes the minimal VRT XML (tested): one ``ComplexSource`` per source and
band, on the first source's pixel size, paths relative to the VRT, nodata honoured so that
a source's nodata does not cover its neighbours.
Class maps (``geoembed map`` / ``segment``) keep what makes them open right in QGIS: the
colour table, the class-name tags and a ``<mosaic stem>.qml`` sidecar; class maps whose
codes name different classes (each scene's classifier has its own classes) are refused,
since one code would show two classes. Tags every source shares (``tile_size``, ``bands``...)
are kept; per-scene ones (``source``...) are not.
COG: :func:`rasterio.merge.merge` in memory, written by :class:`~geoembed.io.geotiff.RasterWriter`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
import rasterio.windows
from rasterio.crs import CRS
from rasterio.dtypes import dtype_rev, typename_fwd
from rasterio.enums import ColorInterp, Resampling
from rasterio.vrt import WarpedVRT

from geoembed.errors import CRSError, InputError, RasterError
from geoembed.io.classmap import qml_path, qml_text, read_class_names
from geoembed.io.manifest import read_manifests
from geoembed.io.outputs import atomic_output, check_output, replace_path, temporary_sibling


def mosaic_sources(folder: str | os.PathLike, exclude: Sequence[str | os.PathLike] = ()
                   ) -> list[Path]:
    """The outputs the folder's manifests list as written or skipped (and still there), or,
    without manifests, its ``*.tif`` files; sorted, ``exclude`` left out.

    Raises:
        InputError: not a folder, or nothing to mosaic.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; give the output folder of embed / segment")
    skip = {Path(p).resolve() for p in exclude}
    records = read_manifests(folder)
    if records:
        found = [folder / r["output"] for r in records if r.get("status") != "failed"]
        found = [p for p in found if p.exists()]
    else:
        found = sorted(p for p in folder.glob("*.tif") if not p.name.startswith("."))
    found = [p for p in found if p.resolve() not in skip]
    if not found:
        raise InputError(f"{folder}: no outputs to mosaic (no manifest entries, no *.tif)")
    return found


def _reprojected(sources: Sequence[Path], crs: CRS, folder: Path) -> list[Path]:
    """Each source, reprojected into ``folder`` when its CRS is not ``crs``."""
    result = []
    for path in sources:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise CRSError(f"{path}: no CRS; a mosaic needs georeferenced outputs")
            if src.crs == crs:
                result.append(path)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / path.name
            tmp = temporary_sibling(target)
            try:
                with WarpedVRT(src, crs=crs, resampling=Resampling.nearest,
                               dtype=src.dtypes[0]) as vrt:  # rasterio 1.3: float64
                    rasterio.shutil.copy(vrt, tmp, driver="GTiff", tiled=True,
                                         compress="deflate")
                replace_path(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            result.append(target)
    return result


@dataclass(frozen=True)
class Style:
    """What the mosaic keeps of its sources besides pixels: the tags they all share with one
    value, band 1's colour table (of the first source) and the class names (class maps)."""

    tags: dict[str, str]
    colormap: dict[int, tuple[int, ...]] | None
    class_names: list[str] | None


def source_style(sources: Sequence[str | os.PathLike]) -> Style:
    """The :class:`Style` of ``sources``.

    Raises:
        RasterError: class maps whose class names differ (a code would mean two classes).
    """
    tags: dict[str, str] | None = None
    colormap = None
    names = []
    for i, path in enumerate(sources):
        with rasterio.open(path) as ds:
            these = ds.tags()
            if i == 0 and ds.colorinterp and ds.colorinterp[0] == ColorInterp.palette:
                colormap = ds.colormap(1)
        tags = these if tags is None else {k: v for k, v in tags.items() if these.get(k) == v}
        names.append(read_class_names(path))
    if any(n is not None for n in names):
        for path, n in zip(sources, names, strict=True):
            if n != names[0]:
                raise RasterError(
                    f"{path}: its classes {n} differ from {Path(sources[0]).name}'s "
                    f"{names[0]}; a mosaic of class maps needs the same classes (each code "
                    "would mean two classes)")
    return Style(tags=dict(tags or {}), colormap=colormap, class_names=names[0])


def _fmt(value: float) -> str:
    return "nan" if np.isnan(value) else repr(float(value))


def vrt_xml(sources: Sequence[str | os.PathLike], relative_to: str | os.PathLike | None = None,
            style: Style | None = None) -> str:
    """The VRT XML of a mosaic of ``sources`` (same CRS, band count and dtype; north-up).

    The grid takes the first source's pixel size and the union of the bounds; sources are
    drawn in order (a later one wins where both have data). Paths are written relative to
    the folder ``relative_to`` (the VRT's) when given. ``style`` (default: the sources')
    adds the shared tags and band 1's colour table.

    Raises:
        RasterError: sources that differ in CRS, band count or dtype, or are rotated.
    """
    metas = []
    for path in sources:
        with rasterio.open(path) as ds:
            metas.append((Path(path), ds.crs, ds.count, ds.dtypes[0], ds.transform, ds.width,
                          ds.height, ds.nodata, ds.descriptions))
    _, crs, count, dtype, t0, *_ = metas[0]
    for path, c, n, dt, t, *_ in metas:
        if (c, n, dt) != (crs, count, dtype):
            raise RasterError(f"{path}: {n} {dt} bands in {c}, but the mosaic has {count} "
                              f"{dtype} bands in {crs}")
        if t.b or t.d or t.e >= 0:
            raise RasterError(f"{path}: not a north-up grid; cannot be mosaicked by a VRT")
    res_x, res_y = t0.a, -t0.e
    left = min(m[4].c for m in metas)
    top = max(m[4].f for m in metas)
    right = max(m[4].c + m[4].a * m[5] for m in metas)
    bottom = min(m[4].f + m[4].e * m[6] for m in metas)
    # whole pixels covering every source (a source off the grid adds a partial one)
    width = math.ceil((right - left) / res_x - 1e-6)
    height = math.ceil((top - bottom) / res_y - 1e-6)
    nodata = metas[0][7]
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(crs.to_wkt())}</SRS>',
             f"  <GeoTransform>{left!r}, {res_x!r}, 0.0, {top!r}, 0.0, {-res_y!r}</GeoTransform>"]
    style = style if style is not None else source_style([m[0] for m in metas])
    if style.tags:
        lines.append("  <Metadata>")
        lines += [f'    <MDI key="{escape(k, {chr(34): "&quot;"})}">{escape(v)}</MDI>'
                  for k, v in style.tags.items()]
        lines.append("  </Metadata>")
    gdal_type = typename_fwd[dtype_rev[dtype]]
    for band in range(1, count + 1):
        lines.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{band}">')
        if nodata is not None:
            lines.append(f"    <NoDataValue>{_fmt(nodata)}</NoDataValue>")
        if band == 1 and style.colormap:
            lines += ["    <ColorInterp>Palette</ColorInterp>", "    <ColorTable>"]
            lines += ['      <Entry c1="{}" c2="{}" c3="{}" c4="{}"/>'.format(
                *(tuple(style.colormap.get(i, (0, 0, 0, 0))) + (255,))[:4])
                for i in range(max(style.colormap) + 1)]
            lines.append("    </ColorTable>")
        desc = metas[0][8][band - 1]
        if desc:
            lines.append(f"    <Description>{escape(desc)}</Description>")
        for path, _, _, _, t, w, h, nd, _ in metas:
            name = os.path.relpath(path.resolve(), Path(relative_to).resolve()) \
                if relative_to is not None else str(path.resolve())
            rel = 1 if relative_to is not None else 0
            x_off, y_off = (t.c - left) / res_x, (top - t.f) / res_y
            x_size, y_size = w * t.a / res_x, h * -t.e / res_y
            lines += [
                "    <ComplexSource>",
                f'      <SourceFilename relativeToVRT="{rel}">{escape(name)}</SourceFilename>',
                f"      <SourceBand>{band}</SourceBand>",
                f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
                f'      <DstRect xOff="{x_off!r}" yOff="{y_off!r}" xSize="{x_size!r}" '
                f'ySize="{y_size!r}"/>',
            ]
            if nd is not None:
                lines.append(f"      <NODATA>{_fmt(nd)}</NODATA>")
            lines.append("    </ComplexSource>")
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def _crs_of(sources: Sequence[Path], crs: str | None) -> CRS:
    if crs is not None:
        try:
            return CRS.from_user_input(crs)
        except Exception:
            raise CRSError(f"--crs {crs!r}: not a CRS (give EPSG:32610 or WKT)") from None
    with rasterio.open(sources[0]) as ds:
        if ds.crs is None:
            raise CRSError(f"{sources[0]}: no CRS; a mosaic needs georeferenced outputs")
        return ds.crs


def build_mosaic(sources: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 cog: bool = False, crs: str | None = None, overwrite: bool = False) -> Path:
    """Mosaic ``sources`` into ``out``: a VRT (``.vrt``), or a COG when ``cog``.

    Raises:
        InputError, CRSError, RasterError, OutputExistsError: bad sources or output.
    """
    out = check_output(out, overwrite)
    paths = [Path(p) for p in sources]
    if not paths:
        raise InputError("no sources to mosaic")
    style = source_style(paths)  # class maps with other classes: before any work
    if style.class_names is not None and style.colormap:
        check_output(qml_path(out), overwrite)
    target = _crs_of(paths, crs)
    paths = _reprojected(paths, target, out.parent / f"{out.stem}_reprojected")
    if cog:
        _write_cog(paths, out, overwrite, style)
    else:
        with atomic_output(out, overwrite) as tmp:
            tmp.write_text(vrt_xml(paths, relative_to=out.parent, style=style))
    if style.class_names is not None and style.colormap:
        colors = [tuple(style.colormap.get(i, (0, 0, 0)))[:3]
                  for i in range(len(style.class_names))]
        with atomic_output(qml_path(out), overwrite=True) as tmp:
            tmp.write_text(qml_text(style.class_names, colors), encoding="utf-8")
    return out


def _write_cog(paths: Sequence[Path], out: Path, overwrite: bool, style: Style) -> Path:
    """A COG of the merged sources (:func:`rasterio.merge.merge`, in memory)."""
    from rasterio.merge import merge

    from geoembed.io.geotiff import RasterWriter

    datasets = [rasterio.open(p) for p in paths]
    try:
        first = datasets[0]
        array, transform = merge(datasets, resampling=Resampling.nearest)
        with RasterWriter(out, width=array.shape[2], height=array.shape[1], count=first.count,
                          dtype=first.dtypes[0], crs=first.crs, transform=transform,
                          nodata=first.nodata, descriptions=list(first.descriptions)
                          if all(first.descriptions) else None, tags=style.tags,
                          overwrite=overwrite, cog=True, colormap=style.colormap,
                          overview_resampling="nearest") as writer:
            writer.write(array, rasterio.windows.Window(0, 0, array.shape[2], array.shape[1]))
    finally:
        for ds in datasets:
            ds.close()
    return out
