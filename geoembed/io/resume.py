"""Resumable runs: is an output that is already there the one this run would write?

An output written atomically (:mod:`geoembed.io.outputs`) is complete once it has its final
name; it is *this run's* output when it opens and its tags carry the same checkpoint SHA-256
and the same digest of the options that shape its pixels (:func:`options_digest`). A rerun
skips such an output and redoes nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import rasterio
from rasterio.errors import RasterioIOError

OPTIONS_TAG = "options_sha256"


def options_digest(options: Mapping[str, Any]) -> str:
    """SHA-256 of the options as canonical JSON (sorted keys; tuples as lists)."""
    text = json.dumps(dict(options), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def matching_output(path: str | os.PathLike, expected: Mapping[str, str]) -> bool:
    """True when ``path`` opens as a raster whose tags hold every ``expected`` value."""
    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
    except (RasterioIOError, OSError):
        return False
    return all(tags.get(key) == str(value) for key, value in expected.items())
