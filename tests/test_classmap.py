"""Class maps as COGs with a colour table, class names and a QGIS style sidecar."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from geoembed.errors import InputError, OutputExistsError
from geoembed.io.classmap import (
    PALETTE,
    ClassMapWriter,
    class_colors,
    class_dtype,
    probability_writer,
    qml_path,
    read_class_names,
    write_class_map,
)
from geoembed.io.geotiff import COLORMAP_MAX_KEY

CRS = "EPSG:32610"
TRANSFORM = from_origin(500_000.0, 4_200_000.0, 10.0, 10.0)
NAMES = ["water", "forest", "crop & grass <tall>"]


def _codes(h=300, w=280):
    codes = (np.arange(h)[:, None] // 40 + np.arange(w)[None, :] // 50) % 3
    codes[:7, :9] = -1
    return codes


def test_class_map_is_a_cog_with_colours_names_and_nodata(tmp_path):
    codes = _codes()
    path = tmp_path / "map.tif"
    with ClassMapWriter(path, NAMES, width=280, height=300, crs=CRS, transform=TRANSFORM,
                        colors=["#0000ff", (0, 128, 0), "#ffff00"]) as out:
        for r in range(0, 300, 64):   # streamed in strips
            out.write(codes[r:r + 64], Window(0, r, 280, min(64, 300 - r)))
    with rasterio.open(path) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
        data = ds.read(1)
        np.testing.assert_array_equal(data, np.where(codes < 0, 255, codes))
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.profile["tiled"] and ds.overviews(1) == [2]
        cmap = ds.colormap(1)
        assert cmap[0] == (0, 0, 255, 255) and cmap[1] == (0, 128, 0, 255)
        assert cmap[2] == (255, 255, 0, 255) and cmap[255][3] == 0
        tags = ds.tags()
        assert tags["CLASS_2"] == NAMES[2] and json.loads(tags["CLASS_NAMES"]) == NAMES
        assert ds.descriptions == ("class",)
        assert ds.crs.to_epsg() == 32610 and ds.transform == TRANSFORM
    assert read_class_names(path) == NAMES

    root = ET.parse(qml_path(path)).getroot()
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [(e.get("value"), e.get("label"), e.get("color"))
               for e in renderer.iter("paletteEntry")]
    assert entries == [("0", "water", "#0000ff"), ("1", "forest", "#008000"),
                       ("2", "crop & grass <tall>", "#ffff00")]
    assert qml_path(path) == tmp_path / "map.qml"


def test_default_palette_uint16_and_names_from_class_tags(tmp_path):
    assert class_colors(2)[1] == (0xff, 0x7f, 0x0e) and len(PALETTE) == 20
    many = class_colors(300)
    assert len(set(many[:20])) == 20 and all(0 <= v <= 255 for c in many for v in c)
    assert class_dtype(254) == ("uint8", 255) and class_dtype(255) == ("uint16", 65535)
    names = [f"c{i}" for i in range(300)]
    codes = np.arange(300 * 20).reshape(20, 300) % 300
    path = write_class_map(tmp_path / "big.tif", codes, names, crs=CRS, transform=TRANSFORM,
                           cog=False)
    with rasterio.open(path) as ds:
        assert ds.dtypes[0] == "uint16" and ds.nodata == 65535
        np.testing.assert_array_equal(ds.read(1), codes)
        # uint16 colour tables need a newer rasterio than 1.3 (keys 0-255 there; the .qml
        # carries every colour either way)
        top = 299 if COLORMAP_MAX_KEY >= 299 else 255
        assert ds.colormap(1)[top][:3] == many[top]
        # CLASS_<code> tags alone are enough to read the names back
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(CLASS_NAMES="not json")
    assert read_class_names(path) == names
    assert len(list(ET.parse(qml_path(path)).getroot().iter("paletteEntry"))) == 300


def test_outputs_are_atomic_and_never_overwritten_silently(tmp_path):
    path = tmp_path / "map.tif"
    with pytest.raises(RuntimeError):
        with ClassMapWriter(path, NAMES, width=32, height=32, crs=CRS,
                            transform=TRANSFORM) as out:
            out.write(np.zeros((16, 32)), Window(0, 0, 32, 16))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    write_class_map(path, np.zeros((32, 32), int), NAMES, crs=CRS, transform=TRANSFORM)
    with pytest.raises(OutputExistsError):
        write_class_map(path, np.zeros((32, 32), int), NAMES, crs=CRS, transform=TRANSFORM)
    path.unlink()   # the sidecar alone is also protected
    with pytest.raises(OutputExistsError, match="map.qml"):
        write_class_map(path, np.zeros((32, 32), int), NAMES, crs=CRS, transform=TRANSFORM)
    write_class_map(path, np.ones((32, 32), int), NAMES, crs=CRS, transform=TRANSFORM,
                    overwrite=True)
    with rasterio.open(path) as ds:
        assert (ds.read(1) == 1).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.qml", "map.tif"]
    with pytest.raises(InputError, match="unique"):
        ClassMapWriter(tmp_path / "x.tif", ["a", "a"], width=4, height=4, crs=CRS,
                       transform=TRANSFORM)
    with pytest.raises(InputError, match="2 colours for 3 classes"):
        class_colors(3, ["#000000", "#ffffff"])


def test_probability_raster_bands_are_named_after_the_classes(tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(40, 40)).transpose(2, 0, 1)
    stack = np.concatenate([probs, probs.max(axis=0, keepdims=True)]).astype("float32")
    with probability_writer(tmp_path / "p.tif", NAMES, width=40, height=40, crs=CRS,
                            transform=TRANSFORM, confidence=True) as out:
        out.write(stack, Window(0, 0, 40, 40))
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert ds.count == 4 and ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert ds.descriptions == (*NAMES, "confidence")
        np.testing.assert_allclose(ds.read()[:3].sum(axis=0), 1, rtol=1e-6)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert read_class_names(tmp_path / "p.tif") == NAMES
