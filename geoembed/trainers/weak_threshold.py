"""The CAM threshold of a binary image-label (U-CAM) model, chosen on its training images.

Wang et al. (2020) call a training image positive when more than half its pixels' CAM logits
exceed a threshold ``t``, and pick the ``t`` that classifies the training images best.
:func:`majority_scores` reduces each image to the one number that decides this,
:func:`search_threshold` finds the best ``t`` exactly (no grid), and
:func:`cam_training_scores` runs a trained model over the training images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from geoembed.datasets.weak import ImageTiles
from geoembed.errors import LabelError


def majority_scores(cams: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per image, the largest threshold at which *more than half* its CAM pixels exceed it.

    For image ``i`` with ``n`` (valid) pixels this is its ``(n // 2 + 1)``-th largest CAM
    value ``s_i``: the image is called positive at threshold ``t`` exactly when ``s_i > t``.

    Args:
        cams: ``(B, H, W)`` CAM logits.
        valid: ``(B, H, W)`` bool, pixels that count (default: all).
    """
    out = torch.empty(cams.shape[0], dtype=torch.float64)
    flat = cams.reshape(cams.shape[0], -1).double().cpu()
    vflat = None if valid is None else valid.reshape(valid.shape[0], -1).cpu()
    for i in range(cams.shape[0]):
        v = flat[i] if vflat is None else flat[i][vflat[i]]
        n = v.numel()
        if n == 0:
            out[i] = float("nan")
            continue
        k = n // 2 + 1                       # k-th largest == (n - k + 1)-th smallest
        out[i] = torch.kthvalue(v, n - k + 1).values
    return out


def search_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold ``t`` maximising image accuracy when image ``i`` is called positive iff
    ``scores[i] > t`` (``scores`` from :func:`majority_scores`, ``labels`` 0/1).

    Every ``t`` in an interval between consecutive distinct scores gives the same accuracy;
    the middle of the best interval is returned (the first best one when several tie), or
    one unit beyond the extreme scores when calling everything positive / negative is best.

    Returns:
        ``(t, accuracy)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    ok = np.isfinite(scores)
    scores, labels = scores[ok], labels[ok]
    if len(scores) == 0:
        raise LabelError("no training image to choose the CAM threshold on")
    uniq, inv = np.unique(scores, return_inverse=True)
    neg_le = np.cumsum(np.bincount(inv, weights=~labels, minlength=len(uniq)))
    pos_le = np.cumsum(np.bincount(inv, weights=labels, minlength=len(uniq)))
    n_pos = labels.sum()
    # t in [uniq[j], uniq[j+1]): images with score <= uniq[j] negative, the rest positive
    correct = np.concatenate([[n_pos], neg_le + (n_pos - pos_le)])
    best = int(np.argmax(correct))
    accuracy = float(correct[best] / len(scores))
    if best == 0:
        return float(uniq[0] - 1.0), accuracy
    j = best - 1
    if j == len(uniq) - 1:
        return float(uniq[-1] + 1.0), accuracy
    return float((uniq[j] + uniq[j + 1]) / 2), accuracy


@torch.no_grad()
def cam_training_scores(model: nn.Module, dataset: ImageTiles, *, batch_size: int = 32,
                        device: Any = "cpu", quiet: bool = True) -> np.ndarray:
    """:func:`majority_scores` of every training image (no augmentation, eval mode)."""
    model.eval()
    device = torch.device(device) if isinstance(device, str) else device
    scores = []
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc="CAM threshold", disable=quiet, leave=False, unit="batch"):
        items = [dataset.read(i) for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.from_numpy(np.stack([a for a, _ in items])).to(device)
        valid = torch.from_numpy(np.stack([v for _, v in items]))
        cam = model(x)[:, 0].float().cpu()
        scores.append(majority_scores(cam, valid))
    return torch.cat(scores).numpy()
