"""Tile2Vec losses on hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from geoembed.losses import (
    IGNORE_INDEX,
    Tile2VecLoss,
    info_nce_loss,
    masked_pixel_loss,
    triplet_distances,
    triplet_loss,
)


def _triplets() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # triplet 0: d_an = 1, d_ad = 5 (3-4-5), norms 0, 1, 5
    # triplet 1: d_an = 2, d_ad = 1, norms 1, sqrt(5), sqrt(2)
    za = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    zn = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
    zd = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    return za, zn, zd


def test_distances():
    d_an, d_ad = triplet_distances(*_triplets())
    assert torch.allclose(d_an, torch.tensor([1.0, 2.0]))
    assert torch.allclose(d_ad, torch.tensor([5.0, 1.0]))


def test_triplet_loss_by_hand():
    za, zn, zd = _triplets()
    # hinge: max(0, 1 - 5 + 2) = 0, max(0, 2 - 1 + 2) = 3 -> mean 1.5
    assert triplet_loss(za, zn, zd, margin=2.0, l2=0.0).item() == pytest.approx(1.5)
    # norms: (0 + 1 + 5) and (1 + sqrt 5 + sqrt 2) -> mean (7 + sqrt 5 + sqrt 2) / 2
    expected = 1.5 + 0.1 * (7 + math.sqrt(5) + math.sqrt(2)) / 2
    assert triplet_loss(za, zn, zd, margin=2.0, l2=0.1).item() == pytest.approx(expected)
    # a margin of 5 makes triplet 0 violated too: max(0, 1 - 5 + 5) = 1, 2 - 1 + 5 = 6
    assert triplet_loss(za, zn, zd, margin=5.0, l2=0.0).item() == pytest.approx(3.5)


def test_triplet_loss_gradient_pulls_neighbor_and_pushes_distant():
    za, zn, zd = (z.clone().requires_grad_(True) for z in _triplets())
    triplet_loss(za, zn, zd, margin=2.0, l2=0.0).backward()
    # only triplet 1 is active; gradient descent moves zn towards za and zd away from it
    assert torch.all(zn.grad[0] == 0) and torch.all(zd.grad[0] == 0)
    assert torch.allclose(zn.grad[1], torch.tensor([0.0, 0.5]))  # d/dzn ||za-zn|| / B
    assert torch.allclose(zd.grad[1], torch.tensor([0.0, -0.5]))  # -d/dzd ||za-zd|| / B


def test_info_nce_by_hand():
    # unit vectors: anchor 0 = e0, neighbor 0 = e0, distant 0 = e1; anchor 1 = e1,
    # neighbor 1 = -e0, distant 1 = e1.
    za = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    zn = torch.tensor([[3.0, 0.0], [-1.0, 0.0]])
    zd = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    t = 0.5
    # anchor 0 logits over [zn0, zn1, zd0, zd1]: cos = [1, -1, 0, 0] / t, target zn0
    l0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(-2) + 2))
    # anchor 1: cos = [0, 0, 1, 1] / t, target zn1 (cos 0)
    l1 = -math.log(1 / (2 + 2 * math.exp(2)))
    assert info_nce_loss(za, zn, zd, temperature=t).item() == pytest.approx((l0 + l1) / 2,
                                                                          rel=1e-6)


def test_info_nce_uses_distant_tiles_as_negatives():
    za = torch.eye(3)
    zn = torch.eye(3)
    far = info_nce_loss(za, zn, -torch.eye(3), temperature=0.1)
    near = info_nce_loss(za, zn, torch.eye(3), temperature=0.1)  # distant == anchor
    assert near.item() > far.item() + 0.5


def test_statistics_triplet_and_infonce():
    za, zn, zd = _triplets()
    stats = Tile2VecLoss("triplet", margin=2.0).statistics(za, zn, zd)
    assert stats["violated"].item() == 1.0  # only triplet 1: 2 - 1 + 2 > 0
    assert stats["d_an"].item() == pytest.approx(3.0)
    assert stats["d_ad"].item() == pytest.approx(6.0)
    stats = Tile2VecLoss("triplet", margin=5.0).statistics(za, zn, zd)
    assert stats["violated"].item() == 2.0
    # infonce: distances between unit vectors; triplet 0: a = 0 normalises to 0 ->
    # d_an = 1, d_ad = 1 -> counted as violated (d_an >= d_ad)
    stats = Tile2VecLoss("infonce").statistics(za, zn, zd)
    assert stats["violated"].item() == 2.0
    # triplet 1: a = e0, n = (1,2)/sqrt5, d = (1,1)/sqrt2
    d_an1 = math.dist((1, 0), (1 / math.sqrt(5), 2 / math.sqrt(5)))
    d_ad1 = math.dist((1, 0), (1 / math.sqrt(2), 1 / math.sqrt(2)))
    assert stats["d_an"].item() == pytest.approx(1 + d_an1, rel=1e-6)
    assert stats["d_ad"].item() == pytest.approx(1 + d_ad1, rel=1e-6)


def test_objective_dispatch_and_validation():
    za, zn, zd = _triplets()
    obj = Tile2VecLoss("triplet", margin=2.0, l2=0.0)
    assert obj(za, zn, zd).item() == pytest.approx(1.5)
    assert obj.to_dict() == {"name": "triplet", "margin": 2.0, "l2": 0.0, "temperature": 0.1}
    obj = Tile2VecLoss("infonce", temperature=0.5)
    assert obj(za, zn, zd).item() == pytest.approx(
        info_nce_loss(za, zn, zd, temperature=0.5).item())
    with pytest.raises(ValueError):
        Tile2VecLoss("contrastive")
    with pytest.raises(ValueError):
        Tile2VecLoss("infonce", temperature=0.0)
    with pytest.raises(ValueError):
        Tile2VecLoss("triplet", margin=-1.0)


def test_triplet_loss_is_torchs_triplet_margin_loss_plus_the_l2_term():
    g = torch.Generator().manual_seed(0)
    za, zn, zd = (torch.randn(32, 8, generator=g) for _ in range(3))
    for margin in (0.5, 3.0):
        torch.testing.assert_close(
            triplet_loss(za, zn, zd, margin=margin, l2=0.0),
            torch.nn.functional.triplet_margin_loss(za, zn, zd, margin=margin, eps=0.0))
    # margin 0 (refused by torch's function) is allowed here: max(0, 2 - 1) = 1 -> mean 0.5
    assert triplet_loss(*_triplets(), margin=0.0, l2=0.0).item() == pytest.approx(0.5)


def test_masked_pixel_loss_by_hand():
    # two labelled pixels of three classes, two unlabelled; logits (0, log 2, 0) at pixel 0
    # (target 1: p = 2/4) and (0, 0, 0) at pixel 3 (target 2: p = 1/3)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1, 0, 0] = math.log(2)
    logits[0, :, 0, 1] = 50.0
    target = torch.tensor([[[1, IGNORE_INDEX], [IGNORE_INDEX, 2]]])
    expected = (-math.log(0.5) - math.log(1 / 3)) / 2
    assert masked_pixel_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # binary: logit 0 -> BCE log 2 on the labelled pixel, whatever the unlabelled ones hold
    binary = torch.tensor([[[[0.0, 9.0], [9.0, 9.0]]]])
    target = torch.tensor([[[1, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX]]])
    assert masked_pixel_loss(binary, target).item() == pytest.approx(math.log(2))
    assert masked_pixel_loss(binary, target, pos_weight=3.0).item() == pytest.approx(
        3 * math.log(2))
