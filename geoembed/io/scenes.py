"""Scenes: open GDAL rasters, read windows with their validity masks, band statistics.

Arrays are ``(C, H, W)`` (rasterio's order). Bands are 1-based like rasterio. A pixel is
*valid* when the dataset's mask says so for every selected band (dataset nodata, internal or
sidecar masks, alpha bands) and, for floating-point data, when every band is finite.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio._err import CPLE_BaseError  # GDAL's errors (CPLE_*); rasterio has no public name
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NodataShadowWarning, RasterioIOError
from rasterio.windows import Window

from geoembed.errors import CRSError, InputError, RasterError, first_line
from geoembed.io.gdal_env import read_env
from geoembed.io.paths import credentials_hint, gdal_path, is_remote
from geoembed.io.stac import ensure_vrt


@dataclass
class Scene:
    """One georeferenced raster with a band selection; reads windows without loading it whole.

    The dataset handle is opened lazily and cached per process (a Scene can be sent to
    DataLoader workers: each worker opens its own handle).
    """

    path: str
    bands: tuple[int, ...]
    width: int
    height: int
    dtype: str
    crs: Any
    transform: Any
    nodata: float | None
    descriptions: tuple[str | None, ...]
    _mask_mode: str = "none"  # "none" | "dataset" | "per-band"
    _ds: Any = field(default=None, repr=False, compare=False)
    _pid: int | None = field(default=None, repr=False, compare=False)

    @property
    def count(self) -> int:
        """Number of selected bands."""
        return len(self.bands)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(bands, height, width)."""
        return (self.count, self.height, self.width)

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def dataset(self) -> rasterio.io.DatasetReader:
        """The open rasterio dataset (reopened after a fork)."""
        if self._ds is None or self._pid != os.getpid():
            self._ds = open_dataset(self.path)
            self._pid = os.getpid()
        return self._ds

    def close(self) -> None:
        if self._ds is not None and self._pid == os.getpid():
            self._ds.close()
        self._ds = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_ds"] = None
        state["_pid"] = None
        return state

    def window_in_bounds(self, window: Window) -> bool:
        """True when the window lies fully inside the scene."""
        return (
            window.col_off >= 0
            and window.row_off >= 0
            and window.col_off + window.width <= self.width
            and window.row_off + window.height <= self.height
        )

    def read(self, window: Window | None = None, *, boundless: bool = False,
             out_shape: tuple[int, int] | None = None,
             resampling: Resampling = Resampling.nearest) -> np.ndarray:
        """Read the selected bands in ``window`` as ``(C, h, w)`` in the scene's dtype.

        ``out_shape`` ``(h, w)`` reads decimated or resampled with ``resampling``.

        Raises:
            RasterError: GDAL cannot read the window (truncated or corrupt file, failed
                download).
        """
        kwargs: dict[str, Any] = {"window": window}
        if boundless:
            kwargs.update(boundless=True, fill_value=self.nodata if self.nodata is not None else 0)
        if out_shape is not None:
            kwargs.update(out_shape=(self.count, *out_shape), resampling=resampling)
        with read_errors(self.path, window):
            return self.dataset.read(list(self.bands), **kwargs)

    def read_valid(self, window: Window | None = None, *, data: np.ndarray | None = None,
                   boundless: bool = False, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        """Boolean ``(h, w)`` validity mask of ``window``.

        ``data`` (the window's pixels, if already read) adds the NaN check for float rasters.
        ``out_shape`` reads a decimated mask (for coverage maps of large scenes).
        Pixels outside the scene are invalid when ``boundless``.
        """
        if window is None:
            window = Window(0, 0, self.width, self.height)
        h, w = out_shape if out_shape is not None else (int(window.height), int(window.width))
        if self._mask_mode == "none":
            valid = np.ones((h, w), dtype=bool)
            if boundless:
                valid &= _inside_mask(window, self.width, self.height, (h, w))
        else:
            idx = [self.bands[0]] if self._mask_mode == "dataset" else list(self.bands)
            kwargs: dict[str, Any] = {"window": window}
            if out_shape is not None:
                kwargs["out_shape"] = (len(idx), h, w)
            if boundless:
                kwargs["boundless"] = True
            with warnings.catch_warnings(), read_errors(self.path, window):
                # GDAL's "nodata shadows alpha" note: the dataset nodata is what we want here
                warnings.simplefilter("ignore", NodataShadowWarning)
                masks = self.dataset.read_masks(idx, **kwargs)
            valid = np.all(masks > 0, axis=0)
        if data is not None and np.issubdtype(data.dtype, np.floating):
            valid &= np.all(np.isfinite(data), axis=0)
        return valid

    def read_with_mask(self, window: Window, *, boundless: bool = False
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``(C, h, w)`` and validity mask ``(h, w)`` of ``window``."""
        data = self.read(window, boundless=boundless)
        return data, self.read_valid(window, data=data, boundless=boundless)

    def window_bounds(self, window: Window) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of a window in the scene's CRS."""
        return rasterio.windows.bounds(window, self.transform)

    def window_transform(self, window: Window) -> Any:
        return rasterio.windows.transform(window, self.transform)


def _inside_mask(window: Window, width: int, height: int, shape: tuple[int, int]) -> np.ndarray:
    rows = np.linspace(window.row_off, window.row_off + window.height, shape[0], endpoint=False)
    cols = np.linspace(window.col_off, window.col_off + window.width, shape[1], endpoint=False)
    return ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]


def _window_text(window: Window | None) -> str:
    if window is None:
        return "of the whole raster"
    w = Window(*(int(round(v)) for v in (window.col_off, window.row_off, window.width,
                                         window.height)))
    return f"at window (col {w.col_off}, row {w.row_off}, {w.width} x {w.height})"


def _gdal_message(exc: BaseException) -> str:
    """GDAL's own words for a failed read: rasterio's ``RasterioIOError`` ("Read failed. See
    previous exception") chains GDAL's errors, the first naming the block, the last the cause."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    gdal = [first_line(e) for e in chain if isinstance(e, CPLE_BaseError)] or [first_line(exc)]
    return gdal[0] if gdal[-1] in gdal[0] else f"{gdal[0]} ({gdal[-1]})"


@contextmanager
def read_errors(path: str | os.PathLike, window: Window | None = None) -> Iterator[None]:
    """Read pixels of ``path`` under geoembed's GDAL settings, with one-line read errors.

    Every read of scene pixels goes through this: GDAL's cloud settings apply to a remote
    path (:func:`geoembed.io.gdal_env.read_env`), and a failed read (``RasterioIOError`` or
    a GDAL ``CPLE_*`` error: truncated file, corrupt compressed block, dropped connection)
    becomes a :class:`RasterError` naming the file and the window.

    Example:
        >>> with read_errors(scene.path, window):
        ...     data = scene.dataset.read(window=window)
    """
    try:
        with read_env(path):
            yield
    except (RasterioIOError, CPLE_BaseError) as exc:
        cause = ("the download failed or the file is truncated or corrupt" if is_remote(path)
                 else "the file may be truncated or corrupt")
        raise RasterError(f"{os.fspath(path)}: cannot read pixels {_window_text(window)}: "
                          f"{_gdal_message(exc)}; {cause}") from exc


def open_dataset(path: str | os.PathLike) -> rasterio.io.DatasetReader:
    """``rasterio.open`` with one-line errors: no such file, or not a raster GDAL can read.

    ``path`` may be a URL or a GDAL virtual path (:func:`geoembed.io.paths.gdal_path`),
    opened under geoembed's cloud settings, or a STAC item's VRT (built here the first time:
    :func:`geoembed.io.stac.ensure_vrt`).

    Raises:
        InputError: the local path does not exist, or a URL scheme GDAL cannot read.
        RasterError: GDAL cannot open it as a raster (or the server refuses it).
    """
    ensure_vrt(path)  # a STAC item's VRT is built on its first open
    target = gdal_path(path)
    remote = is_remote(path)
    if not remote and not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        with read_env(path):
            return rasterio.open(target)
    except (RasterioIOError, CPLE_BaseError) as exc:
        what = "cannot open it as a raster" if remote else "not a raster GDAL can read"
        raise RasterError(f"{os.fspath(path)}: {what} ({first_line(exc)})"
                          f"{credentials_hint(path)}") from None


def open_scene(path: str | os.PathLike, bands: Sequence[int] | None = None, *,
               allow_no_crs: bool = False) -> Scene:
    """Open a GDAL-readable raster as a :class:`Scene`.

    Args:
        path: the raster file.
        bands: 1-based band indexes to use (default: every band).
        allow_no_crs: accept a raster without a CRS (pixel coordinates only).

    Raises:
        InputError: the path does not exist or a band index is out of range.
        RasterError: the file is not a raster.
        CRSError: the raster has no CRS and ``allow_no_crs`` is false.
    """
    path = str(path)
    with open_dataset(path) as ds:
        if ds.count == 0:
            raise RasterError(f"{path}: the raster has no bands")
        if bands is None or len(bands) == 0:
            band_idx = tuple(range(1, ds.count + 1))
        else:
            band_idx = tuple(int(b) for b in bands)
            bad = [b for b in band_idx if not 1 <= b <= ds.count]
            if bad:
                raise InputError(
                    f"{path}: band(s) {bad} out of range; the raster has bands 1..{ds.count}"
                )
        if ds.crs is None and not allow_no_crs:
            raise CRSError(
                f"{path}: the raster has no CRS; assign one (gdal_edit.py -a_srs) "
                "or pass --allow-no-crs to work in pixel coordinates"
            )
        dtypes = {ds.dtypes[b - 1] for b in band_idx}
        if len(dtypes) > 1:
            raise RasterError(f"{path}: selected bands have different dtypes {sorted(dtypes)}")
        flags = [ds.mask_flag_enums[b - 1] for b in band_idx]
        is_float = np.issubdtype(np.dtype(ds.dtypes[band_idx[0] - 1]), np.floating)
        if all(f == [MaskFlags.all_valid] for f in flags):
            mode = "none"
        elif all(MaskFlags.per_dataset in f for f in flags):
            mode = "dataset"
        else:
            mode = "per-band"
        if mode == "none" and is_float:
            mode = "none"  # NaN handled from the data itself in read_valid
        nodata = ds.nodatavals[band_idx[0] - 1]
        return Scene(
            path=path,
            bands=band_idx,
            width=ds.width,
            height=ds.height,
            dtype=ds.dtypes[band_idx[0] - 1],
            crs=ds.crs,
            transform=ds.transform,
            nodata=nodata,
            descriptions=tuple(ds.descriptions[b - 1] for b in band_idx),
            _mask_mode=mode,
        )


def open_scenes(paths: Iterable[str | os.PathLike], bands: Sequence[int] | None = None, *,
                allow_no_crs: bool = False) -> list[Scene]:
    """Open several scenes that must share their (selected) band count and dtype."""
    scenes = [open_scene(p, bands, allow_no_crs=allow_no_crs) for p in paths]
    if not scenes:
        raise InputError("no scene given")
    first = scenes[0]
    for s in scenes[1:]:
        if s.count != first.count:
            raise RasterError(
                f"{s.path} has {s.count} bands but {first.path} has {first.count}; "
                "use --bands to select the same bands in every scene"
            )
        if np.dtype(s.dtype) != np.dtype(first.dtype):
            raise RasterError(f"{s.path} is {s.dtype} but {first.path} is {first.dtype}")
    return scenes



#: How pixels are scaled for an encoder (:meth:`BandStats.scaling`).
NORMALIZATIONS = ("meanstd", "percentile")


@dataclass
class BandStats:
    """Per-band statistics of valid pixels: mean, std, 2nd and 98th percentiles, and the
    normalisation they are used for (``mode``, see :meth:`scaling`)."""

    mean: list[float]
    std: list[float]
    p2: list[float]
    p98: list[float]
    mode: str = "meanstd"

    def __post_init__(self) -> None:
        if self.mode not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.mode!r}; use one of "
                             f"{', '.join(NORMALIZATIONS)}")

    def to_dict(self) -> dict[str, Any]:
        """The statistics as plain lists (``mode`` only when not the default meanstd)."""
        d: dict[str, Any] = {"mean": self.mean, "std": self.std, "p2": self.p2,
                             "p98": self.p98}
        if self.mode != "meanstd":
            d["mode"] = self.mode
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BandStats:
        return cls(**{k: [float(v) for v in d[k]] for k in ("mean", "std", "p2", "p98")},
                   mode=str(d.get("mode", "meanstd")))

    def scaling(self) -> tuple[np.ndarray, np.ndarray, float | None]:
        """``(offset, scale, clip)`` per band: the encoder's input is
        ``(x - offset) / scale``, clipped to ``[-clip, clip]`` when ``clip`` is not None.

        ``meanstd`` (default): standardised, ``(x - mean) / std``. ``percentile``: the 2-98 %
        range mapped to [-1, 1] and values outside it clipped, so that a few bright or dark
        outliers (clouds, glint, shadows) do not stretch the scale.
        """
        if self.mode == "meanstd":
            return (np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32), None)
        lo, hi = np.asarray(self.p2, np.float64), np.asarray(self.p98, np.float64)
        half = (hi - lo) / 2
        return ((lo + half).astype(np.float32),
                np.where(half > 0, half, 1.0).astype(np.float32), 1.0)


def band_statistics(scenes: Sequence[Scene], *, n_windows: int = 64, window_size: int = 256,
                    seed: int = 0, max_pixels: int = 2_000_000) -> BandStats:
    """Estimate per-band statistics of valid pixels from a random sample of windows.

    Scenes are visited in proportion to their area; windows are read whole (no full-scene
    load). Raises :class:`RasterError` when no valid pixel is found.
    """
    rng = np.random.default_rng(seed)
    areas = np.array([s.width * s.height for s in scenes], dtype=float)
    picks = rng.choice(len(scenes), size=n_windows, p=areas / areas.sum())
    samples: list[np.ndarray] = []
    per_window = max(1, max_pixels // n_windows)
    for si in picks:
        s = scenes[si]
        h, w = min(window_size, s.height), min(window_size, s.width)
        row = int(rng.integers(0, s.height - h + 1))
        col = int(rng.integers(0, s.width - w + 1))
        data, valid = s.read_with_mask(Window(col, row, w, h))
        px = data[:, valid].astype(np.float64)
        if px.shape[1] > per_window:
            px = px[:, rng.choice(px.shape[1], per_window, replace=False)]
        if px.size:
            samples.append(px)
    if not samples:
        # fall back to a decimated read of every scene before giving up
        for s in scenes:
            shape = (min(s.height, 512), min(s.width, 512))
            data = s.read(out_shape=shape)
            valid = s.read_valid(out_shape=shape, data=data)
            if valid.any():
                samples.append(data[:, valid].astype(np.float64))
    if not samples:
        raise RasterError("no valid pixel found in the scenes: are they all nodata?")
    px = np.concatenate(samples, axis=1)
    p2, p98 = np.percentile(px, [2, 98], axis=1)
    std = px.std(axis=1)
    return BandStats(
        mean=px.mean(axis=1).tolist(),
        std=np.where(std > 0, std, 1.0).tolist(),
        p2=p2.tolist(),
        p98=p98.tolist(),
    )


def normalize(data: np.ndarray, stats: BandStats | dict, valid: np.ndarray | None = None
              ) -> np.ndarray:
    """Scale ``(..., C, H, W)`` for an encoder (:meth:`BandStats.scaling`: per-band mean/std
    by default); invalid and non-finite pixels become 0 (the mean, or the 2-98 % midpoint)."""
    if isinstance(stats, dict):
        stats = BandStats.from_dict(stats)
    offset, scale, clip = stats.scaling()
    out = (data.astype(np.float32) - offset.reshape(-1, 1, 1)) / scale.reshape(-1, 1, 1)
    if clip is not None:
        np.clip(out, -clip, clip, out=out)
    if valid is not None:
        out = np.where(valid[..., None, :, :], out, np.float32(0.0))
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
