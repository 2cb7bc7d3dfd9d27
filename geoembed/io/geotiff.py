"""Writing georeferenced GeoTIFFs and Cloud Optimized GeoTIFFs, window by window, atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from geoembed.io.outputs import check_output, replace_path, temporary_sibling

# newer rasterio writes colour tables of uint16 rasters; 1.3 only takes keys 0-255 (it
# logs and drops the others). Class maps with more classes keep every colour in their .qml.
COLORMAP_MAX_KEY = 65535 if tuple(map(int, rasterio.__version__.split(".")[:2])) >= (1, 4) \
    else 255


class RasterWriter:
    """Write a georeferenced GeoTIFF window by window, atomically.

    Data go to a temporary file next to the output, renamed into place when the ``with``
    block ends without error (an interrupted run leaves nothing at the output path).
    With ``cog=True`` the result is converted to a Cloud Optimized GeoTIFF with overviews.
    ``colormap`` (``{code: (r, g, b[, a])}``, uint8 / uint16 rasters) is band 1's colour table.

    Example:
        >>> with RasterWriter(path, width=w, height=h, count=3, dtype="float32",
        ...                   crs=crs, transform=transform, nodata=np.nan) as out:
        ...     out.write(block, Window(0, 0, w, 256))
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, count: int,
                 dtype: str | np.dtype, crs: Any, transform: Any, nodata: float | None = None,
                 descriptions: Sequence[str] | None = None, tags: dict[str, Any] | None = None,
                 band_tags: Sequence[dict[str, Any]] | None = None, overwrite: bool = False,
                 cog: bool = False, blocksize: int = 256, compress: str = "deflate",
                 colormap: dict[int, Sequence[int]] | None = None,
                 overview_resampling: str = "average") -> None:
        self.path = check_output(path, overwrite)
        self.cog = cog
        self.overview_resampling = overview_resampling
        self.compress = compress
        self.blocksize = blocksize
        self._tmp = temporary_sibling(self.path)
        dtype = np.dtype(dtype).name
        tiled = width >= 16 and height >= 16
        profile = {
            "driver": "GTiff", "width": width, "height": height, "count": count,
            "dtype": dtype, "crs": crs, "transform": transform, "nodata": nodata,
            "compress": compress, "BIGTIFF": "IF_SAFER",
        }
        if count > 1:  # data bands, not a picture: GDAL takes 3-4 Byte bands for RGB(A) (and,
            # before 3.7, int8 for a signed Byte, so the 4th band of an int8 embedding for alpha)
            profile["photometric"] = "minisblack"
        if tiled:
            bs = min(blocksize, 16 * max(1, min(width, height) // 16))
            profile.update(tiled=True, blockxsize=bs, blockysize=bs)
        if np.issubdtype(np.dtype(dtype), np.floating):
            profile["predictor"] = 3
        elif compress in ("deflate", "lzw", "zstd"):
            profile["predictor"] = 2
        self._profile = profile
        self._descriptions = list(descriptions) if descriptions is not None else None
        self._tags = {k: str(v) for k, v in (tags or {}).items()}
        self._band_tags = band_tags
        self._colormap = colormap
        self._ds: Any = None

    def __enter__(self) -> RasterWriter:
        self._ds = rasterio.open(self._tmp, "w", **self._profile)
        if self._descriptions is not None:
            for i, d in enumerate(self._descriptions, start=1):
                self._ds.set_band_description(i, d)
        if self._tags:
            self._ds.update_tags(**self._tags)
        if self._band_tags:
            for i, t in enumerate(self._band_tags, start=1):
                self._ds.update_tags(i, **{k: str(v) for k, v in t.items()})
        if self._colormap:
            self._ds.write_colormap(1, {int(k): tuple(v) for k, v in self._colormap.items()
                                        if int(k) <= COLORMAP_MAX_KEY})
        return self

    @property
    def dataset(self) -> Any:
        return self._ds

    def write(self, array: np.ndarray, window: Window) -> None:
        """Write ``(count, h, w)`` (or ``(h, w)`` for one band) at ``window``."""
        if array.ndim == 2:
            array = array[None]
        self._ds.write(array.astype(self._profile["dtype"], copy=False), window=window)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._ds.close()
            if exc_type is None:
                if self.cog:
                    cog_tmp = temporary_sibling(self.path)
                    try:
                        _to_cog(self._tmp, cog_tmp, self._profile, self.overview_resampling,
                                self.compress, self.blocksize)
                    except BaseException:
                        cog_tmp.unlink(missing_ok=True)
                        raise
                    self._tmp.unlink(missing_ok=True)
                    replace_path(cog_tmp, self.path)
                else:
                    replace_path(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)


def _to_cog(src: Path, dst: Path, profile: dict, resampling: str, compress: str,
            blocksize: int) -> None:
    """Copy a GeoTIFF to a Cloud Optimized GeoTIFF (GDAL's COG driver builds the overviews)."""
    opts: dict[str, Any] = {
        "driver": "COG", "compress": compress, "blocksize": blocksize,
        "overview_resampling": resampling, "resampling": resampling, "BIGTIFF": "IF_SAFER",
    }
    if "predictor" in profile:
        opts["predictor"] = "FLOATING_POINT" if profile["predictor"] == 3 else "YES"
    rasterio.shutil.copy(str(src), str(dst), **opts)


def write_geotiff(path: str | os.PathLike, array: np.ndarray, *, crs: Any, transform: Any,
                  nodata: float | None = None, descriptions: Sequence[str] | None = None,
                  tags: dict[str, Any] | None = None, overwrite: bool = False,
                  cog: bool = False) -> Path:
    """Write a whole ``(C, H, W)`` (or ``(H, W)``) array as a tiled, compressed GeoTIFF."""
    if array.ndim == 2:
        array = array[None]
    count, height, width = array.shape
    with RasterWriter(path, width=width, height=height, count=count, dtype=array.dtype,
                      crs=crs, transform=transform, nodata=nodata, descriptions=descriptions,
                      tags=tags, overwrite=overwrite, cog=cog) as out:
        out.write(array, Window(0, 0, width, height))
    return Path(path)
