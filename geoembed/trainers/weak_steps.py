"""The per-batch steps of weak-label training for :func:`geoembed.trainers.fit.fit`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from geoembed.losses import cam_image_loss, masked_pixel_correct, masked_pixel_loss
from geoembed.trainers.fit import StepOutput


class ImageStep:
    """``fit`` step for image labels: loss on pooled CAM logits; reports image accuracy."""

    def __init__(self, pos_weight: float | None) -> None:
        self.pos_weight = pos_weight

    def __call__(self, model: nn.Module, batch: Any, to_device: Any) -> StepOutput:
        x, valid, y = (to_device(t) for t in batch)
        logits = model(x, valid, image_logits=True)
        loss = cam_image_loss(logits, y, pos_weight=self.pos_weight)
        with torch.no_grad():
            pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
            correct = (pred == y).float().sum()
        return StepOutput(loss=loss, n=int(y.shape[0]), sums={"accuracy": correct})


class PixelStep:
    """``fit`` step for pixel / dense labels: masked per-pixel loss; reports the labelled
    pixels' accuracy (per batch, weighted by tiles)."""

    def __init__(self, pos_weight: float | None = None) -> None:
        self.pos_weight = pos_weight

    def __call__(self, model: nn.Module, batch: Any, to_device: Any) -> StepOutput:
        x, target = (to_device(t) for t in batch)
        logits = model(x)
        loss = masked_pixel_loss(logits, target, pos_weight=self.pos_weight)
        correct, labelled = masked_pixel_correct(logits, target)
        n = int(x.shape[0])
        return StepOutput(loss=loss, n=n, sums={"accuracy": n * correct / max(labelled, 1)})
