"""Land-cover class maps as Cloud Optimized GeoTIFFs that open with names and colours in QGIS.

:class:`ClassMapWriter` writes class codes block by block (uint8, or uint16 above 254
classes; nodata 255 / 65535) with a colour table, the class names in the dataset tags
(``CLASS_<code>=name`` and ``CLASS_NAMES`` as JSON) and the band description, atomically as
a COG, then a QGIS style sidecar ``<stem>.qml`` (paletted renderer, names as labels).
:func:`probability_writer` opens a float32 writer with one band per class (and optionally a
confidence band). :func:`read_class_names` reads the names back.
"""

from __future__ import annotations

import colorsys
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from geoembed.errors import InputError
from geoembed.io.geotiff import RasterWriter
from geoembed.io.outputs import atomic_output, check_output
from geoembed.io.scenes import open_dataset

#: a fixed qualitative palette (Tableau 20, strong colours first); more classes get
#: evenly spread hues
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]
NAMES_TAG = "CLASS_NAMES"
Color = tuple[int, int, int]


def _parse_color(c: str | Sequence[int]) -> Color:
    if isinstance(c, str):
        h = c.lstrip("#")
        if len(h) != 6:
            raise InputError(f"colour {c!r}: expected '#rrggbb' or (r, g, b)")
        try:
            return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
        except ValueError:
            raise InputError(f"colour {c!r}: expected '#rrggbb' or (r, g, b)") from None
    rgb = tuple(int(v) for v in c)
    if len(rgb) not in (3, 4) or not all(0 <= v <= 255 for v in rgb):
        raise InputError(f"colour {tuple(c)!r}: expected 3 values in 0..255")
    return rgb[0], rgb[1], rgb[2]


def class_colors(n: int, colors: Sequence[str | Sequence[int]] | None = None) -> list[Color]:
    """``n`` RGB colours: ``colors`` (``'#rrggbb'`` or ``(r, g, b)``) or the fixed palette."""
    if colors is not None:
        if len(colors) != n:
            raise InputError(f"{len(colors)} colours for {n} classes")
        return [_parse_color(c) for c in colors]
    out = [_parse_color(c) for c in PALETTE[:n]]
    for i in range(len(out), n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.9)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return out


def class_dtype(n_classes: int) -> tuple[str, int]:
    """The data type and nodata value of a map with ``n_classes`` codes (0..n-1)."""
    if n_classes < 1:
        raise InputError("a class map needs at least one class")
    if n_classes <= 254:
        return "uint8", 255
    if n_classes <= 65534:
        return "uint16", 65535
    raise InputError(f"{n_classes} classes: at most 65534 fit a class map")


def qml_text(class_names: Sequence[str], colors: Sequence[Color]) -> str:
    """A QGIS layer style: a paletted renderer of band 1, each code labelled with its name."""
    root = ET.Element("qgis", version="3.28.0", styleCategories="AllStyleCategories")
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(pipe, "rasterrenderer", type="paletted", band="1", opacity="1",
                             alphaBand="-1", nodataColor="")
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for code, (name, (r, g, b)) in enumerate(zip(class_names, colors, strict=True)):
        ET.SubElement(palette, "paletteEntry", value=str(code), color=f"#{r:02x}{g:02x}{b:02x}",
                      alpha="255", label=str(name))
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0",
                  colorizeOn="0", colorizeStrength="100")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return ("<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
            + ET.tostring(root, encoding="unicode") + "\n")


def qml_path(path: str | os.PathLike) -> Path:
    """The style sidecar QGIS loads with a raster: ``<stem>.qml`` next to it."""
    return Path(path).with_suffix(".qml")


