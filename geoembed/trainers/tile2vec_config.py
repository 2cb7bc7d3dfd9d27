"""Options of ``geoembed train``: one dataclass shared by the CLI, the Python API
(:func:`geoembed.trainers.tile2vec.train`) and the checkpoint.

Torch-free on purpose: ``cli/train.py`` imports it at start-up for its defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from geoembed.errors import InputError

# Same values as geoembed.losses (which imports torch; tests/test_cli_train.py checks them).
DEFAULT_MARGIN = 10.0
DEFAULT_L2 = 0.01
DEFAULT_TEMPERATURE = 0.1
LOSSES = ("triplet", "infonce")
#: Defaults of the on-the-fly mode (the paper's tile and neighborhood sizes).
DEFAULT_TILE_SIZE = 50
DEFAULT_NEIGHBORHOOD = 100
DEFAULT_N_TRIPLETS = 10_000

#: Allowed values of the numeric options (the message names the CLI flag).
_RULES = {
    "z_dim": lambda v: v >= 0, "base_width": lambda v: v >= 1,
    "epochs": lambda v: v >= 0, "batch_size": lambda v: v >= 1,
    "lr": lambda v: v > 0, "beta1": lambda v: 0 <= v < 1,
    "margin": lambda v: v >= 0, "l2": lambda v: v >= 0,
    "temperature": lambda v: v > 0, "workers": lambda v: v >= 0,
}
#: Fields stored in the checkpoint's ``options`` as they are (compared on resume).
_STORED = ("encoder", "z_dim", "base_width", "epochs", "batch_size", "lr", "beta1", "augment",
           "seed")
#: Data fields that apply only to on-the-fly sampling (a store fixes them).
SCENE_ONLY = ("n_triplets", "tile_size", "neighborhood", "bands", "max_nodata")


@dataclass(frozen=True)
class TrainConfig:
    """Options of a Tile2Vec training run (the CLI flags, with the same defaults).

    Attributes:
        n_triplets: triplets per epoch, on-the-fly mode (``None``: 10,000).
        tile_size: tile side in pixels, on-the-fly mode (``None``: 50, the paper's).
        neighborhood: max anchor-neighbor centre offset in pixels, on-the-fly mode
            (``None``: 100, the paper's).
        bands: 1-based bands of the scenes, on-the-fly mode (``None``: all).
        allow_no_crs: accept scenes without a CRS (on-the-fly mode).
        max_nodata: largest nodata fraction of a sampled tile, on-the-fly mode (``None``: 0).
        encoder: ``"tilenet"`` or a segmentation-models-pytorch encoder name.
        z_dim: embedding size; 0 (smp encoders): no projection, the pooled last-stage
            features (512 for resnet18/34, 2048 for resnet50).
        base_width: TileNet's first-stage width (64 in the paper; ignored by smp encoders).
        weights: local weights file to start from (``weights_only=True``): the whole
            model's state dict, or for an smp encoder a pretrained backbone (torchvision /
            timm state dict, TorchGeo SSL4EO checkpoint), its first convolution adapted to
            the scene's bands (:mod:`geoembed.models.pretrained`).
        weights_bands: the weights' input band names (``rgb``, ``s2`` or comma-separated
            names; ``None``: rgb for 3-band weights, Sentinel-2 L1C's 13 for 13-band ones).
        epochs: total epochs (with ``resume``: train until this many); 0 writes the
            initial model (e.g. a pretrained encoder) as a checkpoint without training.
        batch_size: triplets per batch (per process under torchrun).
        lr: Adam learning rate.
        beta1: Adam's first beta (the paper's betas are (0.5, 0.999)).
        loss: ``"triplet"`` (the paper's) or ``"infonce"`` (in-batch negatives).
        margin: triplet margin.
        l2: weight of the mean per-sample embedding norm (triplet loss).
        temperature: InfoNCE temperature.
        augment: random flips and 90-degree rotations, independently per tile.
        workers: DataLoader worker processes.
        seed: seeds weights, shuffling, augmentation and on-the-fly sampling.
        device: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda`` or ``mps``.
        amp: bf16 autocast on CUDA.
        resume: continue ``out/checkpoint.pt`` (weights, optimizer, epoch); the options
            must match the checkpoint's except ``epochs``.
        overwrite: replace an existing run in ``out``.
        quiet: no progress bars.
    """

    n_triplets: int | None = None
    tile_size: int | None = None
    neighborhood: int | None = None
    bands: Sequence[int] | None = None
    allow_no_crs: bool = False
    max_nodata: float | None = None
    encoder: str = "tilenet"
    z_dim: int = 512
    base_width: int = 64
    weights: str | None = None
    weights_bands: str | None = None
    epochs: int = 50
    batch_size: int = 50
    lr: float = 1e-3
    beta1: float = 0.5
    loss: str = "triplet"
    margin: float = DEFAULT_MARGIN
    l2: float = DEFAULT_L2
    temperature: float = DEFAULT_TEMPERATURE
    augment: bool = True
    workers: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False

    def validate(self) -> None:
        """Check the options that need no data (the encoder name is checked by the trainer).

        Raises:
            InputError: an unknown loss or a number out of range.
        """
        if self.weights_bands is not None and self.weights is None:
            raise InputError("--weights-bands applies only with --weights")
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        for key, rule in _RULES.items():
            value = getattr(self, key)
            if not rule(value):
                raise InputError(f"--{key.replace('_', '-')} {value} is out of range")

    def loss_dict(self) -> dict[str, float | str]:
        """The objective as stored in checkpoints (``Tile2VecLoss.to_dict``)."""
        return {"name": self.loss, "margin": float(self.margin), "l2": float(self.l2),
                "temperature": float(self.temperature)}

    def checkpoint_options(self, data_options: Mapping[str, Any]) -> dict[str, Any]:
        """The checkpoint's ``options`` (compared on ``resume``, ``epochs`` excepted).

        Args:
            data_options: the resolved data source: ``store`` or ``scenes`` paths,
                ``n_triplets``, ``tile_size`` and, on the fly, ``neighborhood``, ``bands``,
                ``max_nodata``.
        """
        stored = {key: getattr(self, key) for key in _STORED}
        stored.update(z_dim=int(self.z_dim), base_width=int(self.base_width),
                      epochs=int(self.epochs), batch_size=int(self.batch_size),
                      lr=float(self.lr), beta1=float(self.beta1), augment=bool(self.augment),
                      seed=int(self.seed))
        return {**data_options, **stored, "loss": self.loss_dict()}

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> TrainConfig:
        """The options a checkpoint was trained with (run settings such as ``device`` and
        ``workers`` are not stored and take their defaults)."""
        options = dict(ckpt.get("options", {}))
        loss = options.pop("loss", {}) or {}
        if options.get("store") is not None:  # a store fixes the data options
            options = {k: v for k, v in options.items() if k not in SCENE_ONLY}
        elif options.get("bands") is not None:
            options["bands"] = tuple(options["bands"])
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in options.items() if k in known}
        kwargs.update({("loss" if k == "name" else k): v for k, v in loss.items()
                       if k in ("name", "margin", "l2", "temperature")})
        if ckpt.get("init_weights") is not None:
            kwargs["weights"] = ckpt["init_weights"]
            kwargs["weights_bands"] = ckpt.get("init_weights_bands")
        return cls(**kwargs)
