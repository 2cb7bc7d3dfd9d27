"""Raster paths: local files, URLs and GDAL virtual paths, in one place.

Every raster input may be a local path, an ``http(s)://`` URL, an ``s3://``, ``gs://`` or
``az://`` object, or a raw GDAL ``/vsi...`` path. :func:`gdal_path` maps the URL schemes to
GDAL's virtual file systems explicitly (rasterio would accept some of them itself, but one
mapping keeps the existence check and the error messages the same everywhere). Credentials
come from the environment GDAL reads (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_*``...), never from an option. Outputs are always local.
"""

from __future__ import annotations

import os
import re

from geoembed.errors import InputError

VSI_PREFIXES = {
    "http": "/vsicurl/",
    "https": "/vsicurl/",
    "s3": "/vsis3/",
    "gs": "/vsigs/",
    "az": "/vsiaz/",
}
"""URL scheme -> GDAL virtual file system (``https://h/a.tif`` -> ``/vsicurl/https://h/a.tif``,
``s3://bucket/key`` -> ``/vsis3/bucket/key``)."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")  # 2+ letters: not a Windows drive
# pathlib folds "s3://b/k" into "s3:/b/k": an output given as a Path is checked on this form
_FOLDED_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def url_scheme(path: str | os.PathLike) -> str | None:
    """The lower-case URL scheme of ``path`` (``"s3"``, ``"https"``...), or None for a path."""
    match = _SCHEME.match(os.fspath(path))
    return match.group(1).lower() if match else None


def is_remote(path: str | os.PathLike) -> bool:
    """True for a URL or a GDAL ``/vsi...`` path: not a file ``os.path.exists`` can check."""
    return url_scheme(path) is not None or os.fspath(path).startswith("/vsi")


def gdal_path(path: str | os.PathLike) -> str:
    """The path GDAL opens for ``path``: URL schemes mapped to ``/vsicurl/``, ``/vsis3/``...

    Raises:
        InputError: a URL scheme GDAL cannot open.
    """
    text = os.fspath(path)
    scheme = url_scheme(text)
    if scheme is None:
        return text
    if scheme not in VSI_PREFIXES:
        known = ", ".join(f"{s}://" for s in VSI_PREFIXES)
        raise InputError(f"{text}: cannot read {scheme}:// URLs; use a local path, {known} "
                         "or a GDAL /vsi... path")
    if scheme in ("http", "https"):
        return VSI_PREFIXES[scheme] + text
    return VSI_PREFIXES[scheme] + text[len(scheme) + 3:]


CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE, "
          "or AWS_NO_SIGN_REQUEST=YES for a public bucket",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS, or GS_ACCESS_KEY_ID and GS_SECRET_ACCESS_KEY, "
          "or GS_NO_SIGN_REQUEST=YES for a public bucket",
    "az": "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT and "
          "AZURE_STORAGE_ACCESS_KEY, or AZURE_NO_SIGN_REQUEST=YES for a public container",
}
"""Object store -> the environment variables GDAL takes its credentials from."""


def credentials_hint(path: str | os.PathLike) -> str:
    """``"; credentials come from the environment: ..."`` for an object-store path, else ``""``.

    Appended to the one-line error of an object (``s3://``, ``/vsis3/``...) that cannot be
    opened: geoembed takes no credentials on its command line.
    """
    text = os.fspath(path)
    store = url_scheme(text)
    if store is None:
        store = next((s for s in CREDENTIALS if text.startswith(VSI_PREFIXES[s])), None)
    if store not in CREDENTIALS:
        return ""
    return f"; credentials come from the environment: {CREDENTIALS[store]}"


def require_local(path: str | os.PathLike, what: str = "output") -> None:
    """Raise :class:`InputError` when ``path`` is a URL or a GDAL virtual path."""
    if is_remote(path) or _FOLDED_SCHEME.match(os.fspath(path)):
        raise InputError(f"{os.fspath(path)}: the {what} must be a local path; geoembed reads "
                         "remote rasters but writes only local files")


STAC_VRT_PREFIX = "stac-"
"""The folder prefix of STAC item VRTs in the cache (``.../stac/stac-<key>/<item id>.vrt``)."""


def is_stac_vrt(path: str | os.PathLike) -> bool:
    """True for a VRT geoembed writes for a STAC item (:mod:`geoembed.io.stac`): its sources
    are usually URLs, so it is read under the cloud settings. A string check only."""
    text = os.fspath(path)
    return (text.endswith(".vrt") and not text.endswith(".warped.vrt")
            and os.path.basename(os.path.dirname(text)).startswith(STAC_VRT_PREFIX))
