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
    "open_scene": "geoembed.io.scenes",
    "open_scenes": "geoembed.io.scenes",
    "sample_triplets": "geoembed.samplers.triplets",
    "tile": "geoembed.samplers.tiling",
    "train": "geoembed.trainers.tile2vec",
    "embed": "geoembed.inference.embedding",
    "evaluate": "geoembed.evaluation.evaluate",
    "map": "geoembed.mapping.map",
    "weak_train": "geoembed.trainers.weak",
    "segment": "geoembed.inference.segmentation",
    "generate_sample_data": "geoembed.synthetic",
    "read_embeddings": "geoembed.io.embeddings",
    "sample_embeddings": "geoembed.io.embeddings",
    "similarity_map": "geoembed.analysis.similarity",
    "preview": "geoembed.analysis.preview",
    # options as dataclasses, shared by the CLI, these functions and the checkpoints
    "TileConfig": "geoembed.samplers.config",
    "TrainConfig": "geoembed.trainers.tile2vec_config",
    "EmbedConfig": "geoembed.inference.config",
    "SegmentConfig": "geoembed.inference.config",
    "EvaluateConfig": "geoembed.evaluation.config",
    "MapConfig": "geoembed.mapping.config",
    "WeakTrainConfig": "geoembed.trainers.weak_config",
}

__all__ = ["GeoembedError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'geoembed' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
