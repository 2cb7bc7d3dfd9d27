"""STAC items as scenes (issue 15 part 4): per-band COG assets stacked onto the finest
asset's grid in a VRT named by the item id; items served over HTTP embed like the stacked
local file; ItemCollections give one scene per item; bad STAC input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_origin

from geoembed.errors import CRSError, InputError
from geoembed.io.inputs import expand_inputs
from geoembed.io.paths import is_stac_vrt
from geoembed.io.scenes import open_scene
from geoembed.io.stac import AssetGrid, expand_stac, is_stac, scene_inputs, vrt_xml
from tests import loopback
from tests.conftest import ORIGIN, UTM_CRS
from tests.loopback import run_cli

server, checkpoint = loopback.server, loopback.checkpoint  # fixtures
pytestmark = [pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

SIZE = 64  # 10 m bands: 64 x 64 px; the 20 m band 32 x 32
BANDS = {"B04": 10.0, "B03": 10.0, "B02": 10.0, "B08": 20.0}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Item VRTs in the test's own folder."""
    monkeypatch.setenv("GEOEMBED_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def band(seed: int, n: int) -> np.ndarray:
    """A smooth uint16 band with noise, n x n, a 2-px nodata (0) border."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n]
    data = 1000 + 400 * np.sin(xx / (5 + seed)) * np.cos(yy / (7 + seed)) + rng.normal(0, 30,
                                                                                       (n, n))
    data = data.clip(1, None).astype("uint16")
    data[:2], data[-2:], data[:, :2], data[:, -2:] = 0, 0, 0, 0
    return data


def write_cog(path: Path, data: np.ndarray, pixel: float, crs: str = UTM_CRS,
              origin: tuple[float, float] = ORIGIN) -> Path:
    with rasterio.open(path, "w", driver="COG", width=data.shape[1], height=data.shape[0],
                       count=1, dtype=data.dtype, crs=crs, nodata=0, blocksize=512,
                       compress="deflate", overviews="NONE",
                       transform=from_origin(*origin, pixel, pixel)) as ds:
        ds.write(data, 1)
    return path


def item_dict(item_id: str, hrefs: dict[str, str], self_href: str | None = None) -> dict:
    """A minimal STAC 1.0 Item (by hand: what a search API returns)."""
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [[[-123, 37], [-123, 38], [-122, 38],
                                                         [-122, 37], [-123, 37]]]},
        "bbox": [-123, 37, -122, 38],
        "properties": {"datetime": "2024-06-01T00:00:00Z"},
        "links": [{"rel": "self", "href": self_href}] if self_href else [],
        "assets": {**{k: {"href": h, "type": "image/tiff; application=geotiff; "
                          "profile=cloud-optimized", "roles": ["data"]}
                      for k, h in hrefs.items()},
                   "thumbnail": {"href": "thumb.jpg", "type": "image/jpeg"}},
    }


def write_item(folder: Path, item_id: str = "S2A_T10SEG_20240601", seed: int = 0,
               crs: dict[str, str] | None = None) -> tuple[Path, np.ndarray]:
    """Per-band COGs (B08 at 20 m) and an item with relative hrefs in ``folder``; also the
    4-band stack on the 10 m grid (B08 repeated 2 x 2: nearest, an exact 2x ratio)."""
    folder.mkdir(parents=True, exist_ok=True)
    stack = []
    for i, (key, pixel) in enumerate(BANDS.items()):
        n = int(SIZE * 10 / pixel)
        data = band(seed * 10 + i, n)
        write_cog(folder / f"{item_id}_{key}.tif", data, pixel, (crs or {}).get(key, UTM_CRS))
        stack.append(np.repeat(np.repeat(data, 2, 0), 2, 1) if n != SIZE else data)
    path = folder / f"{item_id}.json"
    path.write_text(json.dumps(item_dict(item_id, {k: f"{item_id}_{k}.tif" for k in BANDS})))
    return path, np.stack(stack)


def write_stack(path: Path, stack: np.ndarray) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=len(stack),
                       dtype=stack.dtype, crs=UTM_CRS, nodata=0,
                       transform=from_origin(*ORIGIN, 10.0, 10.0)) as ds:
        ds.write(stack)
    return path


def test_is_stac():
    for text in ["item.json", "a/b/results.GEOJSON", "c.json#S2A_1", "https://h.org/i.json",
                 "https://earth-search.aws.element84.com/v1/collections/s2/items/S2A_1"]:
        assert is_stac(text), text
    for text in ["scene.tif", "https://h.org/scene.tif", "s3://b/items/x.tif", "@list.txt"]:
        assert not is_stac(text), text


def test_vrt_xml_places_a_coarser_asset_by_its_geotransform(tmp_path):
    """A 20 m asset starting 40 m east and 20 m south of the 10 m grid covers DstRect
    (4, 2, 2w, 2h); read back, each coarse pixel fills 2 x 2 grid pixels (nearest)."""
    fine = write_cog(tmp_path / "fine.tif", band(1, 16), 10.0)
    coarse_data = band(2, 4)
    coarse = write_cog(tmp_path / "coarse.tif", coarse_data, 20.0,
                       origin=(ORIGIN[0] + 40, ORIGIN[1] - 20))
    grids = []
    for key, path in {"fine": fine, "coarse": coarse}.items():
        with rasterio.open(path) as ds:
            grids.append(AssetGrid(key, str(path), ds.crs, ds.transform, ds.width, ds.height,
                                   1, "uint16", 0))
    xml = vrt_xml(grids, grids[0])
    assert '<DstRect xOff="4" yOff="2" xSize="8" ySize="8" />' in xml
    assert '<SrcRect xOff="0" yOff="0" xSize="4" ySize="4" />' in xml
    vrt = tmp_path / "stack.vrt"
    vrt.write_text(xml)
    with rasterio.open(vrt) as ds:
        assert ds.descriptions == ("fine", "coarse")
        assert ds.transform == from_origin(*ORIGIN, 10.0, 10.0)
        got = ds.read(2)
    want = np.zeros((16, 16), "uint16")
    want[2:10, 4:12] = np.repeat(np.repeat(coarse_data, 2, 0), 2, 1)
    np.testing.assert_array_equal(got, want)


def test_item_over_http_embeds_like_the_stacked_file(server, checkpoint, tmp_path):
    """An item served over HTTP (relative hrefs, B08 at 20 m) embeds to the same pixels and
    tags as the 4-band file stacked locally; the output is named by the item's id."""
    base, root, served = server
    item, stack = write_item(root)
    local = write_stack(tmp_path / "stacked.tif", stack)
    out = tmp_path / "out"
    out.mkdir()
    code, output = run_cli(["embed", checkpoint, f"{base}/{item.name}", "--out", out,
                            "--assets", "B04,B03,B02,B08", "--stride", 8, "--quiet"])
    assert code == 0, output
    got = out / "S2A_T10SEG_20240601_embedding.tif"
    assert got.exists(), sorted(p.name for p in out.iterdir())
    assert {p for p, _, _ in served.log} >= {f"/S2A_T10SEG_20240601_{k}.tif" for k in BANDS}
    ref = tmp_path / "stacked_embedding.tif"
    code, output = run_cli(["embed", checkpoint, local, "--out", ref, "--stride", 8,
                            "--quiet"])
    assert code == 0, output
    with rasterio.open(got) as a, rasterio.open(ref) as b:
        assert (a.crs, a.transform, a.shape, a.count) == (b.crs, b.transform, b.shape, b.count)
        np.testing.assert_array_equal(a.read(), b.read())
        assert np.isfinite(a.read()).all() and np.unique(a.read(1)).size > 10
        ta, tb = a.tags(), b.tags()
        assert ta.pop("source") == "S2A_T10SEG_20240601.vrt"
        assert tb.pop("source") == "stacked.tif"
        assert ta == tb


def test_scene_reads_the_stack_and_names_bands_by_asset(tmp_path):
    item, stack = write_item(tmp_path / "item")
    [path] = expand_stac(str(item), ["B08", "B02"])
    assert Path(path).stem == "S2A_T10SEG_20240601" and is_stac_vrt(path)
    scene = open_scene(path)
    assert scene.shape == (2, SIZE, SIZE) and scene.descriptions == ("B08", "B02")
    np.testing.assert_array_equal(scene.read(), stack[[3, 2]])
    valid = scene.read_valid()
    # B08's 2-px nodata border at 20 m is 4 px at 10 m
    assert valid.sum() == (SIZE - 8) ** 2 and valid[4:-4, 4:-4].all()


def test_item_collection_gives_one_scene_per_item_named_by_id(tmp_path, cache):
    """Two items in a FeatureCollection (saved search results, hrefs relative to the
    collection file): two scenes, sorted, named by the ids; ``FILE#ID`` picks one."""
    items = [json.loads(write_item(tmp_path / "data", item_id, seed)[0].read_text())
             for item_id, seed in [("S2B_b", 1), ("S2A_a", 2)]]
    for it in items:
        for asset in it["assets"].values():
            asset["href"] = "data/" + asset["href"]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    with pytest.raises(InputError, match="S2B_b: pass --assets"):  # 4 GeoTIFF assets
        expand_inputs([str(results)])
    scenes = expand_inputs([str(results)], [lambda t: expand_stac(t, ["B04", "B08"])])
    assert [Path(p).stem for p in scenes] == ["S2A_a", "S2B_b"]
    assert all(Path(p).parent.parent == cache / "stac" for p in scenes)
    first = open_scene(scenes[1])
    with rasterio.open(tmp_path / "data" / "S2B_b_B04.tif") as ds:
        np.testing.assert_array_equal(first.read()[0], ds.read(1))
    [one] = expand_stac(f"{results}#S2B_b", ["B04"])
    assert Path(one).stem == "S2B_b"
    # tile/train keep the order given
    assert [Path(p).stem for p in scene_inputs([str(results)], ["B04"])] == ["S2B_b", "S2A_a"]


def test_item_without_assets_option_uses_its_only_geotiff(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    write_cog(folder / "image.tif", band(3, 32), 10.0)
    item = folder / "naip.json"
    item.write_text(json.dumps(item_dict("naip_1", {"image": "image.tif"})))
    [path] = expand_stac(str(item))
    assert open_scene(path).descriptions == ("image",)


def test_different_crs_needs_resampling(tmp_path):
    """B08 in another UTM zone: refused without --resampling; warped onto B04's grid with
    it (the scene is in B04's CRS and grid)."""
    item, _ = write_item(tmp_path / "i", crs={"B08": "EPSG:32611"})
    [path] = expand_stac(str(item), ["B04", "B08"])
    with pytest.raises(CRSError, match=r"asset B08 is in EPSG:32611, B04 in EPSG:32610; pass "
                                       r"--resampling"):
        open_scene(path)
    [path] = expand_stac(str(item), ["B04", "B08"], resampling="bilinear")
    scene = open_scene(path)
    assert scene.crs == CRS.from_string(UTM_CRS)
    assert scene.transform == Affine(10.0, 0, ORIGIN[0], 0, -10.0, ORIGIN[1])
    assert scene.shape == (2, SIZE, SIZE)


@pytest.mark.parametrize("make, message", [
    (lambda d: item_dict("x", {"B04": "b.tif"}),
     r"STAC item x has no asset\(s\) B03, B08; it has B04, thumbnail$"),
    (lambda d: {"type": "FeatureCollection", "features": []},
     r"the ItemCollection has no items$"),
    (lambda d: {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None,
                                                           "properties": {}}]},
     r"feature 0 is not a STAC Item"),
    (lambda d: {"hello": 1}, r"not a STAC Item or ItemCollection"),
    (lambda d: "not json at all", r"not JSON"),
])
def test_bad_stac_input(tmp_path, make, message):
    doc = make(tmp_path)
    path = tmp_path / "bad.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(InputError, match=message):
        expand_stac(str(path), ["B04", "B03", "B08"])


def test_bad_stac_input_exits_2(tmp_path, checkpoint):
    item, _ = write_item(tmp_path / "i")
    for args, message in [
        (["--assets", "B04,B05"], "has no asset(s) B05; it has B04, B03, B02, B08, thumbnail"),
        ([], "pass --assets to pick its band assets"),
    ]:
        code, output = run_cli(["embed", checkpoint, item, "--out", tmp_path / "o", *args])
        assert code == 2 and message in output and len(output.strip().splitlines()) == 1, output
    code, output = run_cli(["tile", tmp_path / "x.tif", "--out", tmp_path / "s",
                            "--assets", "B04"])
    assert code == 2 and "--assets B04 applies to STAC items" in output, output
