"""Errors a user can cause. The CLI prints them on one line and exits with status 2."""

from __future__ import annotations


class GeoembedError(Exception):
    """Base class for every error caused by the user's input or options."""


class InputError(GeoembedError):
    """A path, option or argument that cannot be used as given."""


class RasterError(GeoembedError):
    """A raster that cannot be read or used (not a raster, no CRS, all nodata, too small...)."""


class CRSError(GeoembedError):
    """A coordinate reference system that is missing, mismatched or cannot be transformed."""


class LabelError(GeoembedError):
    """Labels that cannot be used (missing column, one class, none inside the scene...)."""


class CheckpointError(GeoembedError):
    """A checkpoint that is missing, corrupt, not geoembed's, or does not fit the data."""


class OutputExistsError(GeoembedError):
    """An output that exists already and would be overwritten without ``--overwrite``."""


class DeviceError(GeoembedError):
    """A compute device that was asked for but is not available."""
