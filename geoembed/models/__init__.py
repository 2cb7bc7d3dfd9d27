"""Neural network models: Tile2Vec encoders and weakly supervised U-Nets.

The names below are imported on first use, so that torch-free modules of this package
(:mod:`geoembed.models.unet_options`) can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TileNet": "geoembed.models.tilenet",
    "build_encoder": "geoembed.models.encoders",
    "encoder_config": "geoembed.models.encoders",
    "encoder_from_checkpoint": "geoembed.models.encoders",
    "list_encoders": "geoembed.models.encoders",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'geoembed.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
