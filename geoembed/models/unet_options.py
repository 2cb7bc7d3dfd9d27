"""The weakly supervised U-Net's architecture choices and their defaults (torch-free).

Shared by :mod:`geoembed.models.unet_cam` (which builds the network) and
:mod:`geoembed.trainers.weak_config` (the options of ``geoembed weak train``), so that each
default is written once and the CLI can show it without importing torch.
"""

from __future__ import annotations

#: What one label says: about a whole tile (class activation maps), about one pixel of a
#: tile, or about every pixel (a dense label raster).
LABEL_TYPES = ("image", "pixel", "dense")
DEFAULT_ENCODER = "resnet18"
DEFAULT_DEPTH = 5
