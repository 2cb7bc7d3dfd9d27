"""Sliding-window grids over a scene (coordinates only).

Used by whole-scene inference (``geoembed embed``, ``geoembed segment``), which reads the
grid's pixels row by row with :func:`geoembed.inference.strips.iter_grid_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rasterio.windows import Window

from geoembed.errors import InputError, RasterError
from geoembed.io.scenes import Scene


def grid_offsets(length: int, tile: int, stride: int, cover_end: bool = False) -> list[int]:
    """Offsets 0, stride, 2*stride... of windows of size ``tile`` that fit in ``length``.

    With ``cover_end`` a last window ending exactly at ``length`` is added when the regular
    offsets leave pixels uncovered (for segmentation, which must cover every pixel).
    """
    if tile > length:
        raise RasterError(f"tile size {tile} px is larger than the scene ({length} px)")
    if stride < 1:
        raise InputError("stride must be at least 1 pixel")
    offsets = list(range(0, length - tile + 1, stride))
    if cover_end and offsets[-1] + tile < length:
        offsets.append(length - tile)
    return offsets


@dataclass(frozen=True)
class WindowGrid:
    """A grid of ``tile`` x ``tile`` windows with their top-left offsets."""

    tile: int
    stride: int
    row_offsets: tuple[int, ...]
    col_offsets: tuple[int, ...]

    @classmethod
    def for_scene(cls, scene: Scene, tile: int, stride: int, cover_end: bool = False
                  ) -> WindowGrid:
        if stride > tile and cover_end:
            raise InputError(f"stride {stride} is larger than the tile ({tile}): pixels would be "
                             "skipped")
        return cls(tile, stride,
                   tuple(grid_offsets(scene.height, tile, stride, cover_end)),
                   tuple(grid_offsets(scene.width, tile, stride, cover_end)))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of windows."""
        return (len(self.row_offsets), len(self.col_offsets))

    @property
    def n_windows(self) -> int:
        return len(self.row_offsets) * len(self.col_offsets)

    def window(self, i: int, j: int) -> Window:
        return Window(self.col_offsets[j], self.row_offsets[i], self.tile, self.tile)
