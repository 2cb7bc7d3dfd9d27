"""The one training loop: device, bf16 AMP, DDP (torchrun), checkpoint/resume, progress, metrics.

Every trainer in geoembed (Tile2Vec triplets, weakly supervised U-Nets) calls :func:`fit`
with its model, dataset and a *step* function; the loop does the rest.

A step function takes ``(model, batch, to_device)`` and returns a :class:`StepOutput`: the
mean loss of the batch (a tensor to back-propagate), the number of items, and sums over the
batch's items of any metric to report (their epoch means go to ``metrics.csv``).
``to_device`` moves a tensor to the training device (non-blocking, channels-last for
4-D tensors on CUDA).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from geoembed.devices import autocast_context
from geoembed.errors import (
    CheckpointError,
    InputError,
    TrainingDivergedError,
    first_line,
)
from geoembed.io.checkpoint import load_checkpoint, save_checkpoint
from geoembed.trainers.distributed import DistInfo, device_for, setup_distributed
from geoembed.trainers.rundir import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    PLOT_EVERY_S,
    PLOT_NAME,
    plot_history,
    read_metrics,
    write_metrics,
)

__all__ = [  # read_metrics is re-exported: the tests import it here
    "CHECKPOINT_NAME", "METRICS_NAME", "PLOT_NAME", "FitConfig", "FitResult", "StepFn",
    "StepOutput", "fit", "read_metrics", "seed_everything",
]


@dataclass
class StepOutput:
    """What a step function returns for one batch."""

    loss: torch.Tensor
    n: int
    sums: dict[str, torch.Tensor | float] = field(default_factory=dict)


StepFn = Callable[[nn.Module, Any, Callable[[torch.Tensor], torch.Tensor]], StepOutput]


@dataclass
class FitResult:
    """Per-epoch metrics and where the checkpoint is."""

    history: list[dict[str, float]]
    checkpoint: Path
    model: nn.Module


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass(frozen=True)
class FitConfig:
    """Options of the fit loop (every trainer passes its own subset).

    Attributes:
        epochs: total epochs (with ``resume``: train until this many); 0: the initial
            model is saved as the checkpoint (epoch 0), nothing is trained.
        batch_size: items per batch (per process under torchrun).
        lr, betas, weight_decay: Adam's settings.
        workers: DataLoader worker processes.
        seed: seeds shuffling and, per epoch and worker, torch's and NumPy's RNGs.
        device: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda`` or ``mps``.
        amp: bf16 autocast on CUDA.
        resume: continue ``out_dir/checkpoint.pt``: weights, optimizer and epoch.
        quiet: no progress bars.
        drop_last: drop a last short batch (when the dataset has more than one batch).
        throughput_name: the metrics.csv column of items per second.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    workers: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    resume: bool = False
    quiet: bool = False
    drop_last: bool = False
    throughput_name: str = "items_per_s"

    def validate(self) -> None:
        """Raise :class:`InputError` for a negative epoch count or a batch size below 1."""
        if self.epochs < 0:
            raise InputError("--epochs must be at least 0")
        if self.batch_size < 1:
            raise InputError("--batch-size must be at least 1")


@dataclass
class _Run:
    """What one fit call works with (built by :func:`_prepare`)."""

    cfg: FitConfig
    dist: DistInfo
    device: torch.device
    model: nn.Module
    net: nn.Module  # the model, wrapped in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    out_dir: Path
    kind: str
    payload: dict[str, Any]
    options: dict[str, Any]
    start: int = 0  # the first epoch to train (after a resume)
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        """Move a tensor to the device (non-blocking, channels-last 4-D floats on CUDA)."""
        cuda = self.device.type == "cuda"
        t = t.to(self.device, non_blocking=cuda)
        if cuda and t.ndim == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def save(self, epoch: int, history: list[dict[str, float]]) -> None:
        _save(self.checkpoint, self.kind, self.payload, self.options, self.model,
              self.optimizer, epoch, history)


