"""The options of ``geoembed tile`` as one dataclass, shared by the CLI and the Python API.

Only the standard library here, so that ``geoembed tile --help`` reads its defaults without
importing numpy or rasterio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class TileConfig:
    """What ``geoembed tile`` samples (see :func:`geoembed.samplers.tiling.tile`).

    Attributes:
        n_triplets: number of triplets ``N``.
        tile_size: tile side in pixels.
        neighborhood: neighbor radius in pixels (centers, Euclidean).
        bands: 1-based bands to keep (None: every band).
        max_nodata: largest nodata fraction of a tile.
        distant_other_scene_prob: probability that a distant tile comes from another scene
            (None: 0.5 with several scenes, 0 with one).
        aoi: vector file (any CRS) or GeoDataFrame restricting anchors' centers.
        seed: random seed; the same seed gives the same store.
        memory: MiB of pixels read at once (a scene is read in passes of whole block rows
            within it; the triplets do not depend on it).
    """

    n_triplets: int = 100_000
    tile_size: int = 50
    neighborhood: float = 100.0
    bands: Sequence[int] | None = None
    max_nodata: float = 0.0
    distant_other_scene_prob: float | None = None
    aoi: Any = None
    seed: int = 0
    memory: int = 128
