"""Encoders that map a ``(B, C, H, W)`` tile batch to ``(B, z_dim)`` embeddings."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from geoembed.errors import CheckpointError, InputError, first_line
from geoembed.models.tilenet import TileNet

# segmentation-models-pytorch is imported where an smp encoder is built, not at module top:
# its import took 9.7 s after torch's on the shared 2-core dev machine (python -X importtime),
# and TileNet runs (train, embed) never need it.


class SmpEmbedder(nn.Module):
    """A segmentation-models-pytorch encoder + global average pooling + linear projection.

    Tiles whose sides are not multiples of the encoder's output stride are fine: the
    encoder's convolutions pad, and the pooling averages whatever map comes out.
    """

    def __init__(self, name: str, in_channels: int, z_dim: int = 512, depth: int = 5) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp  # lazy: see the note above SmpEmbedder

        try:
            self.encoder = smp.encoders.get_encoder(name, in_channels=in_channels, depth=depth,
                                                    weights=None)
        except KeyError:
            raise InputError(f"unknown encoder {name!r}; see `geoembed train --help`") from None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.project = nn.Linear(self.encoder.out_channels[-1], z_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[-1]
        return self.project(self.pool(features).flatten(1))


def list_encoders() -> list[str]:
    """'tilenet' and every encoder name segmentation-models-pytorch offers."""
    import segmentation_models_pytorch as smp  # lazy: see the note above SmpEmbedder

    return ["tilenet", *sorted(smp.encoders.get_encoder_names())]


def build_encoder(name: str, in_channels: int, z_dim: int = 512, *, base_width: int = 64,
                  weights: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Build an embedding encoder.

    Args:
        name: ``"tilenet"`` (the paper's) or any segmentation-models-pytorch encoder
            (``"resnet18"``, ``"resnet34"``, ``"efficientnet-b0"``...), without pretrained
            weights (nothing is downloaded).
        in_channels: number of input bands.
        z_dim: embedding size.
        base_width: TileNet's first-stage width (ignored by smp encoders).
        weights: optional local state-dict file to load (``torch.load(weights_only=True)``).
    """
    if in_channels < 1:
        raise InputError("in_channels must be at least 1")
    if z_dim < 1:
        raise InputError("z_dim must be at least 1")
    if name == "tilenet":
        model: nn.Module = TileNet(in_channels, z_dim=z_dim, base_width=base_width)
    else:
        model = SmpEmbedder(name, in_channels, z_dim=z_dim, **kwargs)
    if weights is not None:
        load_state_dict_file(model, weights)
    return model


def encoder_config(name: str, in_channels: int, z_dim: int, base_width: int = 64) -> dict:
    """The plain-dict architecture config stored in checkpoints (see :func:`build_encoder`)."""
    return {"name": name, "in_channels": in_channels, "z_dim": z_dim, "base_width": base_width}


def load_state_dict_file(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a local weights file (a state dict, or a geoembed checkpoint) into ``model``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: refused to load weights ({type(exc).__name__}); only "
                              "plain state-dict files are accepted") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit this model "
                              f"({first_line(exc)})") from None


def encoder_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild a trained encoder (in eval mode) from a loaded ``tile2vec`` checkpoint dict."""
    try:
        cfg = dict(ckpt["encoder"])
        model = build_encoder(cfg.pop("name"), cfg.pop("in_channels"), cfg.pop("z_dim"),
                              base_width=cfg.pop("base_width", 64), **cfg)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"the checkpoint's encoder cannot be rebuilt ({type(exc).__name__}:"
                              f" {first_line(exc)})") from None
    return model.eval()