def fit(
    model: nn.Module,
    dataset: Dataset,
    step: StepFn,
    *,
    out_dir: str | os.PathLike,
    kind: str,
    payload: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    config: FitConfig | None = None,
    collate_fn: Callable | None = None,
    on_epoch_end: Callable[[int, nn.Module, dict[str, float]], None] | None = None,
    **overrides: Any,
) -> FitResult:
    """Train ``model`` on ``dataset`` with Adam; write checkpoint, metrics.csv and loss.png.

    Args:
        model: the network (built by the caller after :func:`seed_everything`).
        dataset: a map-style dataset; if it has ``set_epoch(epoch)`` it is called each epoch
            (on-the-fly sampling). Augmentation should draw from torch's RNG, which is
            seeded per epoch (and per worker) so that a resumed run repeats exactly.
        step: computes the loss of one batch (see the module docstring).
        out_dir: run directory (checkpoint.pt, metrics.csv, loss.png).
        kind: checkpoint kind ("tile2vec", "weak", ...).
        payload: what makes the checkpoint self-contained (model config, band statistics,
            bands, tile size...); stored as given (plain Python values and tensors only).
        options: training options, stored and checked against the checkpoint on resume
            (``epochs`` may differ: a resumed run can train longer).
        config: the loop's options (default :class:`FitConfig`).
        collate_fn: the DataLoader's collate function.
        on_epoch_end: called on the main process after each epoch's checkpoint with
            ``(epoch, model, metrics row)``.
        **overrides: :class:`FitConfig` fields replacing ``config``'s (``epochs=3, lr=...``).

    Returns:
        FitResult with the per-epoch history (also in metrics.csv) and the checkpoint path.

    Raises:
        InputError: bad options or an empty dataset. CheckpointError: ``resume`` without a
            usable checkpoint. TrainingDivergedError: a non-finite loss (the checkpoint of
            the last finished epoch is kept).
    """
    cfg = replace(config or FitConfig(), **overrides)
    dist_info = setup_distributed(cfg.device)
    try:
        run = _prepare(model, dataset, cfg, dist_info, Path(out_dir), kind, payload, options,
                       collate_fn)
        return _train(run, dataset, step, on_epoch_end)
    finally:
        if dist_info.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _prepare(model: nn.Module, dataset: Dataset, cfg: FitConfig, dist_info: DistInfo,
             out_dir: Path, kind: str, payload: Mapping[str, Any] | None,
             options: Mapping[str, Any] | None, collate_fn: Callable | None) -> _Run:
    """Check the options, move the model to the device, build the optimizer, restore the
    checkpoint on resume, then wrap the model for DDP and build the loader."""
    device = device_for(dist_info, cfg.device)
    cfg.validate()
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise InputError("the training set is empty")
    cuda = device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last) if cuda else model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                 weight_decay=cfg.weight_decay)
    sampler = DistributedSampler(dataset, num_replicas=dist_info.world, rank=dist_info.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=False)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                        num_workers=cfg.workers, pin_memory=cuda,
                        drop_last=cfg.drop_last and len(dataset) > cfg.batch_size,
                        generator=torch.Generator(), collate_fn=collate_fn,
                        persistent_workers=False)
    run = _Run(cfg, dist_info, device, model, model, optimizer, loader, out_dir, kind,
               dict(payload or {}), dict(options or {}))
    run.start, run.history = _start(run)
    if dist_info.enabled:
        run.net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None)
    return run


def _start(run: _Run) -> tuple[int, list[dict[str, float]]]:
    """The first epoch to train and the history so far (restored on resume)."""
    if not run.cfg.resume:
        if run.dist.main:
            run.out_dir.mkdir(parents=True, exist_ok=True)
        return 0, []
    start, history = _restore(run.checkpoint, run.kind, run.options, run.model, run.optimizer)
    if start >= run.cfg.epochs and run.dist.main and not run.cfg.quiet:
        tqdm.write(f"checkpoint is already at epoch {start} of {run.cfg.epochs}: nothing to do")
    return start, history


def _seed_epoch(run: _Run, dataset: Dataset, epoch: int) -> None:
    """Seed torch, NumPy and the loader per (seed, epoch, rank): resumed runs repeat."""
    seed = run.cfg.seed * 100_003 + epoch + run.dist.rank
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    run.loader.generator.manual_seed(seed)
    run.loader.sampler.set_epoch(epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def _train(run: _Run, dataset: Dataset, step: StepFn,
           on_epoch_end: Callable[[int, nn.Module, dict[str, float]], None] | None
           ) -> FitResult:
    """The epochs: train, then (main process) checkpoint, metrics.csv, loss.png."""
    cfg, start, history = run.cfg, run.start, run.history
    last_plot = -math.inf
    for epoch in range(start, cfg.epochs):
        _seed_epoch(run, dataset, epoch)
        run.net.train()
        row = _run_epoch(run, step, desc=f"epoch {epoch + 1}/{cfg.epochs}")
        row = {"epoch": epoch + 1, **row}
        row[cfg.throughput_name] = row.pop("items_per_s")
        history.append(row)
        if run.dist.main:
            run.save(epoch + 1, history)
            write_metrics(run.out_dir / METRICS_NAME, history)
            # matplotlib costs ~0.5-1 s on a busy CPU: with short epochs, plot at most every
            # PLOT_EVERY_S seconds (and always after the last epoch)
            if epoch + 1 == cfg.epochs or time.perf_counter() - last_plot >= PLOT_EVERY_S:
                plot_history(run.out_dir / PLOT_NAME, history)
                last_plot = time.perf_counter()
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, run.model, row)
        if run.dist.enabled:
            dist.barrier()
    if run.dist.main and start >= cfg.epochs and not run.checkpoint.exists():
        run.save(cfg.epochs, history)
    return FitResult(history=history, checkpoint=run.checkpoint, model=run.model)


