"""Scoring a class map against a reference raster in another CRS, and the area estimates."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin, rowcol, xy
from rasterio.warp import transform, transform_bounds

from geoembed.errors import InputError, RasterError
from geoembed.io.classmap import write_class_map
from geoembed.mapping.reference import pixel_area, score_map

UTM = "EPSG:32610"
MAP_TRANSFORM = from_origin(500_000.0, 4_200_000.0, 10.0, 10.0)
SIZE = 64
NAMES = ["water", "forest", "crop", "urban"]


def truth_grid() -> np.ndarray:
    r, c = np.mgrid[:SIZE, :SIZE]
    return ((r // 8) * 3 + c // 8) % 4


def write_reference(path, values_of_class, *, nodata=None, rows=SIZE, tags=None, step=2.0):
    """The truth in EPSG:4326 on ~``step`` m cells: each cell takes the class of the map pixel
    under its centre, so nearest resampling back onto the map grid is exact. Map rows at or
    below ``rows`` are nodata (``nodata`` given) or outside the reference (``nodata=None``)."""
    truth = truth_grid()
    west, south, east, north = transform_bounds(UTM, "EPSG:4326", 500_000.0,
                                                4_200_000.0 - SIZE * 10, 500_000.0 + SIZE * 10,
                                                4_200_000.0, densify_pts=21)
    dlat = step / 111_000
    dlon = step / (111_000 * np.cos(np.radians((south + north) / 2)))
    if nodata is None:   # the reference stops at map row `rows`
        south = transform_bounds(UTM, "EPSG:4326", 500_000.0, 4_200_000.0 - rows * 10,
                                 500_000.0 + SIZE * 10, 4_200_000.0)[1] + dlat
    w, h = int(np.ceil((east - west) / dlon)) + 2, int(np.ceil((north - south) / dlat)) + 2
    ref_transform = from_origin(west - dlon, north + dlat, dlon, dlat)
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    lon, lat = xy(ref_transform, ii.ravel(), jj.ravel())
    x, y = transform("EPSG:4326", UTM, lon, lat)
    r, c = rowcol(MAP_TRANSFORM, x, y)
    r, c = np.asarray(r), np.asarray(c)
    inside = (r >= 0) & (r < SIZE) & (c >= 0) & (c < SIZE)
    fill = 0 if nodata is None else nodata
    data = np.full(r.shape, fill, dtype=np.uint8)
    data[inside] = np.asarray(values_of_class)[truth[r[inside], c[inside]]]
    if nodata is not None:
        data[inside & (r >= rows)] = nodata
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=ref_transform, nodata=nodata) as ds:
        ds.write(data.reshape(h, w), 1)
        if tags:
            ds.update_tags(**tags)
    return path


@pytest.fixture
def reference(tmp_path):
    """Water 1, forest 2, crop 3, and 9 'Cloud' where the truth is urban; nodata 0 below
    map row 56."""
    return write_reference(tmp_path / "ref.tif", [1, 2, 3, 9], nodata=0, rows=56,
                           tags={"CLASS_1": "Water", "CLASS_2": "FOREST", "CLASS_3": "crop",
                                 "CLASS_9": "Cloud"})


def write_map(path, codes):
    return write_class_map(path, codes, NAMES, crs=UTM, transform=MAP_TRANSFORM)


def test_map_of_the_truth_scores_exactly_one_in_another_crs(tmp_path, reference):
    truth = truth_grid()
    map_path = write_map(tmp_path / "map.tif", truth)
    png = tmp_path / "confusion.png"
    res = score_map(map_path, reference, confusion_png=png, seed=0)
    assert res.class_order == ["water", "forest", "crop"]
    assert res.accuracy == 1.0 and res.macro_f1 == 1.0
    top = truth[:56]
    expected = [int((top == k).sum()) for k in range(3)]
    np.testing.assert_array_equal(res.confusion_matrix, np.diag(expected))
    assert res.pixels == sum(expected)
    assert res.units == "ha"
    np.testing.assert_allclose(res.mapped_area, np.array(expected) * 0.01)
    assert any("map classes not in the reference" in n and "urban" in n for n in res.notes)
    assert any("reference classes not in the map" in n and "Cloud" in n for n in res.notes)
    # the sample: 50 per class, all correct, so the estimates are the mapped areas
    assert res.areas.counts.sum() == 150 and res.areas.overall_accuracy == 1.0
    np.testing.assert_allclose(res.areas.area, np.array(expected) * 0.01)
    assert png.stat().st_size > 0 and [p.name for p in tmp_path.glob(".*")] == []
    d = res.to_dict()
    assert d["area_estimates"]["classes"]["forest"]["sample"] == 50


def test_known_errors_and_a_census_sample_recover_the_reference_areas(tmp_path, reference):
    truth = truth_grid()
    codes = truth.copy()
    r0, c0 = 8, 24                       # an 8x8 block of crop (2) mapped as forest (1)
    assert (truth[r0:r0 + 8, c0:c0 + 8] == 2).all()
    codes[r0:r0 + 8, c0:c0 + 8] = 1
    codes[60:, :] = -1                   # map nodata where the reference is nodata too
    res = score_map(write_map(tmp_path / "map.tif", codes), reference, n_per_class=100_000)
    n = res.pixels
    assert res.accuracy == pytest.approx(1 - 64 / n)
    cm = np.array(res.confusion_matrix)
    assert cm[2, 1] == 64 and cm.sum() - np.trace(cm) == 64
    assert res.per_class["crop"]["recall"] == pytest.approx(1 - 64 / cm[2].sum())
    # every scored pixel sampled: the stratified estimate is the reference's area exactly
    np.testing.assert_allclose(res.areas.area, res.reference_area)
    np.testing.assert_allclose(res.reference_area, cm.sum(axis=1) * 0.01)
    assert res.areas.users_accuracy[1] == pytest.approx(cm[1, 1] / cm[:, 1].sum())
    # a small sample: an estimate whose 95 % interval holds the reference area
    small = score_map(tmp_path / "map.tif", reference, n_per_class=40, seed=1)
    low, high = small.areas.area_ci
    assert small.areas.counts.sum() == 120
    assert ((low <= np.array(small.reference_area)) & (np.array(small.reference_area) <= high)
            ).all()


def test_matching_by_code_and_a_reference_that_covers_part_of_the_map(tmp_path):
    # no nodata and no names: codes 0..2 are the map codes; below row 32 there is no
    # reference (read as 0 = water without the mask, which would spoil the score)
    ref = write_reference(tmp_path / "ref.tif", [0, 1, 2, 200], nodata=None, rows=32)
    truth = truth_grid()
    res = score_map(write_map(tmp_path / "map.tif", truth), ref, by_code=True)
    assert res.accuracy == 1.0
    with rasterio.open(ref) as ds:
        assert ds.nodata is None
    assert res.pixels == int((truth[:32] != 3).sum())   # rows 32.. are outside it
    assert any("200" in n for n in res.notes)
    # the same reference matched by the caller's names, case-insensitively
    named = score_map(tmp_path / "map.tif", ref,
                      reference_names={0: "WATER", 1: "Forest", 2: "crop"})
    assert named.confusion_matrix == res.confusion_matrix


def test_bad_references(tmp_path, reference):
    map_path = write_map(tmp_path / "map.tif", truth_grid())
    with pytest.raises(InputError, match="no class of the reference"):
        score_map(map_path, reference, reference_names={1: "a", 2: "b", 3: "c"})
    far = tmp_path / "far.tif"
    with rasterio.open(far, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(10, 10, 0.1, 0.1)) as ds:
        ds.write(np.ones((1, 4, 4), np.uint8))
    with pytest.raises(RasterError, match="does not overlap"):
        score_map(map_path, far)


def test_pixel_area():
    from rasterio.crs import CRS
    assert pixel_area(CRS.from_epsg(32610), MAP_TRANSFORM) == (0.01, "ha")
    assert pixel_area(CRS.from_epsg(4326), from_origin(0, 0, 0.1, 0.1)) == (1.0, "pixels")
