"""Training losses.

Tile2Vec (this first section): the triplet loss of Jean et al. (2019) and an in-batch
InfoNCE variant, plus the per-triplet statistics that training reports.

Embeddings are ``(B, z_dim)`` tensors: ``za`` anchors, ``zn`` neighbors, ``zd`` distant
tiles, row ``i`` of each belonging to triplet ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Tile2Vec: triplet loss and in-batch InfoNCE
# ---------------------------------------------------------------------------------------------

#: Default triplet margin. The paper used 50 with 512-d unnormalised TileNet embeddings. The
#: loss is homogeneous in the embedding scale (scaling every z and the margin by s scales the
#: loss by s), so the margin only sets how far apart embeddings must be pushed; a fresh
#: TileNet's anchor-distant distances are a few units, and the l2 penalty keeps norms small,
#: so the low end of the paper's 10-50 range lets triplets actually become satisfied (the
#: violated-margin fraction can fall) within a CPU-sized run, while leaving z_dim 512 on a
#: GPU a margin of the paper's order.
DEFAULT_MARGIN = 10.0
#: Default l2 weight on embedding norms (the paper's 0.01).
DEFAULT_L2 = 0.01
#: Default InfoNCE temperature (cosine similarities are divided by it).
DEFAULT_TEMPERATURE = 0.1

LOSSES = ("triplet", "infonce")


def triplet_distances(za: torch.Tensor, zn: torch.Tensor, zd: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-triplet L2 distances ``(d(a, n), d(a, d))``, each ``(B,)``.

    ``F.pairwise_distance`` with ``eps=0`` (its default 1e-6 is added to every difference).
    """
    return F.pairwise_distance(za, zn, eps=0.0), F.pairwise_distance(za, zd, eps=0.0)


def triplet_loss(za: torch.Tensor, zn: torch.Tensor, zd: torch.Tensor, *,
                 margin: float = DEFAULT_MARGIN, l2: float = DEFAULT_L2) -> torch.Tensor:
    """Tile2Vec triplet loss, averaged over the batch.

    ``mean_i max(0, ||za_i - zn_i|| - ||za_i - zd_i|| + margin)
    + l2 * mean_i (||za_i|| + ||zn_i|| + ||zd_i||)``.

    The hinge is ``F.triplet_margin_loss`` (``eps=0``) spelled on :func:`triplet_distances`:
    torch's function refuses ``margin=0``, which this loss accepts.
    """
    d_an, d_ad = triplet_distances(za, zn, zd)
    hinge = F.relu(d_an - d_ad + margin).mean()
    if l2 == 0:
        return hinge
    norms = za.norm(dim=1) + zn.norm(dim=1) + zd.norm(dim=1)
    return hinge + l2 * norms.mean()


