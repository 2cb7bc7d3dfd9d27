"""Tile2Vec training: an encoder trained with the triplet loss on unlabeled imagery.

:func:`train` is the Python API behind ``geoembed train`` (also ``geoembed.train``). It reads
triplets from a triplet store (``geoembed tile``) or samples them from scenes on the fly,
and runs the shared loop :func:`geoembed.trainers.fit.fit` (device, bf16 AMP on CUDA, DDP under
torchrun, checkpoint every epoch, ``--resume``, metrics.csv, loss.png).

The checkpoint (kind ``"tile2vec"``) holds, besides what ``fit`` adds (``state_dict``,
``optimizer``, ``epoch``, ``options``, ``history``): ``encoder`` (the
:func:`~geoembed.models.encoder_config` dict), ``bands`` (1-based band indexes of the
source rasters), ``band_stats`` (:meth:`BandStats.to_dict`), ``tile_size``,
``neighborhood``, ``scenes`` (source raster paths), ``store`` (store path or None),
``loss`` (:meth:`Tile2VecLoss.to_dict`), ``init_weights`` and ``world_size`` (processes
under torchrun; ``batch_size`` is per process).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from geoembed.errors import InputError, first_line
from geoembed.losses import DEFAULT_L2, DEFAULT_MARGIN, DEFAULT_TEMPERATURE, LOSSES, Tile2VecLoss
from geoembed.trainers.fit import (
    FitResult,
    StepOutput,
    check_run_dir,
    clear_run,
    fit,
    seed_everything,
)

KIND = "tile2vec"
#: Defaults of the on-the-fly mode (the paper's tile and neighborhood sizes).
DEFAULT_TILE_SIZE = 50
DEFAULT_NEIGHBORHOOD = 100
DEFAULT_N_TRIPLETS = 10_000


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
    from geoembed.models import list_encoders

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


def _check_numbers(**values: float) -> None:
    rules = {
        "z_dim": lambda v: v >= 1, "base_width": lambda v: v >= 1,
        "epochs": lambda v: v >= 1, "batch_size": lambda v: v >= 1,
        "lr": lambda v: v > 0, "beta1": lambda v: 0 <= v < 1,
        "margin": lambda v: v >= 0, "l2": lambda v: v >= 0,
        "temperature": lambda v: v > 0, "workers": lambda v: v >= 0,
    }
    for key, value in values.items():
        if not rules[key](value):
            raise InputError(f"--{key.replace('_', '-')} {value} is out of range")


def train(
    store: str | os.PathLike | None = None,
    out: str | os.PathLike = "run",
    *,
    scenes: Sequence[str | os.PathLike] | None = None,
    n_triplets: int | None = None,
    tile_size: int | None = None,
    neighborhood: int | None = None,
    bands: Sequence[int] | None = None,
    allow_no_crs: bool = False,
    max_nodata: float | None = None,
    encoder: str = "tilenet",
    z_dim: int = 512,
    base_width: int = 64,
    epochs: int = 50,
    batch_size: int = 50,
    lr: float = 1e-3,
    beta1: float = 0.5,
    loss: str = "triplet",
    margin: float = DEFAULT_MARGIN,
    l2: float = DEFAULT_L2,
    temperature: float = DEFAULT_TEMPERATURE,
    augment: bool = True,
    workers: int = 0,
    seed: int = 0,
    device: str = "auto",
    amp: bool = True,
    weights: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
) -> FitResult:
    """Train a Tile2Vec encoder; write ``out/checkpoint.pt``, ``metrics.csv``, ``loss.png``.

    Give either a triplet ``store`` (from ``geoembed tile``) or ``scenes`` to sample
    ``n_triplets`` fresh triplets per epoch from (on-the-fly mode; band statistics are
    estimated from the scenes).

    Args:
        store: triplet store directory.
        out: run directory; refused when it holds files, unless ``overwrite`` or ``resume``.
        scenes: rasters for on-the-fly sampling (instead of ``store``).
        n_triplets: triplets per epoch in on-the-fly mode (default 10,000).
        tile_size: tile side in pixels, on-the-fly mode (default 50, the paper's).
        neighborhood: max anchor-neighbor centre offset in pixels, on-the-fly mode
            (default 100, the paper's).
        bands: 1-based bands of the scenes to use (on-the-fly mode; default all).
        allow_no_crs: accept scenes without a CRS (on-the-fly mode).
        max_nodata: largest nodata fraction of a sampled tile (on-the-fly mode; default 0).
        encoder: ``"tilenet"`` or a segmentation-models-pytorch encoder name.
        z_dim: embedding size.
        base_width: TileNet's first-stage width (64 in the paper; ignored by smp encoders).
        epochs: total epochs (with ``resume``: train until this many).
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
        weights: local state-dict file to start from.
        resume: continue ``out/checkpoint.pt`` (weights, optimizer, epoch); the options
            must match the checkpoint's except ``epochs``.
        overwrite: replace an existing run in ``out``.
        quiet: no progress bars.

    Returns:
        :class:`geoembed.trainers.fit.FitResult` (history, checkpoint path, trained model).

    Raises:
        InputError, CheckpointError, OutputExistsError, DeviceError, RasterError.
    """
    from geoembed.devices import resolve_device
    from geoembed.models import build_encoder, encoder_config

    if loss not in LOSSES:
        raise InputError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}")
    _check_numbers(z_dim=z_dim, base_width=base_width, epochs=epochs, batch_size=batch_size,
                   lr=lr, beta1=beta1, margin=margin, l2=l2, temperature=temperature,
                   workers=workers)
    _check_encoder(encoder)
    resolve_device(device)  # DeviceError before any work
    out = Path(out)
    check_run_dir(out, resume, overwrite)

    dataset, data_options, data_payload = _dataset(
        store, scenes=scenes, n_triplets=n_triplets, tile_size=tile_size,
        neighborhood=neighborhood, bands=bands, allow_no_crs=allow_no_crs,
        max_nodata=max_nodata, augment=augment, seed=seed)

    objective = Tile2VecLoss(loss, margin=float(margin), l2=float(l2),
                             temperature=float(temperature))
    in_channels = len(data_payload["bands"])
    seed_everything(seed)
    model = build_encoder(encoder, in_channels, z_dim, base_width=base_width, weights=weights)
    _check_tile_fits(model, encoder, in_channels, int(data_payload["tile_size"]))
    options = {
        **data_options, "encoder": encoder, "z_dim": int(z_dim), "base_width": int(base_width),
        "loss": objective.to_dict(), "epochs": int(epochs), "batch_size": int(batch_size),
        "lr": float(lr), "beta1": float(beta1), "augment": bool(augment), "seed": int(seed),
    }
    payload = {
        **data_payload,
        "encoder": encoder_config(encoder, in_channels, int(z_dim), int(base_width)),
        "loss": objective.to_dict(),
        "init_weights": str(weights) if weights is not None else None,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }
    if overwrite:  # only now that everything is checked
        clear_run(out)
    return fit(model, dataset, TripletStep(objective), out_dir=out, kind=KIND, payload=payload,
               options=options, epochs=epochs, batch_size=batch_size, lr=lr,
               betas=(float(beta1), 0.999), workers=workers, seed=seed, device=device,
               amp=amp, resume=resume, quiet=quiet,
               throughput_name="triplets_per_s")


def _dataset(store: str | os.PathLike | None, *, scenes: Sequence | None,
             n_triplets: int | None, tile_size: int | None, neighborhood: int | None,
             bands: Sequence[int] | None, allow_no_crs: bool, max_nodata: float | None,
             augment: bool, seed: int) -> tuple[Dataset, dict, dict]:
    """The training dataset, its options (checked on resume) and its checkpoint payload."""
    from geoembed.datasets.triplets import OnTheFlyTripletDataset, TripletStoreDataset

    if (store is None) == (not scenes):
        raise InputError("give either a triplet STORE or --scenes (on-the-fly sampling), "
                         "not both and not neither")
    if store is not None:
        given = [name for name, v in (("--n-triplets", n_triplets), ("--tile-size", tile_size),
                                      ("--neighborhood", neighborhood), ("--bands", bands),
                                      ("--max-nodata", max_nodata))
                 if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} only apply with --scenes; the store fixes "
                             "them (make another store with `geoembed tile`)")
        ds = TripletStoreDataset(store, augment=augment)
        path = str(Path(store).resolve())
        meta_scenes = [s["path"] if isinstance(s, dict) else str(s)
                       for s in ds.meta.get("scenes", [])]
        options = {"store": path, "n_triplets": ds.n_triplets, "tile_size": ds.tile_size}
        payload = {"bands": ds.bands, "band_stats": ds.band_stats.to_dict(),
                   "tile_size": ds.tile_size, "neighborhood": ds.meta.get("neighborhood"),
                   "scenes": meta_scenes, "store": path}
        return ds, options, payload

    from geoembed.io.scenes import band_statistics, open_scenes

    n_triplets = DEFAULT_N_TRIPLETS if n_triplets is None else int(n_triplets)
    tile_size = DEFAULT_TILE_SIZE if tile_size is None else int(tile_size)
    neighborhood = DEFAULT_NEIGHBORHOOD if neighborhood is None else int(neighborhood)
    max_nodata = 0.0 if max_nodata is None else float(max_nodata)
    if n_triplets < 1 or tile_size < 1 or neighborhood < 0:
        raise InputError("--n-triplets and --tile-size must be positive, --neighborhood >= 0")
    opened = open_scenes([str(s) for s in scenes], bands, allow_no_crs=allow_no_crs)
    stats = band_statistics(opened, seed=seed)
    ds = OnTheFlyTripletDataset(opened, n_triplets, tile_size, neighborhood, band_stats=stats,
                                seed=seed, augment=augment, max_nodata=max_nodata)
    paths = [str(Path(s.path).resolve()) for s in opened]
    options = {"scenes": paths, "n_triplets": n_triplets, "tile_size": tile_size,
               "neighborhood": neighborhood, "bands": list(opened[0].bands),
               "max_nodata": float(max_nodata)}
    payload = {"bands": list(opened[0].bands), "band_stats": stats.to_dict(),
               "tile_size": tile_size, "neighborhood": neighborhood, "scenes": paths,
               "store": None}
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
        d_an_all.append((za - zn).norm(dim=1).cpu())
        d_ad_all.append((za - zd).norm(dim=1).cpu())
    model.train(was_training)
    d_an, d_ad = torch.cat(d_an_all).double().numpy(), torch.cat(d_ad_all).double().numpy()
    return {
        "n": float(len(d_an)),
        "d_an": float(np.mean(d_an)),
        "d_ad": float(np.mean(d_ad)),
        "violated": float(np.mean(d_an - d_ad + margin > 0)),
        "accuracy": float(np.mean(d_an < d_ad)),
    }
