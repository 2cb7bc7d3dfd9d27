"""Tile2Vec training: an encoder trained with the triplet loss on unlabeled imagery.

:func:`train` is the Python API behind ``geoembed train`` (also ``geoembed.train``). It reads
triplets from a triplet store (``geoembed tile``) or samples them from scenes on the fly,
and runs the shared loop :func:`geoembed.trainers.fit.fit` (device, bf16 AMP on CUDA, DDP under
torchrun, checkpoint every epoch, ``--resume``, metrics.csv, loss.png).

The checkpoint (kind ``"tile2vec"``) holds, besides what ``fit`` adds (``state_dict``,
``optimizer``, ``epoch``, ``options``, ``history``): ``encoder`` (the
:func:`~geoembed.models.encoder_config` dict), ``bands`` (1-based band indexes of the
source rasters), ``band_names`` (their descriptions), ``band_stats``
(:meth:`BandStats.to_dict`), ``tile_size``, ``neighborhood``, ``scenes`` (source raster
paths), ``store`` (store path or None), ``loss`` (:meth:`Tile2VecLoss.to_dict`),
``init_weights``, ``init_weights_bands`` and ``init_band_map`` (the pretrained band each
input band's first-layer filters came from, None: the mean filter) and ``world_size``
(processes under torchrun; ``batch_size`` is per process).

With ``epochs=0`` nothing is trained: the initial encoder (e.g. pretrained weights from
``weights``) is written as an epoch-0 checkpoint that ``embed`` / ``evaluate`` load.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from geoembed.datasets.triplets import OnTheFlyTripletDataset, TripletStoreDataset
from geoembed.devices import resolve_device
from geoembed.errors import InputError, first_line
from geoembed.io.checkpoint import load_checkpoint
from geoembed.io.scenes import band_statistics, open_scenes
from geoembed.losses import DEFAULT_MARGIN, Tile2VecLoss, triplet_distances
from geoembed.models import build_encoder, encoder_config, list_encoders
from geoembed.trainers.fit import FitConfig, FitResult, StepOutput, fit, seed_everything
from geoembed.trainers.rundir import CHECKPOINT_NAME, check_run_dir, clear_run
from geoembed.trainers.tile2vec_config import (
    DEFAULT_N_TRIPLETS,
    DEFAULT_NEIGHBORHOOD,
    DEFAULT_TILE_SIZE,
    PRESET_MODEL_FIELDS,
    PRESETS,
    SCENE_ONLY,
    TrainConfig,
)

__all__ = ["DEFAULT_N_TRIPLETS", "DEFAULT_NEIGHBORHOOD", "DEFAULT_TILE_SIZE", "KIND",
           "TrainConfig", "TripletStep", "embed_triplets", "evaluate_triplets", "train"]

KIND = "tile2vec"


class TripletStep:
    """The ``fit`` step: embed the batch's anchors, neighbors and distant tiles in one
    forward pass, compute the loss, and report ``violated`` / ``d_an`` / ``d_ad`` sums."""

    def __init__(self, objective: Tile2VecLoss) -> None:
        self.objective = objective

    def __call__(self, model: nn.Module, batch: torch.Tensor, to_device: Any) -> StepOutput:
        za, zn, zd = embed_triplets(model, batch, to_device)
        with torch.autocast(za.device.type, enabled=False):  # the loss in float32
            loss = self.objective(za, zn, zd)
        return StepOutput(loss=loss, n=za.shape[0], sums=self.objective.statistics(za, zn, zd))


def embed_triplets(model: nn.Module, batch: torch.Tensor, to_device: Any = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embed a ``(B, 3, C, T, T)`` batch; returns float32 ``(za, zn, zd)``, each ``(B, z)``."""
    if batch.ndim != 5 or batch.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, C, T, T) triplet batch, got {tuple(batch.shape)}")
    b = batch.shape[0]
    x = batch.reshape(b * 3, *batch.shape[2:])
    if to_device is not None:
        x = to_device(x)
    z = model(x).float().reshape(b, 3, -1)
    za, zn, zd = z.unbind(1)
    return za, zn, zd


def _check_encoder(name: str) -> None:
    if name == "tilenet":
        return
    names = list_encoders()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InputError(f"unknown encoder {name!r}{hint}; use 'tilenet' or a "
                         "segmentation-models-pytorch encoder such as resnet18, resnet34, "
                         "efficientnet-b0")


