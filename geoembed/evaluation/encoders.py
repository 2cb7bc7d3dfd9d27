"""Encoders as feature extractors: the trained encoder's embedding of a batch of tiles, and the
untrained control (``random-encoder``) with BatchNorm statistics estimated on the scene.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from geoembed.devices import autocast_context
from geoembed.models import build_encoder


def random_encoder(encoder_cfg: dict, seed: int = 0, calibration: np.ndarray | None = None,
                   batch_size: int = 64) -> Any:
    """The checkpoint's architecture with fresh weights from a fixed seed (eval mode).

    With ``calibration`` tiles ``(n, C, t, t)`` (normalised, unlabelled), the BatchNorm
    running statistics are estimated on them (no weight is trained): with the default
    statistics (mean 0, variance 1) a deep untrained network's outputs collapse to nearly
    the same vector for every tile, which would make the control weaker than it is.
    """
    cfg = dict(encoder_cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_encoder(cfg.pop("name"), cfg.pop("in_channels"), cfg.pop("z_dim"),
                              base_width=cfg.pop("base_width", 64), **cfg)
    if calibration is not None:
        calibrate_batchnorm(model, calibration, batch_size)
    return model.eval()


def calibrate_batchnorm(model: nn.Module, tiles: np.ndarray, batch_size: int = 64) -> nn.Module:
    """Re-estimate ``model``'s BatchNorm running statistics on ``tiles`` ``(n, C, t, t)``
    (normalised; cumulative average over batches of ``batch_size``); no weight changes.
    Returns the model in eval mode. Fewer than 2 tiles leave it unchanged."""
    if len(tiles) < 2:
        return model.eval()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for start in range(0, len(tiles), batch_size):
            chunk = tiles[start:start + batch_size]
            if len(chunk) > 1:
                model(torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)))
    return model.eval()


def encode_batch(model: Any, norm: np.ndarray, device: Any) -> np.ndarray:
    """Embeddings ``(B, z)`` of normalised tiles ``(B, C, t, t)`` (inference mode, float32)."""
    device = torch.device(device)
    with torch.inference_mode(), autocast_context(device):
        z = model(torch.from_numpy(np.ascontiguousarray(norm)).to(device))
    return z.float().cpu().numpy()


__all__ = ["encode_batch", "random_encoder"]
