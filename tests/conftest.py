"""Shared fixtures: tiny georeferenced rasters written to tmp_path with fixed seeds.

Helpers specific to one area live in that area's test module; keep this file small.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

UTM_CRS = "EPSG:32610"
ORIGIN = (500_000.0, 4_200_000.0)  # top-left corner in UTM 10N metres
PIXEL = 10.0


def write_raster(path: Path, data: np.ndarray, *, crs: str | None = UTM_CRS,
                 nodata: float | None = None, transform=None) -> Path:
    """Write a ``(C, H, W)`` array as a GeoTIFF (north-up, 10 m pixels by default)."""
    count, height, width = data.shape
    transform = transform or from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(data)
    return path


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_raster(name, bands=4, size=(H, W), dtype="uint16", border=0, seed=0)``.

    Pixels are random but spatially smooth per band; ``border`` pixels on every side are set
    to nodata (0 for integers, NaN for floats) and declared as the dataset nodata.
    """

    def make(name: str = "scene.tif", bands: int = 4, size: tuple[int, int] = (128, 128),
             dtype: str = "uint16", border: int = 0, seed: int = 0, crs: str | None = UTM_CRS,
             nodata: float | None = None) -> Path:
        rng = np.random.default_rng(seed)
        h, w = size
        yy, xx = np.mgrid[0:h, 0:w]
        data = np.stack([
            1000 + 400 * np.sin(xx / (7 + b) + b) * np.cos(yy / (11 + b))
            + rng.normal(0, 30, (h, w))
            for b in range(bands)
        ])
        if np.dtype(dtype) == np.uint8:
            data = data / 8
        data = np.clip(data, 1, None).astype(dtype)
        fill = None
        if border:
            fill = np.nan if np.issubdtype(np.dtype(dtype), np.floating) else 0
            data[:, :border, :] = fill
            data[:, -border:, :] = fill
            data[:, :, :border] = fill
            data[:, :, -border:] = fill
        nd = nodata if nodata is not None else fill
        return write_raster(tmp_path / name, data, crs=crs, nodata=nd)

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch (and BLAS) thread for a module of tiny models: on a shared 2-core machine
    two OpenMP threads spin and are several times slower. The settings are restored."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)
