"""Olofsson et al. (2014) area and accuracy estimates, and the stratified random sample."""

from __future__ import annotations

import numpy as np
import pytest

from geoembed.errors import InputError
from geoembed.mapping.areas import (
    StratifiedSampler,
    allocate,
    estimate_areas,
    stratified_sample,
)
from tests.conftest import write_raster

# Olofsson et al. 2014, Section 5, Table 8: rows = map class, columns = reference class
# [deforestation, forest gain, stable forest, stable non-forest]; mapped area in 30 m pixels
PAPER_COUNTS = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
PAPER_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]
HA_PER_PIXEL = 0.09


@pytest.fixture(scope="module")
def paper():
    return estimate_areas(PAPER_COUNTS, np.array(PAPER_PIXELS) * HA_PER_PIXEL,
                          class_names=["deforestation", "forest gain", "stable forest",
                                       "stable non-forest"], units="ha")


def test_area_proportions_match_table_9(paper):
    expected = [[0.0176, 0.0000, 0.0013, 0.0011],
                [0.0000, 0.0110, 0.0016, 0.0024],
                [0.0019, 0.0000, 0.2967, 0.0213],
                [0.0040, 0.0020, 0.0179, 0.6212]]
    np.testing.assert_allclose(paper.proportions.round(4), expected)
    np.testing.assert_allclose(paper.area_proportion.round(4), [0.0235, 0.0130, 0.3175, 0.6460])


def test_accuracies_match_the_paper(paper):
    # printed in the paper: overall 0.95 +/- 0.02; deforestation user's 0.88 +/- 0.07,
    # producer's 0.75 +/- 0.21
    assert round(paper.overall_accuracy, 2) == 0.95
    assert round(paper.overall_accuracy, 3) == 0.947
    assert round(1.96 * paper.overall_accuracy_se, 2) == 0.02
    np.testing.assert_allclose(paper.users_accuracy.round(2), [0.88, 0.73, 0.93, 0.96])
    np.testing.assert_allclose((1.96 * paper.users_accuracy_se).round(2),
                               [0.07, 0.10, 0.04, 0.02])
    np.testing.assert_allclose(paper.producers_accuracy.round(2), [0.75, 0.85, 0.93, 0.96])
    np.testing.assert_allclose((1.96 * paper.producers_accuracy_se).round(2),
                               [0.21, 0.25, 0.03, 0.02])


def test_areas_and_confidence_intervals_match_the_paper(paper):
    # printed in the paper (ha): 21,158 +/- 6,158; 11,686 +/- 3,756; 285,770 +/- 15,510;
    # 581,386 +/- 16,282
    np.testing.assert_array_equal(paper.area.round(), [21_158, 11_686, 285_770, 581_386])
    np.testing.assert_array_equal((1.96 * paper.area_se).round(), [6_158, 3_756, 15_510, 16_282])
    low, high = paper.area_ci
    assert low[0] == pytest.approx(21_158 - 6_158, abs=1)
    assert high[0] == pytest.approx(21_158 + 6_158, abs=1)
    # the same in pixels: 235,086 +/- 68,418
    px = estimate_areas(PAPER_COUNTS, PAPER_PIXELS)
    assert round(px.area[0]) == 235_086 and round(1.96 * px.area_se[0]) == 68_418
    d = paper.to_dict()
    assert d["classes"]["deforestation"]["users_accuracy"] == pytest.approx(0.88)
    assert d["classes"]["deforestation"]["area_ci_high"] == pytest.approx(high[0])


