"""geoembed: remote sensing with few labels.

Tile2Vec embeddings of georeferenced rasters and weakly supervised U-Net segmenters.
Heavy dependencies (torch, segmentation-models-pytorch) are imported lazily: importing
``geoembed`` or its raster and sampling modules stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from geoembed.errors import GeoembedError

__version__ = "0.1.0"

# Public API name -> module that defines it, imported on first access.
_LAZY = {
    "open_scene": "geoembed.raster",
    "open_scenes": "geoembed.raster",
    "sample_triplets": "geoembed.sampling",
    "tile": "geoembed.store",
    "train": "geoembed.tile2vec",
    "embed": "geoembed.embedding",
    "evaluate": "geoembed.evaluation",
    "weak_train": "geoembed.weak",
    "segment": "geoembed.segmentation",
    "generate_sample_data": "geoembed.synthetic",
}

__all__ = ["GeoembedError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'geoembed' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