class ClassMapWriter:
    """Write a class map block by block: codes ``0..K-1``, anything else becomes nodata.

    The tif is written atomically (a COG by default), then the ``.qml`` sidecar; with
    ``overwrite=False`` an existing tif or sidecar is refused before anything is written.

    Example:
        >>> with ClassMapWriter("map.tif", ["water", "forest"], width=w, height=h,
        ...                     crs=crs, transform=transform) as out:
        ...     out.write(codes, Window(0, 0, w, 256))   # codes: (h, w) ints, -1 = nodata
    """

    def __init__(self, path: str | os.PathLike, class_names: Sequence[str], *, width: int,
                 height: int, crs: Any, transform: Any,
                 colors: Sequence[str | Sequence[int]] | None = None,
                 tags: dict[str, Any] | None = None, overwrite: bool = False, cog: bool = True,
                 qml: bool = True, blocksize: int = 256) -> None:
        names = [str(n) for n in class_names]
        if len(set(names)) != len(names):
            raise InputError(f"class names must be unique: {names}")
        self.class_names = names
        self.dtype, self.nodata = class_dtype(len(names))
        self.colors = class_colors(len(names), colors)
        self.path = Path(path)
        self.qml = qml_path(path) if qml else None
        if self.qml is not None:
            check_output(self.qml, overwrite)
        all_tags = {f"CLASS_{i}": n for i, n in enumerate(names)}
        all_tags[NAMES_TAG] = json.dumps(names)
        all_tags.update(tags or {})
        cmap = {i: (*c, 255) for i, c in enumerate(self.colors)}
        cmap[self.nodata] = (0, 0, 0, 0)
        self._writer = RasterWriter(
            path, width=width, height=height, count=1, dtype=self.dtype, crs=crs,
            transform=transform, nodata=self.nodata, descriptions=["class"], tags=all_tags,
            overwrite=overwrite, cog=cog, blocksize=blocksize, colormap=cmap,
            overview_resampling="nearest")

    def __enter__(self) -> ClassMapWriter:
        self._writer.__enter__()
        return self

    def write(self, codes: np.ndarray, window: Window) -> None:
        """Write ``(h, w)`` class codes at ``window`` (the order of RasterWriter.write);
        codes outside ``0..K-1`` (e.g. -1) are written as nodata."""
        codes = np.asarray(codes)
        out = np.where((codes >= 0) & (codes < len(self.class_names)), codes, self.nodata)
        self._writer.write(out.astype(self.dtype), window)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._writer.__exit__(exc_type, exc, tb)
        if exc_type is None and self.qml is not None:
            with atomic_output(self.qml, overwrite=True) as tmp:
                tmp.write_text(qml_text(self.class_names, self.colors), encoding="utf-8")


def write_class_map(path: str | os.PathLike, codes: np.ndarray, class_names: Sequence[str], *,
                    crs: Any, transform: Any, **kwargs: Any) -> Path:
    """Write a whole ``(H, W)`` array of class codes with :class:`ClassMapWriter`."""
    height, width = codes.shape
    with ClassMapWriter(path, class_names, width=width, height=height, crs=crs,
                        transform=transform, **kwargs) as out:
        out.write(codes, Window(0, 0, width, height))
    return Path(path)


def probability_writer(path: str | os.PathLike, class_names: Sequence[str], *, width: int,
                       height: int, crs: Any, transform: Any, confidence: bool = False,
                       overwrite: bool = False, cog: bool = True,
                       tags: dict[str, Any] | None = None) -> RasterWriter:
    """A float32 :class:`RasterWriter` (nodata NaN) with one band per class named after it,
    plus a last ``confidence`` band (the maximum probability) when ``confidence``."""
    names = [str(n) for n in class_names]
    bands = names + (["confidence"] if confidence else [])
    all_tags = {NAMES_TAG: json.dumps(names), **(tags or {})}
    return RasterWriter(path, width=width, height=height, count=len(bands), dtype="float32",
                        crs=crs, transform=transform, nodata=float("nan"), descriptions=bands,
                        tags=all_tags, overwrite=overwrite, cog=cog)


def read_class_names(path: str | os.PathLike) -> list[str] | None:
    """The class names stored in a map's tags (``CLASS_NAMES`` JSON, else ``CLASS_<code>``
    tags with codes 0..K-1); None when the raster has none."""
    with open_dataset(path) as ds:
        tags = ds.tags()
    if NAMES_TAG in tags:
        try:
            names = json.loads(tags[NAMES_TAG])
        except ValueError:
            names = None
        if isinstance(names, list):
            return [str(n) for n in names]
    by_code = {}
    for key, value in tags.items():
        if key.startswith("CLASS_") and key[6:].isdigit():
            by_code[int(key[6:])] = value
    if by_code and sorted(by_code) == list(range(len(by_code))):
        return [by_code[i] for i in range(len(by_code))]
    return None


__all__ = ["PALETTE", "ClassMapWriter", "class_colors", "class_dtype", "probability_writer",
           "qml_path", "qml_text", "read_class_names", "write_class_map"]
