"""geoembed mosaic: the VRT / COG pixel at a known coordinate equals the source output's,
manifest-listed sources, reprojection of a source in another CRS."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli
from rasterio.transform import from_origin

from geoembed.io.manifest import ManifestWriter
from geoembed.io.mosaic import mosaic_sources, vrt_xml
from tests.conftest import write_raster

X0, Y0 = 500_000.0, 4_200_000.0


def embedding(path, x0, y0, seed, *, crs="EPSG:32610", size=(6, 5)):
    """A 3-band float32 raster of 160 m pixels with NaN nodata in its first pixel."""
    data = np.random.default_rng(seed).normal(size=(3, *size)).astype("float32")
    data[:, 0, 0] = np.nan
    return write_raster(path, data, crs=crs, nodata=float("nan"),
                        transform=from_origin(x0, y0, 160.0, 160.0))


def value_at(path, x, y):
    with rasterio.open(path) as ds:
        return np.array([v for v in next(ds.sample([(x, y)]))])


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "emb"
    out.mkdir()
    a = embedding(out / "a_embedding.tif", X0, Y0, 0)
    # b: on a's grid, one pixel column to the right of a and one pixel lower
    b = embedding(out / "b_embedding.tif", X0 + 6 * 160.0, Y0 - 160.0, 1)
    return out, a, b


@pytest.mark.parametrize("cog", [False, True])
def test_mosaic_pixel_equals_the_source_pixel(folder, tmp_path, cog):
    out, a, b = folder
    mosaic = tmp_path / ("m.tif" if cog else "m.vrt")
    res = CliRunner().invoke(cli, ["mosaic", str(out), "--out", str(mosaic),
                                   *(["--cog"] if cog else [])])
    assert res.exit_code == 0, res.output
    assert "mosaic of 2 outputs" in res.output
    for src, x, y in ((a, X0 + 2.5 * 160, Y0 - 3.5 * 160), (b, X0 + 7 * 160 + 10, Y0 - 300),
                      (b, X0 + 10 * 160 + 20, Y0 - 6 * 160 + 10)):
        np.testing.assert_array_equal(value_at(mosaic, x, y), value_at(src, x, y))
    # a's nodata pixel stays nodata; outside both sources is nodata
    assert np.isnan(value_at(mosaic, X0 + 10, Y0 - 10)).all()
    assert np.isnan(value_at(mosaic, X0 + 10, Y0 - 6 * 160 - 10)).all()
    with rasterio.open(mosaic) as ds:
        assert ds.crs == "EPSG:32610" and ds.count == 3 and ds.res == (160.0, 160.0)
        assert ds.bounds.left == X0 and ds.bounds.top == Y0
        assert ds.bounds.right == X0 + 11 * 160


def test_vrt_xml_places_sources_by_their_offsets(folder):
    out, a, _ = folder
    # half a pixel off a's grid: placed at a fractional offset (GDAL resamples it)
    b = embedding(out / "b_embedding.tif", X0 + 5 * 160.0 + 80.0, Y0 - 160.0, 1)
    xml = vrt_xml([a, b], relative_to=out)
    assert '<VRTDataset rasterXSize="11" rasterYSize="7">' in xml
    assert '<DstRect xOff="5.5" yOff="1.0" xSize="5.0" ySize="6.0"/>' in xml
    assert '<SourceFilename relativeToVRT="1">b_embedding.tif</SourceFilename>' in xml
    assert xml.count("<NODATA>nan</NODATA>") == 6


def test_manifest_lists_the_sources_and_other_crs_is_reprojected(folder, tmp_path):
    out, a, b = folder
    c = embedding(out / "c_embedding.tif", 166_000.0, Y0 - 1000.0, 2, crs="EPSG:32611")
    writer = ManifestWriter.for_shard(out, "sha", 0, 2)
    writer.add("a.tif", a, "written", 1.0)
    writer.add("c.tif", c, "skipped", 0.0)
    ManifestWriter.for_shard(out, "sha", 1, 2).add("b.tif", b, "failed", 1.0)
    assert mosaic_sources(out) == [a, c]  # b failed: not in the mosaic
    mosaic = tmp_path / "m.vrt"
    res = CliRunner().invoke(cli, ["mosaic", str(out), "--out", str(mosaic)])
    assert res.exit_code == 0, res.output
    moved = tmp_path / "m_reprojected" / "c_embedding.tif"
    with rasterio.open(moved) as ds:
        assert ds.crs == "EPSG:32610"
        centre = ((ds.bounds.left + ds.bounds.right) / 2, (ds.bounds.bottom + ds.bounds.top) / 2)
    np.testing.assert_array_equal(value_at(mosaic, *centre), value_at(moved, *centre))
    assert not np.isnan(value_at(mosaic, *centre)).any()


def test_bad_mosaic_inputs_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in (([str(tmp_path / "empty")], "no outputs to mosaic"),
                          ([str(tmp_path / "nope")], "not a folder")):
        res = CliRunner().invoke(cli, ["mosaic", *args, "--out", str(tmp_path / "m.vrt")])
        assert res.exit_code == 2, res.output
        assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("cog", [False, True])
def test_class_map_mosaic_keeps_colours_names_and_qml(tmp_path, cog):
    from geoembed.io.classmap import PALETTE, write_class_map

    out = tmp_path / "maps"
    for stem, x0, code in (("a", X0, 0), ("b", X0 + 4 * 10.0, 1)):
        write_class_map(out / f"{stem}_map.tif", np.full((4, 4), code), ["crop", "forest"],
                        crs="EPSG:32610", transform=from_origin(x0, Y0, 10.0, 10.0),
                        tags={"source": f"{stem}.tif", "stride": "1"})
    mosaic = tmp_path / ("m.tif" if cog else "m.vrt")
    res = CliRunner().invoke(cli, ["mosaic", str(out), "--out", str(mosaic),
                                   *(["--cog"] if cog else [])])
    assert res.exit_code == 0, res.output
    with rasterio.open(mosaic) as ds:
        np.testing.assert_array_equal(ds.read(1)[0], [0, 0, 0, 0, 1, 1, 1, 1])
        assert ds.colorinterp[0] == rasterio.enums.ColorInterp.palette
        assert ds.colormap(1)[1][:3] == tuple(int(PALETTE[1][i:i + 2], 16) for i in (1, 3, 5))
        assert ds.colormap(1)[255][3] == 0 and ds.nodata == 255
        tags = ds.tags()
    assert tags["CLASS_1"] == "forest" and tags["stride"] == "1"
    assert "source" not in tags  # a.tif's name is not the mosaic's source
    qml = (tmp_path / "m.qml").read_text()
    assert 'label="crop"' in qml and 'label="forest"' in qml


def test_class_maps_with_other_classes_are_refused(tmp_path):
    from geoembed.io.classmap import write_class_map

    out = tmp_path / "maps"
    write_class_map(out / "a_map.tif", np.zeros((4, 4), int), ["crop", "forest"],
                    crs="EPSG:32610", transform=from_origin(X0, Y0, 10.0, 10.0))
    write_class_map(out / "b_map.tif", np.zeros((4, 4), int), ["forest", "water"],
                    crs="EPSG:32610", transform=from_origin(X0 + 40, Y0, 10.0, 10.0))
    for cog in ([], ["--cog"]):
        res = CliRunner().invoke(cli, ["mosaic", str(out), "--out", str(tmp_path / "m.tif"),
                                       *cog])
        assert res.exit_code == 2, res.output
        assert "differ from a_map.tif's ['crop', 'forest']" in res.stderr
        assert not (tmp_path / "m.tif").exists() and not (tmp_path / "m.qml").exists()


def test_mosaic_keeps_the_tags_its_sources_share(folder, tmp_path):
    out, a, b = folder
    for path, source in ((a, "a.tif"), (b, "b.tif")):
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(tile_size="32", source=source)
    (tmp_path / "m.vrt").write_text(vrt_xml([a, b], relative_to=tmp_path))
    with rasterio.open(tmp_path / "m.vrt") as ds:
        assert ds.tags()["tile_size"] == "32" and "source" not in ds.tags()