def test_degenerate_inputs():
    # a perfect sample: areas are the mapped areas; a class nobody mapped nor saw: NaN ratios
    est = estimate_areas([[10, 0, 0], [0, 5, 0], [0, 0, 0]], [100.0, 50.0, 0.0])
    np.testing.assert_allclose(est.area, [100, 50, 0])
    np.testing.assert_allclose(est.area_se, 0)
    assert est.overall_accuracy == 1.0 and np.isnan(est.users_accuracy[2])
    assert np.isnan(est.producers_accuracy[2])
    # one sample pixel: no variance from that stratum rather than a division by zero
    one = estimate_areas([[1, 0], [0, 4]], [10.0, 10.0])
    assert one.users_accuracy_se[0] == 0.0
    with pytest.raises(InputError, match="no sample pixel"):
        estimate_areas([[3, 0], [0, 0]], [10.0, 5.0])
    with pytest.raises(InputError, match="expected"):
        estimate_areas([[3, 0]], [10.0, 5.0])


def test_allocation():
    np.testing.assert_array_equal(allocate([1000, 30, 0], 50), [50, 30, 0])
    np.testing.assert_array_equal(allocate([700, 200, 100], 100, proportional=True), [70, 20, 10])
    # largest remainders keep the total; the minimum lifts small strata (capped by their size)
    np.testing.assert_array_equal(allocate([1, 1, 1], 2, proportional=True), [1, 1, 0])
    np.testing.assert_array_equal(allocate([9000, 990, 10], 100, proportional=True, minimum=20),
                                  [90, 20, 10])


def _blocks(codes, size):
    for r in range(0, codes.shape[0], size):
        for c in range(0, codes.shape[1], size):
            yield r, c, codes[r:r + size, c:c + size]


def test_sampler_draws_n_distinct_pixels_of_each_stratum_reproducibly():
    rng = np.random.default_rng(3)
    codes = rng.choice(3, size=(60, 50), p=[0.9, 0.08, 0.02])
    valid = np.ones_like(codes, dtype=bool)
    valid[:5] = False

    def draw(seed):
        s = StratifiedSampler(3, 25, seed=seed)
        for r, c, block in _blocks(codes, 16):
            s.add(block, valid[r:r + 16, c:c + 16], row_off=r, col_off=c, labels=block * 10)
        return s.result()

    a, b, other = draw(1), draw(1), draw(2)
    np.testing.assert_array_equal(a.pixel_counts, np.bincount(codes[valid], minlength=3))
    np.testing.assert_array_equal(a.allocation, np.minimum(a.pixel_counts, 25))
    for k in range(3):
        sel = a.strata == k
        assert sel.sum() == a.allocation[k]
        assert (codes[a.rows[sel], a.cols[sel]] == k).all()
        assert len(set(zip(a.rows[sel], a.cols[sel], strict=True))) == sel.sum()
    assert valid[a.rows, a.cols].all()
    np.testing.assert_array_equal(a.labels, a.strata * 10)
    np.testing.assert_array_equal(a.rows, b.rows)
    assert not np.array_equal(a.rows, other.rows)


def test_sampler_is_uniform_within_a_stratum():
    # every pixel of a 10-pixel stratum is drawn with probability 3/10
    codes = np.zeros((2, 5), dtype=np.int64)
    hits = np.zeros(10)
    for seed in range(2000):
        s = StratifiedSampler(1, 3, seed=seed)
        s.add(codes[:1], row_off=0)
        s.add(codes[1:], row_off=1)
        out = s.result()
        hits[out.rows * 5 + out.cols] += 1
    np.testing.assert_allclose(hits / 2000, 0.3, atol=0.04)


def test_stratified_sample_of_a_map_file(tmp_path):
    codes = np.zeros((40, 40), dtype=np.uint8)
    codes[:10, :10] = 1
    codes[30:, :] = 255
    path = write_raster(tmp_path / "map.tif", codes[None], nodata=255)
    s = stratified_sample(path, 20, seed=0)
    np.testing.assert_array_equal(s.pixel_counts[:3], [1100, 100, 0])
    assert s.pixel_counts[255] == 0 and len(s.rows) == 40
    np.testing.assert_array_equal(codes[s.rows, s.cols], s.strata)