def _check_tile_fits(model: nn.Module, name: str, in_channels: int, tile_size: int) -> None:
    """Embed one blank tile (eval mode, no effect on the weights) to catch tiles too small
    for the encoder (smp's efficientnet needs at least 32 px) before training starts."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, tile_size, tile_size))
    except RuntimeError as exc:
        first = first_line(exc)
        raise InputError(f"encoder {name!r} cannot embed {tile_size} px tiles ({first}); "
                         "use larger tiles or another encoder") from None
    finally:
        model.train(was_training)


def train(store: str | os.PathLike | None = None, out: str | os.PathLike = "run", *,
          scenes: Sequence[str | os.PathLike] | None = None,
          config: TrainConfig | None = None, **options: Any) -> FitResult:
    """Train a Tile2Vec encoder; write ``out/checkpoint.pt``, ``metrics.csv``, ``loss.png``.

    Give either a triplet ``store`` (from ``geoembed tile``) or ``scenes`` to sample
    ``n_triplets`` fresh triplets per epoch from (on-the-fly mode; band statistics are
    estimated from the scenes).

    Args:
        store: triplet store directory.
        out: run directory; refused when it holds files, unless ``overwrite`` or ``resume``.
        scenes: rasters for on-the-fly sampling (instead of ``store``).
        config: the run's options (default :class:`TrainConfig`, the CLI's defaults).
        **options: :class:`TrainConfig` fields replacing ``config``'s (``epochs=3, lr=...``).

    Returns:
        :class:`geoembed.trainers.fit.FitResult` (history, checkpoint path, trained model).

    Raises:
        InputError, CheckpointError, OutputExistsError, DeviceError, RasterError.
    """
    cfg = dataclasses.replace(config or TrainConfig(), **options)
    cfg.validate()
    _check_encoder(cfg.encoder)
    device = resolve_device(cfg.device)  # DeviceError before any work
    out = Path(out)
    check_run_dir(out, cfg.resume, cfg.overwrite)
    given = cfg
    cfg = cfg.resolved(device.type, _saved_config(out) if cfg.resume else None)
    _report_preset(given, cfg, store is None)
    dataset, data_options, data_payload = _dataset(store, scenes, cfg)
    in_channels = len(data_payload["bands"])
    seed_everything(cfg.seed)
    model = build_encoder(cfg.encoder, in_channels, cfg.z_dim, base_width=cfg.base_width,
                          pooling=cfg.pooling, weights=cfg.weights,
                          band_names=data_payload["band_names"], weights_bands=cfg.weights_bands)
    _report_band_map(model, data_payload["band_names"], cfg)
    _check_tile_fits(model, cfg.encoder, in_channels, int(data_payload["tile_size"]))
    objective = Tile2VecLoss(cfg.loss, margin=float(cfg.margin), l2=float(cfg.l2),
                             temperature=float(cfg.temperature))
    payload = {
        **data_payload,
        "encoder": encoder_config(cfg.encoder, in_channels, int(model.z_dim),
                                  int(cfg.base_width), project=cfg.z_dim != 0,
                                  pooling=cfg.pooling),
        "loss": objective.to_dict(),
        "init_weights": str(cfg.weights) if cfg.weights is not None else None,
        "init_weights_bands": cfg.weights_bands,
        "init_band_map": getattr(model, "band_map", None),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }
    if cfg.overwrite:  # only now that everything is checked
        clear_run(out)
    return fit(model, dataset, TripletStep(objective), out_dir=out, kind=KIND, payload=payload,
               options=cfg.checkpoint_options(data_options), config=_fit_config(cfg))


def _report_preset(given: TrainConfig, cfg: TrainConfig, on_the_fly: bool) -> None:
    """Say which options the preset filled (not when resuming: they are the checkpoint's)."""
    if cfg.quiet or cfg.resume or int(os.environ.get("RANK", "0")) != 0:
        return
    preset = PRESETS[cfg.preset]
    keys = [k for k in preset if getattr(given, k) is None
            and (on_the_fly or k in PRESET_MODEL_FIELDS)]
    if keys:
        tqdm.write(f"preset {cfg.preset}: "
                   + ", ".join(f"--{k.replace('_', '-')} {preset[k]}" for k in keys))


def _saved_config(out: Path) -> TrainConfig | None:
    """The options of the run to resume in ``out`` (None when there is no checkpoint yet:
    ``fit`` says so)."""
    path = out / CHECKPOINT_NAME
    if not path.exists():
        return None
    return TrainConfig.from_checkpoint(load_checkpoint(path, KIND))


def _report_band_map(model: nn.Module, band_names: Sequence[str | None],
                     cfg: TrainConfig) -> None:
    """Say which pretrained band each input band's first-layer filters come from."""
    band_map = getattr(model, "band_map", None)
    if band_map is None or cfg.quiet or int(os.environ.get("RANK", "0")) != 0:
        return
    pairs = [f"{i + 1}{f' ({name})' if name else ''} <- {src or 'mean'}"
             for i, (name, src) in enumerate(zip(band_names, band_map, strict=True))]
    tqdm.write(f"--weights: first convolution's bands: {', '.join(pairs)}")


def _fit_config(cfg: TrainConfig) -> FitConfig:
    """The fit loop's options of a Tile2Vec run (Adam's second beta is the paper's 0.999)."""
    return FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                     betas=(float(cfg.beta1), 0.999), workers=cfg.workers, seed=cfg.seed,
                     device=cfg.device, amp=cfg.amp, resume=cfg.resume, quiet=cfg.quiet,
                     throughput_name="triplets_per_s")


