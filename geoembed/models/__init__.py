"""Neural network models: Tile2Vec encoders and weakly supervised U-Nets."""

from geoembed.models.encoders import (
    build_encoder,
    encoder_config,
    encoder_from_checkpoint,
    list_encoders,
)
from geoembed.models.tilenet import TileNet

__all__ = ["TileNet", "build_encoder", "encoder_config", "encoder_from_checkpoint", "list_encoders"]
