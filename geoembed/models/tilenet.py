"""TileNet, the Tile2Vec encoder (Jean et al. 2019): a ResNet-18-like network without a head."""

from __future__ import annotations

import torch
from torch import nn

#: How an encoder turns feature maps into the embedding (see :class:`TileNet`).
POOLINGS = ("last", "stages", "center")


def pool_maps(maps: list[torch.Tensor], pooling: str) -> torch.Tensor:
    """``(B, sum of channels)``: each ``(B, C, h, w)`` map averaged over space (``stages``)
    or taken at its centre cell (``center``: the features of the tile's centre pixel and
    its surroundings, at every scale), concatenated."""
    if pooling == "center":
        return torch.cat([m[:, :, m.shape[2] // 2, m.shape[3] // 2] for m in maps], dim=1)
    return torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a (projected when needed) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class TileNet(nn.Module):
    """3x3 stem at stride 1, five stages of two basic blocks, global average pooling.

    Stage widths are ``base_width * (1, 2, 4, 8)`` and then ``z_dim`` (the paper: base width
    64, so 64/128/256/512/z_dim), strides 1/2/2/2/2. The output is the embedding (no head).

    Args:
        in_channels: number of input bands.
        z_dim: embedding size (512 in the paper).
        base_width: width of the stem and first stage (64 in the paper; smaller for CPUs).
        pooling: ``"last"`` (the paper's): the embedding is the last stage averaged over
            space, ``z_dim`` values; ``"stages"``: every stage's output averaged over space
            and concatenated (``base_width * 15 + z_dim`` values), so that the fine,
            near-spectral features of the first stages reach the embedding too;
            ``"center"``: every stage's centre cell instead of its average (features of
            the centre pixel's surroundings at every scale; for labels of single pixels).
    """

    def __init__(self, in_channels: int, z_dim: int = 512, base_width: int = 64,
                 pooling: str = "last") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
        self.in_channels, self.z_dim, self.base_width = in_channels, z_dim, base_width
        self.pooling = pooling
        widths = [base_width, base_width * 2, base_width * 4, base_width * 8, z_dim]
        strides = [1, 2, 2, 2, 2]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base_width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(base_width),
            nn.ReLU(inplace=True),
        )
        stages, ch = [], base_width
        for width, stride in zip(widths, strides, strict=True):
            stages.append(nn.Sequential(BasicBlock(ch, width, stride), BasicBlock(width, width)))
            ch = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.widths = tuple(widths)

    @property
    def out_dim(self) -> int:
        """The embedding size: ``z_dim``, or every stage's width summed (``stages`` /
        ``center``; pooling has no weights, so it may be changed on a trained model)."""
        return self.z_dim if self.pooling == "last" else sum(self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.pooling == "last":
            return self.pool(self.stages(x)).flatten(1)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return pool_maps(maps, self.pooling)