def _check_finite(loss: torch.Tensor, desc: str, batch: int, checkpoint: Path) -> None:
    if not torch.isfinite(loss.detach()).all():
        kept = ("the checkpoint of the last finished epoch is kept" if checkpoint.exists()
                else "no epoch finished, so there is no checkpoint")
        raise TrainingDivergedError(
            f"{desc}: the loss became {loss.item()} at batch {batch}; training stopped and "
            f"{kept}. Lower --lr, or check the input's band statistics (constant or huge "
            "bands, nodata not declared)")


def _run_epoch(run: _Run, step: StepFn, *, desc: str) -> dict[str, float]:
    """One epoch of optimizer steps; the epoch means of the loss and the step's sums."""
    t0 = time.perf_counter()
    quiet = run.cfg.quiet or not run.dist.main
    zero = torch.zeros((), device=run.device, dtype=torch.float64)
    loss_sum, sums, count = zero.clone(), {}, 0
    bar = tqdm(run.loader, desc=desc, disable=quiet, leave=False, unit="batch")
    for i, batch in enumerate(bar):
        with autocast_context(run.device, run.cfg.amp):
            out = step(run.net, batch, run.to_device)
        _check_finite(out.loss, desc, i + 1, run.checkpoint)
        run.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        run.optimizer.step()
        loss_sum += out.loss.detach().double() * out.n
        for k, v in out.sums.items():
            sums[k] = sums.get(k, zero) + torch.as_tensor(v, device=run.device).detach().double()
        count += out.n
        if not quiet and (i % 10 == 0):
            bar.set_postfix(loss=f"{(loss_sum / max(count, 1)).item():.4f}")
    bar.close()
    row = _epoch_means(run.dist, {"loss": loss_sum, **sums}, count)
    seconds = time.perf_counter() - t0
    row["seconds"] = seconds
    row["items_per_s"] = row.pop("_count") / seconds if seconds > 0 else math.nan
    return row


def _epoch_means(dist_info: DistInfo, sums: dict[str, torch.Tensor], count: int
                 ) -> dict[str, float]:
    """Means of ``sums`` over the items of every process, and their ``_count``."""
    names = ["loss", *sorted(k for k in sums if k != "loss")]
    totals = torch.stack([*(sums[k] for k in names), torch.full_like(sums["loss"], count)])
    if dist_info.enabled:
        dist.all_reduce(totals)
    values = totals.tolist()
    total = max(values[-1], 1.0)
    return {**{k: v / total for k, v in zip(names, values, strict=False)}, "_count": total}


def _save(path: Path, kind: str, payload: dict, options: dict, model: nn.Module,
          optimizer: torch.optim.Optimizer, epoch: int, history: list[dict]) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_checkpoint(path, {**payload, "state_dict": state, "optimizer": optimizer.state_dict(),
                           "epoch": epoch, "options": options, "history": history}, kind=kind)


def _restore(path: Path, kind: str, options: dict, model: nn.Module,
             optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    if not path.exists():
        raise CheckpointError(f"--resume: {path} does not exist; start without --resume")
    ckpt = load_checkpoint(path, kind=kind)
    saved = ckpt.get("options", {})
    diff = {k: (saved.get(k), v) for k, v in options.items()
            if k != "epochs" and saved.get(k) != v}
    if diff:
        desc = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}"
                         for k, (a, b) in sorted(diff.items()))
        raise CheckpointError(f"--resume: the options do not match the checkpoint ({desc})")
    try:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"--resume: {path} does not fit this model "
                              f"({first_line(exc)})") from None
    return int(ckpt["epoch"]), list(ckpt.get("history", []))
