"""Encoders that map a ``(B, C, H, W)`` tile batch to ``(B, z_dim)`` embeddings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from geoembed.errors import CheckpointError, InputError, first_line
from geoembed.models.pretrained import load_weights
from geoembed.models.tilenet import POOLINGS, TileNet, pool_maps

# segmentation-models-pytorch is imported where an smp encoder is built, not at module top:
# its import took 9.7 s after torch's on the shared 2-core dev machine (python -X importtime),
# and TileNet runs (train, embed) never need it.


class SmpEmbedder(nn.Module):
    """A segmentation-models-pytorch encoder + global average pooling (+ a linear projection).

    The embedding is the last stage's feature map averaged over space, projected to
    ``z_dim`` by a linear layer; with ``project=False`` (or ``z_dim=0``) it is the pooled
    features themselves (``z_dim`` = the last stage's channels: 512 for resnet18/34, 2048
    for resnet50), which suits a pretrained encoder used without training.

    With ``pooling="stages"`` every stage's feature map (not the input) is averaged and the
    results concatenated before the projection; ``"center"`` takes each map's centre cell.

    Tiles whose sides are not multiples of the encoder's output stride are fine: the
    encoder's convolutions pad, and the pooling averages whatever map comes out.
    """

    def __init__(self, name: str, in_channels: int, z_dim: int = 512, depth: int = 5,
                 project: bool = True, pooling: str = "last") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise InputError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
        self.pooling = pooling
        import segmentation_models_pytorch as smp  # lazy: see the note above SmpEmbedder

        try:
            self.encoder = smp.encoders.get_encoder(name, in_channels=in_channels, depth=depth,
                                                    weights=None)
        except KeyError:
            raise InputError(f"unknown encoder {name!r}; see `geoembed train --help`") from None
        self.pool = nn.AdaptiveAvgPool2d(1)
        channels = [int(c) for c in self.encoder.out_channels]
        features = channels[-1] if pooling == "last" else sum(channels[1:])  # stages, center
        if project and z_dim:
            self.project: nn.Module = nn.Linear(features, z_dim)
            self.z_dim = int(z_dim)
        else:
            if z_dim not in (0, features):
                raise InputError(f"encoder {name!r} without projection embeds {features} "
                                 f"values, not z_dim {z_dim}")
            self.project = nn.Identity()
            self.z_dim = features
        self.out_dim = self.z_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.encoder(x)
        if self.pooling == "last":
            return self.project(self.pool(maps[-1]).flatten(1))
        return self.project(pool_maps(list(maps[1:]), self.pooling))


def list_encoders() -> list[str]:
    """'tilenet' and every encoder name segmentation-models-pytorch offers."""
    import segmentation_models_pytorch as smp  # lazy: see the note above SmpEmbedder

    return ["tilenet", *sorted(smp.encoders.get_encoder_names())]


def build_encoder(name: str, in_channels: int, z_dim: int = 512, *, base_width: int = 64,
                  weights: str | os.PathLike | None = None,
                  band_names: Sequence[str | None] | None = None,
                  weights_bands: str | Sequence[str] | None = None, pooling: str = "last",
                  **kwargs: Any) -> nn.Module:
    """Build an embedding encoder.

    Args:
        name: ``"tilenet"`` (the paper's) or any segmentation-models-pytorch encoder
            (``"resnet18"``, ``"resnet34"``, ``"efficientnet-b0"``...), built without
            pretrained weights (nothing is downloaded).
        in_channels: number of input bands.
        z_dim: embedding size; 0 for an smp encoder: no projection, the pooled last-stage
            features (see :class:`SmpEmbedder`).
        base_width: TileNet's first-stage width (ignored by smp encoders).
        weights: optional local weights file (``torch.load(weights_only=True)``): the whole
            model's state dict, or for an smp encoder a pretrained backbone's (torchvision,
            timm, TorchGeo SSL4EO), its first convolution adapted to the bands
            (:func:`geoembed.models.pretrained.load_weights`).
        band_names: the input bands' names (descriptions), to match the weights' bands.
        weights_bands: the weights' input band names (``rgb``, ``s2`` or a list).
        pooling: ``"last"`` (the last stage averaged over space) or ``"stages"`` (every
            stage averaged and concatenated; see :class:`~geoembed.models.tilenet.TileNet`).
        **kwargs: :class:`SmpEmbedder` options (``depth``, ``project``).
    """
    if in_channels < 1:
        raise InputError("in_channels must be at least 1")
    if z_dim < 0 or (z_dim == 0 and name == "tilenet"):
        raise InputError(f"z_dim {z_dim} is out of range (0, no projection, is for smp "
                         "encoders only)")
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
    if name == "tilenet":
        model: nn.Module = TileNet(in_channels, z_dim=z_dim, base_width=base_width,
                                   pooling=pooling)
    else:
        model = SmpEmbedder(name, in_channels, z_dim=z_dim, pooling=pooling, **kwargs)
    if weights is not None:
        band_map = load_weights(model, weights, band_names, weights_bands)
        if band_map is not None:  # for messages: the pretrained band of each input band
            model.band_map = band_map
    return model


def embedding_size(model: nn.Module, z_dim: int) -> int:
    """The size of ``model``'s embeddings: its ``out_dim`` (all stages' widths with
    ``pooling="stages"``), else ``z_dim`` (or the pooled features' for 0)."""
    return int(getattr(model, "out_dim", 0) or getattr(model, "z_dim", z_dim) or z_dim)


def encoder_config(name: str, in_channels: int, z_dim: int, base_width: int = 64, *,
                   project: bool = True, pooling: str = "last") -> dict:
    """The plain-dict architecture config stored in checkpoints (see :func:`build_encoder`).

    ``z_dim`` is the architecture's (the last stage's width, or the projection's size), not
    the embedding size (see :func:`embedding_size`). ``project=False`` (an smp encoder
    without projection) is stored as ``"project": False``, ``pooling`` only when not
    ``"last"`` (checkpoints of older versions rebuild unchanged).
    """
    cfg = {"name": name, "in_channels": in_channels, "z_dim": z_dim, "base_width": base_width}
    if not project:
        cfg["project"] = False
    if pooling != "last":
        cfg["pooling"] = pooling
    return cfg


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
