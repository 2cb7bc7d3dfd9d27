"""Options of ``geoembed train``: one dataclass shared by the CLI, the Python API
(:func:`geoembed.trainers.tile2vec.train`) and the checkpoint.

Torch-free on purpose: ``cli/train.py`` imports it at start-up for its defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from geoembed.errors import InputError

# Same values as geoembed.losses (which imports torch; tests/test_cli_train.py checks them).
DEFAULT_MARGIN = 10.0
DEFAULT_L2 = 0.01
DEFAULT_TEMPERATURE = 0.1
LOSSES = ("triplet", "infonce")
# Same values as geoembed.models.tilenet.POOLINGS and geoembed.io.scenes.NORMALIZATIONS
# (which import torch / rasterio; tests/test_recipe.py checks them).
POOLINGS = ("last", "stages", "center")
NORMALIZATIONS = ("meanstd", "percentile")
#: The paper's tile and neighborhood sizes and triplets per epoch (the ``paper`` preset's).
DEFAULT_TILE_SIZE = 50
DEFAULT_NEIGHBORHOOD = 100
DEFAULT_N_TRIPLETS = 10_000

#: Named recipes: the values of the options left unset (None). ``paper``: Tile2Vec's TileNet
#: (width 64, z 512, 50 px tiles, 50 epochs, the last stage averaged), for a GPU. ``cpu``: a
#: TileNet that trains in about 15 minutes on 2 CPU cores, its embedding the centre cells of
#: every stage (``pooling="center"``: the recipe that did best on real imagery,
#: bench/results/real.md). ``auto`` (the default) is
#: ``paper`` on CUDA and ``cpu`` otherwise. ``n_triplets``, ``tile_size`` and
#: ``neighborhood`` apply to on-the-fly sampling (a store fixes them).
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"z_dim": 64, "base_width": 16, "epochs": 8, "pooling": "center",
            "n_triplets": 4000, "tile_size": 32, "neighborhood": 64},
    "paper": {"z_dim": 512, "base_width": 64, "epochs": 50, "pooling": "last",
              "n_triplets": DEFAULT_N_TRIPLETS, "tile_size": DEFAULT_TILE_SIZE,
              "neighborhood": DEFAULT_NEIGHBORHOOD},
}
#: Preset options that apply in both modes (store and on the fly).
PRESET_MODEL_FIELDS = ("z_dim", "base_width", "epochs", "pooling")

#: Allowed values of the numeric options (the message names the CLI flag).
_RULES: dict[str, Any] = {
    "z_dim": lambda v: v >= 0, "base_width": lambda v: v >= 1,
    "epochs": lambda v: v >= 0, "batch_size": lambda v: v >= 1,
    "lr": lambda v: v > 0, "beta1": lambda v: 0 <= v < 1,
    "margin": lambda v: v >= 0, "l2": lambda v: v >= 0,
    "temperature": lambda v: v > 0, "workers": lambda v: v >= 0,
    "jitter": lambda v: 0 <= v < 1,
    "distant_other_scene": lambda v: 0 <= v <= 1,
}
#: Recipe fields stored in the checkpoint's ``options`` only when not at their defaults, so
#: that runs of earlier versions (which lack them) still resume.
_STORED_IF_SET = {"pooling": "last", "jitter": 0.0, "normalization": "meanstd",
                  "distant_other_scene": None}
#: Fields stored in the checkpoint's ``options`` as they are (compared on resume).
_STORED = ("encoder", "z_dim", "base_width", "epochs", "batch_size", "lr", "beta1", "augment",
           "seed")
#: Data fields that apply only to on-the-fly sampling (a store fixes them).
SCENE_ONLY = ("n_triplets", "tile_size", "neighborhood", "bands", "max_nodata",
              "distant_other_scene")


@dataclass(frozen=True)
class TrainConfig:
    """Options of a Tile2Vec training run (the CLI flags, with the same defaults).

    Attributes:
        n_triplets: triplets per epoch, on-the-fly mode (``None``: the preset's).
        tile_size: tile side in pixels, on-the-fly mode (``None``: the preset's; 50 is the
            paper's).
        neighborhood: max anchor-neighbor centre offset in pixels, on-the-fly mode
            (``None``: the preset's; 100 is the paper's).
        bands: 1-based bands of the scenes, on-the-fly mode (``None``: all).
        allow_no_crs: accept scenes without a CRS (on-the-fly mode).
        max_nodata: largest nodata fraction of a sampled tile, on-the-fly mode (``None``: 0).
        distant_other_scene: probability that a distant tile comes from another scene,
            on-the-fly mode (``None``: 0.5 with several scenes, else 0).
        preset: ``auto`` (``paper`` on CUDA, else ``cpu``), ``cpu`` or ``paper``: the values
            of the options left ``None`` (:data:`PRESETS`); with ``resume`` they come from
            the checkpoint instead.
        encoder: ``"tilenet"`` or a segmentation-models-pytorch encoder name.
        z_dim: embedding size (``None``: the preset's); 0 (smp encoders): no projection,
            the pooled last-stage features (512 for resnet18/34, 2048 for resnet50).
        base_width: TileNet's first-stage width (64 in the paper; ignored by smp encoders;
            ``None``: the preset's).
        pooling: ``last`` (the paper's: the last stage averaged over space), ``stages``
            (every stage averaged, concatenated: a longer embedding with the first stages'
            fine features in it) or ``center`` (every stage's centre cell, concatenated);
            ``None``: the preset's.
        normalization: ``meanstd`` (per-band standardisation with the scenes' statistics)
            or ``percentile`` (their 2-98 % range mapped to [-1, 1], outliers clipped).
        weights: local weights file to start from (``weights_only=True``): the whole
            model's state dict, or for an smp encoder a pretrained backbone (torchvision /
            timm state dict, TorchGeo SSL4EO checkpoint), its first convolution adapted to
            the scene's bands (:mod:`geoembed.models.pretrained`).
        weights_bands: the weights' input band names (``rgb``, ``s2`` or comma-separated
            names; ``None``: rgb for 3-band weights, Sentinel-2 L1C's 13 for 13-band ones).
        epochs: total epochs (``None``: the preset's; with ``resume``: train until this
            many); 0 writes the
            initial model (e.g. a pretrained encoder) as a checkpoint without training.
        batch_size: triplets per batch (per process under torchrun).
        lr: Adam learning rate.
        beta1: Adam's first beta (the paper's betas are (0.5, 0.999)).
        loss: ``"triplet"`` (the paper's) or ``"infonce"`` (in-batch negatives).
        margin: triplet margin.
        l2: weight of the mean per-sample embedding norm (triplet loss).
        temperature: InfoNCE temperature.
        augment: random flips and 90-degree rotations, independently per tile.
        jitter: radiometric jitter: each tile's brightness and contrast changed at random by
            up to this fraction (of the normalised scale; 0: none), independently per tile.
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
    distant_other_scene: float | None = None
    preset: str = "auto"
    encoder: str = "tilenet"
    z_dim: int | None = None
    base_width: int | None = None
    pooling: str | None = None
    normalization: str = "meanstd"
    weights: str | None = None
    weights_bands: str | None = None
    epochs: int | None = None
    batch_size: int = 50
    lr: float = 1e-3
    beta1: float = 0.5
    loss: str = "triplet"
    margin: float = DEFAULT_MARGIN
    l2: float = DEFAULT_L2
    temperature: float = DEFAULT_TEMPERATURE
    augment: bool = True
    jitter: float = 0.0
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
        for key, allowed in (("loss", LOSSES), ("pooling", POOLINGS),
                             ("normalization", NORMALIZATIONS)):
            if getattr(self, key) is not None and getattr(self, key) not in allowed:
                raise InputError(f"unknown {key} {getattr(self, key)!r}; use one of "
                                 f"{', '.join(allowed)}")
        if self.preset not in ("auto", *PRESETS):
            raise InputError(f"unknown preset {self.preset!r}; use auto, "
                             f"{', '.join(PRESETS)}")
        for key, rule in _RULES.items():
            value = getattr(self, key)
            if value is not None and not rule(value):
                raise InputError(f"--{key.replace('_', '-')} {value} is out of range")

    def preset_name(self, device_type: str) -> str:
        """The preset that applies: ``auto`` is ``paper`` on CUDA, else ``cpu``."""
        if self.preset != "auto":
            return self.preset
        return "paper" if device_type == "cuda" else "cpu"

    def resolved(self, device_type: str, saved: TrainConfig | None = None) -> TrainConfig:
        """This config with its unset (None) preset options filled: from ``saved`` (the
        checkpoint's options, when resuming) where it has them, else from the preset
        (model options only: the on-the-fly options are filled by the trainer from
        ``PRESETS[preset]`` when it samples from scenes); ``preset`` names the preset. An
        smp encoder's unset pooling is ``last`` (the presets are TileNet recipes)."""
        name = self.preset_name(device_type)
        values: dict[str, Any] = {}
        if self.encoder != "tilenet" and self.pooling is None and saved is None:
            values["pooling"] = "last"  # presets are TileNet recipes; smp: the usual pooling
        for key, value in PRESETS[name].items():
            if getattr(self, key) is not None or key in values:
                continue
            if saved is not None and getattr(saved, key) is not None:
                values[key] = getattr(saved, key)
            elif key in PRESET_MODEL_FIELDS:
                values[key] = value
        return replace(self, preset=name, **values)

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
        stored.update({key: getattr(self, key) for key, default in _STORED_IF_SET.items()
                       if getattr(self, key) != default})
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
        # pooling is stored when not "last" (the only one of earlier versions)
        options.setdefault("pooling", (ckpt.get("encoder") or {}).get("pooling", "last"))
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in options.items() if k in known}
        kwargs.update({("loss" if k == "name" else k): v for k, v in loss.items()
                       if k in ("name", "margin", "l2", "temperature")})
        if ckpt.get("init_weights") is not None:
            kwargs["weights"] = ckpt["init_weights"]
            kwargs["weights_bands"] = ckpt.get("init_weights_bands")
        return cls(**kwargs)
