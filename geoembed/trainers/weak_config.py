"""Options of ``geoembed weak train``: one dataclass shared by the CLI, the Python API
(:func:`geoembed.trainers.weak.weak_train`) and the checkpoint.

Torch-free on purpose: ``cli/weak.py`` imports it at start-up for its defaults and help.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geoembed.errors import InputError
from geoembed.models.unet_options import DEFAULT_DEPTH, DEFAULT_ENCODER, LABEL_TYPES

DEFAULT_TILE_SIZE = 50
#: Default epochs per label type. The paper trained 200 (image) / 50 (pixel) epochs on a
#: GPU; these are CPU-sized defaults (raise them on a GPU). A pixel epoch visits each point
#: once, an image epoch each labelled tile once, a dense epoch each labelled tile once.
DEFAULT_EPOCHS = {"image": 60, "pixel": 60, "dense": 20}
#: Fields that must match the checkpoint on ``resume`` (besides the resolved ``labels``,
#: ``bands``, ``scenes``, ``positive`` and ``decoder_channels``; ``epochs`` may grow).
_STORED = ("label_type", "label_column", "tile_size", "encoder", "encoder_depth",
           "batch_size", "lr", "max_labels", "seed")


@dataclass(frozen=True)
class WeakTrainConfig:
    """Options of a weak-label training run (the CLI flags, with the same defaults).

    Attributes:
        label_type: ``"image"``, ``"pixel"`` or ``"dense"``.
        label_column: the vector column holding the class (image / pixel labels).
        positive: label value(s) of the positive class of a one-vs-rest binary model;
            ``None``: every distinct value is a class.
        tile_size: training tile side in pixels (the paper's 50).
        encoder, encoder_depth, decoder_channels: the U-Net (smp encoder name, no
            pretrained weights; ``None`` decoder channels: halving down to 16).
        epochs: ``None``: :data:`DEFAULT_EPOCHS` of the label type (see :attr:`n_epochs`).
        batch_size, lr: tiles per batch, Adam learning rate.
        max_labels: a random (seeded) subset of N labelled tiles / points / label cells.
        seed, device, amp, workers: run settings (``amp``: bf16 autocast on CUDA).
        resume, overwrite, quiet: continue / replace the run directory; no progress output.
        bands: 1-based band indexes to read (``None``: all).
        allow_no_crs: accept scenes without a CRS.
    """

    label_type: str = "image"
    label_column: str | None = None
    positive: Any = None
    tile_size: int = DEFAULT_TILE_SIZE
    encoder: str = DEFAULT_ENCODER
    encoder_depth: int = DEFAULT_DEPTH
    decoder_channels: Sequence[int] | None = None
    epochs: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    max_labels: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    bands: Sequence[int] | None = None
    allow_no_crs: bool = False

    @property
    def n_epochs(self) -> int:
        """The epochs to train: ``epochs`` or the label type's default."""
        return DEFAULT_EPOCHS[self.label_type] if self.epochs is None else int(self.epochs)

    def validate(self) -> None:
        """Check the options that need no data.

        Raises:
            InputError: unknown label type, a count below its minimum, a non-positive
                learning rate, or image / pixel labels without a label column.
        """
        if self.label_type not in LABEL_TYPES:
            raise InputError(f"--label-type {self.label_type!r}: use one of "
                             f"{', '.join(LABEL_TYPES)}")
        counts = {"tile_size": self.tile_size, "epochs": self.n_epochs,
                  "batch_size": self.batch_size, "encoder_depth": self.encoder_depth,
                  "max_labels": self.max_labels, "workers": self.workers}
        for key, value in counts.items():
            low = 0 if key == "workers" else 1
            if value is not None and value < low:
                raise InputError(f"--{key.replace('_', '-')} {value} is out of range "
                                 f"(at least {low})")
        if self.lr <= 0:
            raise InputError(f"--lr {self.lr} must be positive")
        if self.label_type != "dense" and not self.label_column:
            raise InputError(f"--label-type {self.label_type} needs --label-column (the vector "
                             "column holding the class)")

    def checkpoint_options(self, *, labels: Any, positive: list[str] | None,
                           decoder_channels: list[int], bands: list[int],
                           scenes: list[str]) -> dict[str, Any]:
        """The options stored in the checkpoint and compared on ``resume``.

        Args:
            labels: where the labels came from (a path, a list of paths, "GeoDataFrame").
            positive: the positive label values as the class encoding resolved them.
            decoder_channels: the model's decoder widths (defaults resolved).
            bands, scenes: the bands read and the scene paths.
        """
        stored = {key: getattr(self, key) for key in _STORED}
        stored.update(tile_size=int(self.tile_size), encoder_depth=int(self.encoder_depth),
                      batch_size=int(self.batch_size), lr=float(self.lr), seed=int(self.seed))
        return {**stored, "labels": labels, "positive": positive,
                "decoder_channels": decoder_channels, "bands": bands, "scenes": scenes,
                "epochs": self.n_epochs}