def info_nce_loss(za: torch.Tensor, zn: torch.Tensor, zd: torch.Tensor, *,
                  temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """In-batch InfoNCE: each anchor against every neighbor and distant tile of the batch.

    Logits are cosine similarities divided by ``temperature`` between anchor ``i`` and the
    ``2B`` candidates ``[zn_0..zn_{B-1}, zd_0..zd_{B-1}]``; the target of anchor ``i`` is its
    own neighbor ``zn_i``, every other candidate is a negative. Cross-entropy, batch mean.
    """
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    a = F.normalize(za, dim=1)
    candidates = F.normalize(torch.cat([zn, zd], dim=0), dim=1)
    logits = a @ candidates.T / temperature
    target = torch.arange(za.shape[0], device=za.device)
    return F.cross_entropy(logits, target)


@dataclass(frozen=True)
class Tile2VecLoss:
    """A configured Tile2Vec objective and the statistics reported per batch.

    Attributes:
        name: ``"triplet"`` or ``"infonce"``.
        margin: triplet margin (triplet loss only).
        l2: weight of the mean per-sample embedding norm (triplet loss only; InfoNCE works
            on unit vectors, where a norm penalty means nothing).
        temperature: InfoNCE temperature.
    """

    name: str = "triplet"
    margin: float = DEFAULT_MARGIN
    l2: float = DEFAULT_L2
    temperature: float = DEFAULT_TEMPERATURE

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"unknown loss {self.name!r}; use one of {', '.join(LOSSES)}")
        if self.margin < 0 or self.l2 < 0:
            raise ValueError("margin and l2 must not be negative")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")

    def to_dict(self) -> dict[str, float | str]:
        """Plain dict stored in checkpoints."""
        return {"name": self.name, "margin": self.margin, "l2": self.l2,
                "temperature": self.temperature}

    def __call__(self, za: torch.Tensor, zn: torch.Tensor, zd: torch.Tensor) -> torch.Tensor:
        if self.name == "infonce":
            return info_nce_loss(za, zn, zd, temperature=self.temperature)
        return triplet_loss(za, zn, zd, margin=self.margin, l2=self.l2)

    def statistics(self, za: torch.Tensor, zn: torch.Tensor, zd: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
        """Sums over the batch of per-triplet statistics (no gradient).

        ``d_an`` / ``d_ad``: L2 distances anchor-neighbor and anchor-distant (for InfoNCE
        between unit-normalised embeddings, the geometry that loss sees). ``violated``: 1
        for a triplet whose margin is violated, ``d_an - d_ad + margin > 0`` (the hinge is
        active); for InfoNCE, which has no margin, ``d_an >= d_ad``. Dividing the sums by
        the number of triplets gives means and the violated fraction.
        """
        with torch.no_grad():
            za, zn, zd = za.detach().float(), zn.detach().float(), zd.detach().float()
            if self.name == "infonce":
                za, zn, zd = (F.normalize(z, dim=1) for z in (za, zn, zd))
                d_an, d_ad = triplet_distances(za, zn, zd)
                bad = d_an >= d_ad
            else:
                d_an, d_ad = triplet_distances(za, zn, zd)
                bad = (d_an - d_ad + self.margin) > 0
            return {"violated": bad.float().sum(), "d_an": d_an.sum(), "d_ad": d_ad.sum()}


# ---------------------------------------------------------------------------------------------
# Weak supervision (Wang et al. 2020): masked pixel loss and CAM image loss
# (used by the weak-supervision trainer: geoembed/trainers/weak.py)
# ---------------------------------------------------------------------------------------------

#: Target value of an unlabelled pixel in the masked pixel loss.
IGNORE_INDEX = -1


def masked_pixel_loss(logits: torch.Tensor, target: torch.Tensor, *,
                      pos_weight: torch.Tensor | float | None = None) -> torch.Tensor:
    """Mean loss over the labelled pixels only; unlabelled pixels get no loss and no gradient.

    Args:
        logits: ``(B, n_out, H, W)`` per-pixel logits; ``n_out == 1`` is binary (BCE on the
            logit), ``n_out == K`` is K classes (cross-entropy).
        target: ``(B, H, W)`` int64 class codes, :data:`IGNORE_INDEX` where unlabelled.
        pos_weight: weight of positive pixels in the binary BCE (class balance).

    Returns:
        The mean over labelled pixels (0, with a gradient graph, when none is labelled).
    """
    labelled = target != IGNORE_INDEX
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    if logits.shape[1] == 1:
        x = logits[:, 0][labelled].float()
        y = target[labelled].to(x.dtype)
        pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=x.dtype,
                                                             device=x.device)
        return F.binary_cross_entropy_with_logits(x, y, pos_weight=pw)
    # ignore_index on the (B, K, H, W) logits: same value as cross-entropy on the labelled
    # pixels gathered, 3.7x faster forward+backward (16 x 5 x 128 x 128, CPU)
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)


def masked_pixel_correct(logits: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    """(correct, labelled) pixel counts of a per-pixel prediction (binary: logit > 0)."""
    with torch.no_grad():
        labelled = target != IGNORE_INDEX
        if logits.shape[1] == 1:
            pred = (logits[:, 0] > 0).long()
        else:
            pred = logits.argmax(dim=1)
        return int((pred[labelled] == target[labelled]).sum()), int(labelled.sum())


def cam_image_loss(image_logits: torch.Tensor, labels: torch.Tensor, *,
                   pos_weight: torch.Tensor | float | None = None) -> torch.Tensor:
    """Image-level loss of a U-CAM model on its pooled logits ``(B, n_out)``.

    Binary (``n_out == 1``): BCE with ``pos_weight`` (positives re-weighted by class balance,
    as in the paper). K classes: cross-entropy. ``labels`` are int64 codes ``(B,)``.
    """
    x = image_logits.float()
    if x.shape[1] == 1:
        pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=x.dtype,
                                                             device=x.device)
        return F.binary_cross_entropy_with_logits(x[:, 0], labels.to(x.dtype), pos_weight=pw)
    return F.cross_entropy(x, labels)
