"""Errors a user can cause. The CLI prints them on one line and exits with status 2.

Every error subclasses :class:`GeoembedError` and also the builtin that fits, so that
``except OSError`` catches an unreadable raster and ``except FileExistsError`` an output
that is already there, whether or not the caller knows geoembed's own classes.
"""

from __future__ import annotations


class GeoembedError(Exception):
    """Base class for every error caused by the user's input or options."""


class InputError(GeoembedError, ValueError):
    """A path, option or argument that cannot be used as given."""


class RasterError(GeoembedError, OSError):
    """A raster that cannot be read or used (not a raster, no CRS, all nodata, too small...)."""


class CRSError(GeoembedError, ValueError):
    """A coordinate reference system that is missing, mismatched or cannot be transformed."""


class LabelError(GeoembedError, ValueError):
    """Labels that cannot be used (missing column, one class, none inside the scene...)."""


class CheckpointError(GeoembedError, ValueError):
    """A checkpoint that is missing, corrupt, not geoembed's, or does not fit the data."""


class OutputExistsError(GeoembedError, FileExistsError):
    """An output that exists already and would be overwritten without ``--overwrite``."""


class DeviceError(GeoembedError, RuntimeError):
    """A compute device that was asked for but is not available."""


class TrainingDivergedError(GeoembedError, FloatingPointError):
    """A training run whose loss became NaN or infinite; the last good checkpoint is kept."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its class name when empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
