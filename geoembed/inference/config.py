"""Options of whole-scene inference, shared by the CLI and the Python API (torch-free).

``geoembed embed`` / :func:`geoembed.embed` read an :class:`EmbedConfig`, ``geoembed segment``
/ :func:`geoembed.segment` a :class:`SegmentConfig`. The functions also accept the fields as
keyword arguments (``embed(ckpt, scene, out, stride=25)``), which build the config.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from geoembed.errors import InputError

DTYPES = ("float32", "int8")

C = TypeVar("C", bound="InferenceConfig")


@dataclass(kw_only=True)
class InferenceConfig:
    """Options every sliding-window run shares.

    Attributes:
        batch_size: windows per forward pass (batches span rows of windows).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        amp: bf16 autocast on CUDA.
        prefetch: grid rows read ahead by the background strip reader.
        overwrite: replace existing outputs.
        quiet: no progress bar.
        allow_no_crs: accept scenes without a CRS (outputs in pixel coordinates).
    """

    batch_size: int = 32
    device: str = "auto"
    amp: bool = True
    prefetch: int = 2
    overwrite: bool = False
    quiet: bool = False
    allow_no_crs: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError("--batch-size must be at least 1")
        if self.prefetch < 1:
            raise InputError("--prefetch must be at least 1")


@dataclass(kw_only=True)
class EmbedConfig(InferenceConfig):
    """Options of :func:`geoembed.embed` (see ``geoembed embed --help``).

    Attributes:
        stride: window step in scene pixels, 1..tile (``None``: the checkpoint's tile size).
        max_nodata: windows with a larger nodata fraction are nodata in the output.
        dtype: ``"float32"`` (raw embeddings) or ``"int8"`` (unit vectors, quantised).
        bands: 1-based bands to read instead of the checkpoint's selection.
        blocksize: COG tile size of the outputs (a multiple of 16).
    """

    batch_size: int = 256
    stride: int | None = None
    max_nodata: float = 0.5
    dtype: str = "float32"
    bands: tuple[int, ...] | None = None
    blocksize: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {DTYPES}, not {self.dtype!r}")
        if not 0.0 <= self.max_nodata <= 1.0:
            raise InputError(f"max_nodata must be between 0 and 1, not {self.max_nodata}")
        if self.blocksize < 16 or self.blocksize % 16:
            raise InputError("blocksize must be a multiple of 16")
        if self.stride is not None and self.stride < 1:
            raise InputError("stride must be at least 1 pixel")
        self.bands = tuple(int(b) for b in self.bands) if self.bands else None


@dataclass(kw_only=True)
class SegmentConfig(InferenceConfig):
    """Options of :func:`geoembed.segment` (see ``geoembed segment --help``).

    Attributes:
        stride: window step in pixels (``None``: half the window); overlaps are blended.
        tile: window size (``None``: the training tile size; the U-Net is fully
            convolutional, so larger windows are faster with the same model).
        probabilities: also write ``<stem>_probabilities.tif`` (one band per class).
        reference: a reference class raster on the scene's grid to score against.
        reference_positive, reference_map: how reference values map to the model's classes
            (see :func:`geoembed.inference.reference.reference_mapping`).
        report: where to write the JSON report (default ``<stem>_report.json``).
    """

    stride: int | None = None
    tile: int | None = None
    probabilities: bool = False
    reference: str | os.PathLike | None = None
    reference_positive: Sequence[Any] | None = None
    reference_map: Mapping[Any, Any] | None = None
    report: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tile is not None and self.tile < 1:
            raise InputError("--tile must be at least 1")
        if self.reference is None and (self.reference_positive is not None
                                       or self.reference_map is not None):
            raise InputError("--reference-positive / --reference-map need --reference")


def resolve_config(cls: type[C], config: C | None, options: Mapping[str, Any]) -> C:
    """``config`` with ``options`` (keyword arguments of the public function) applied.

    Raises:
        TypeError: an option that is not a field of ``cls``.
    """
    if config is None:
        return cls(**options)
    if not isinstance(config, cls):
        raise TypeError(f"config must be a {cls.__name__}, not {type(config).__name__}")
    return dataclasses.replace(config, **options) if options else config