def _dataset(store: str | os.PathLike | None, scenes: Sequence | None, cfg: TrainConfig
             ) -> tuple[Dataset, dict, dict]:
    """The training dataset, its options (checked on resume) and its checkpoint payload."""
    if (store is None) == (not scenes):
        raise InputError("give either a triplet STORE or --scenes (on-the-fly sampling), "
                         "not both and not neither")
    if store is None:
        return _scene_dataset(scenes, cfg)
    given = [f"--{name.replace('_', '-')}" for name in SCENE_ONLY
             if getattr(cfg, name) is not None]
    if given:
        raise InputError(f"{', '.join(given)} only apply with --scenes; the store fixes "
                         "them (make another store with `geoembed tile`)")
    ds = TripletStoreDataset(store, augment=cfg.augment, jitter=cfg.jitter,
                             normalization=cfg.normalization)
    path = str(Path(store).resolve())
    meta_scenes = [s["path"] if isinstance(s, dict) else str(s)
                   for s in ds.meta.get("scenes", [])]
    options = {"store": path, "n_triplets": ds.n_triplets, "tile_size": ds.tile_size}
    descriptions = (ds.meta.get("scenes") or [{}])[0]
    descriptions = descriptions.get("descriptions") if isinstance(descriptions, dict) else None
    payload = {"bands": ds.bands, "band_stats": ds.band_stats.to_dict(),
               "band_names": list(descriptions or [None] * len(ds.bands)),
               "tile_size": ds.tile_size, "neighborhood": ds.meta.get("neighborhood"),
               "scenes": meta_scenes, "store": path}
    return ds, options, payload


def _scene_dataset(scenes: Sequence, cfg: TrainConfig) -> tuple[Dataset, dict, dict]:
    """On-the-fly sampling from ``scenes``: band statistics estimated from them."""
    preset = PRESETS[cfg.preset]  # cfg is resolved: its preset is a name, not "auto"
    n_triplets = int(preset["n_triplets"] if cfg.n_triplets is None else cfg.n_triplets)
    tile_size = int(preset["tile_size"] if cfg.tile_size is None else cfg.tile_size)
    neighborhood = int(preset["neighborhood"] if cfg.neighborhood is None
                       else cfg.neighborhood)
    max_nodata = 0.0 if cfg.max_nodata is None else float(cfg.max_nodata)
    if n_triplets < 1 or tile_size < 1 or neighborhood < 0:
        raise InputError("--n-triplets and --tile-size must be positive, --neighborhood >= 0")
    opened = open_scenes([str(s) for s in scenes], cfg.bands, allow_no_crs=cfg.allow_no_crs)
    stats = dataclasses.replace(band_statistics(opened, seed=cfg.seed), mode=cfg.normalization)
    ds = OnTheFlyTripletDataset(opened, n_triplets, tile_size, neighborhood, band_stats=stats,
                                seed=cfg.seed, augment=cfg.augment, jitter=cfg.jitter,
                                max_nodata=max_nodata,
                                distant_other_scene_prob=cfg.distant_other_scene)
    paths = [str(Path(s.path).resolve()) for s in opened]
    bands = list(opened[0].bands)
    options = {"scenes": paths, "n_triplets": n_triplets, "tile_size": tile_size,
               "neighborhood": neighborhood, "bands": bands, "max_nodata": max_nodata}
    payload = {"bands": bands, "band_stats": stats.to_dict(),
               "band_names": list(opened[0].descriptions), "tile_size": tile_size,
               "neighborhood": neighborhood, "scenes": paths, "store": None}
    return ds, options, payload


@torch.no_grad()
def evaluate_triplets(model: nn.Module, dataset: Dataset, *, margin: float = DEFAULT_MARGIN,
                      batch_size: int = 64, device: str | torch.device = "cpu",
                      normalized: bool = False) -> dict[str, float]:
    """Triplet statistics of a frozen encoder (eval mode) on a triplet dataset.

    Returns the mean ``d_an`` and ``d_ad`` (L2; between unit vectors when ``normalized``),
    ``violated`` (share of triplets with ``d_an - d_ad + margin > 0``) and ``accuracy``
    (share with ``d_an < d_ad``), and ``n``.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    d_an_all, d_ad_all = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        za, zn, zd = embed_triplets(model, batch.to(device))
        if normalized:
            za, zn, zd = (torch.nn.functional.normalize(z, dim=1) for z in (za, zn, zd))
        d_an, d_ad = triplet_distances(za, zn, zd)
        d_an_all.append(d_an.cpu())
        d_ad_all.append(d_ad.cpu())
    model.train(was_training)
    d_an, d_ad = torch.cat(d_an_all).double().numpy(), torch.cat(d_ad_all).double().numpy()
    return {
        "n": float(len(d_an)),
        "d_an": float(np.mean(d_an)),
        "d_ad": float(np.mean(d_ad)),
        "violated": float(np.mean(d_an - d_ad + margin > 0)),
        "accuracy": float(np.mean(d_an < d_ad)),
    }
