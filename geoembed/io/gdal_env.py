"""GDAL settings geoembed applies around its reads (``rasterio.Env``)."""

from __future__ import annotations

from typing import Any

import rasterio


def gdal_cache_limit(working_bytes: int, floor: int = 64 << 20) -> Any:
    """A ``rasterio.Env`` bounding GDAL's block cache while streaming over a raster.

    GDAL keeps every block it decodes until its cache (by default 5 % of the RAM) is full,
    so a streaming pass over a scene would otherwise grow the process by the scene's size.
    ``working_bytes`` is what the pass needs cached at once (about a row of blocks).
    """
    return rasterio.Env(GDAL_CACHEMAX=int(max(floor, working_bytes)))
