"""GDAL settings geoembed applies around its reads (``rasterio.Env``)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import rasterio

from geoembed.io.paths import is_remote, is_stac_vrt

CLOUD_DEFAULTS: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing per open
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "CPL_VSIL_CURL_CACHE_SIZE": 64 << 20,  # bytes of downloaded ranges kept (all files)
    "GDAL_HTTP_MAX_RETRY": 3,
    "GDAL_HTTP_RETRY_DELAY": 1,  # seconds, doubled by GDAL at each retry
    "VSI_CACHE": "TRUE",
}
"""GDAL settings for reading over HTTP and object stores; the user's environment wins."""


def gdal_cache_limit(working_bytes: int, floor: int = 64 << 20) -> Any:
    """A ``rasterio.Env`` bounding GDAL's block cache while streaming over a raster.

    GDAL keeps every block it decodes until its cache (by default 5 % of the RAM) is full,
    so a streaming pass over a scene would otherwise grow the process by the scene's size.
    ``working_bytes`` is what the pass needs cached at once (about a row of blocks).
    """
    return rasterio.Env(GDAL_CACHEMAX=int(max(floor, working_bytes)))


def cloud_options() -> dict[str, Any]:
    """:data:`CLOUD_DEFAULTS` less the variables already set in the process environment.

    GDAL reads a config option from the environment when it is not set otherwise, so a
    variable the user set keeps its value inside geoembed's ``rasterio.Env``.
    """
    return {k: v for k, v in CLOUD_DEFAULTS.items() if k not in os.environ}


def read_env(path: str | os.PathLike) -> contextlib.AbstractContextManager:
    """The GDAL settings to open or read ``path`` under: cloud settings for a remote path.

    Local paths get no ``rasterio.Env`` (nothing to configure, and nothing to pay per read),
    but for the VRT of a STAC item (:func:`geoembed.io.paths.is_stac_vrt`), whose sources
    are usually URLs.
    It is entered around each open and each read (about 40 us), so the settings are in place
    in whichever thread reads (the strip reader reads in a thread of its own).
    """
    if is_remote(path) or is_stac_vrt(path):
        return rasterio.Env(**cloud_options())
    return contextlib.nullcontext()
