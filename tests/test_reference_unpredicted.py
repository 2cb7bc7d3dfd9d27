"""A map class the map never predicts still counts against it when the reference has it."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.transform import from_origin

from geoembed.io.classmap import write_class_map
from geoembed.mapping.reference import score_map

UTM = "EPSG:32610"
TRANSFORM = from_origin(500_000.0, 4_200_000.0, 10.0, 10.0)
NAMES = ["water", "forest", "crop"]


def test_unpredicted_class_is_scored_as_errors(tmp_path):
    truth = np.zeros((32, 32), np.uint8)      # water: rows 0-15
    truth[16:24] = 1                          # forest: rows 16-23
    truth[24:] = 2                            # crop: rows 24-31, mapped as forest
    mapped = np.where(truth == 2, 1, truth)
    ref = tmp_path / "ref.tif"
    with rasterio.open(ref, "w", driver="GTiff", width=32, height=32, count=1, dtype="uint8",
                       crs=UTM, transform=TRANSFORM, nodata=255) as ds:
        ds.write(truth, 1)
        ds.update_tags(CLASS_0="water", CLASS_1="forest", CLASS_2="crop")
    map_path = write_class_map(tmp_path / "map.tif", mapped, NAMES, crs=UTM, transform=TRANSFORM)
    res = score_map(map_path, ref, seed=0)
    assert res.class_order == NAMES
    assert res.pixels == 32 * 32
    assert res.accuracy == 0.75                   # the 256 crop pixels are errors
    assert res.per_class["crop"]["f1"] == 0.0
    assert res.per_class["forest"]["f1"] == 2 * 0.5 * 1.0 / 1.5   # precision 0.5, recall 1
    # crop is estimated from the reference pixels sampled in the forest stratum (5.12 ha)
    est = res.areas.to_dict()["classes"]
    n_forest = res.areas.to_dict()["error_matrix_counts"][1]
    share = n_forest[2] / sum(n_forest)
    assert est["crop"]["mapped_area"] == 0.0 and est["crop"]["sample"] == 0
    assert np.isclose(est["crop"]["area"], 5.12 * share)
    assert np.isclose(est["forest"]["area"] + est["crop"]["area"], 5.12)
    assert est["crop"]["producers_accuracy"] == 0.0
