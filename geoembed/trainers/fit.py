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

import csv
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from geoembed.devices import autocast_context, resolve_device
from geoembed.errors import (
    CheckpointError,
    InputError,
    OutputExistsError,
    TrainingDivergedError,
    first_line,
)
from geoembed.io.checkpoint import load_checkpoint, save_checkpoint

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
PLOT_NAME = "loss.png"
#: Least seconds between two redraws of loss.png during training.
PLOT_EVERY_S = 30.0


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


def is_main_process() -> bool:
    """True outside torchrun and on rank 0 under it (the process that writes files)."""
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0


def check_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a run directory that cannot be used: a file, ``--resume`` without a
    checkpoint, or an existing run without ``--overwrite`` (nothing is deleted here)."""
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; --out needs a run directory")
    if resume:
        if not (out / CHECKPOINT_NAME).is_file():
            raise CheckpointError(f"--resume: {out / CHECKPOINT_NAME} does not exist; "
                                  "start without --resume")
        return
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace its run, or "
                                "--resume to continue it")


def clear_run(out: Path) -> None:
    """Remove a previous run's files for ``--overwrite`` (other files in ``out`` stay)."""
    if is_main_process():
        for name in (CHECKPOINT_NAME, METRICS_NAME, PLOT_NAME):
            (out / name).unlink(missing_ok=True)


@dataclass
class _Dist:
    enabled: bool = False
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_name: str) -> _Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and device_name in ("auto", "cuda")
        if use_nccl:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
        owns = True
    return _Dist(True, rank, world, local_rank, owns)


def _device_for(dist_info: _Dist, device_name: str) -> torch.device:
    device = resolve_device(device_name)
    if dist_info.enabled and device.type == "cuda":
        return torch.device("cuda", dist_info.local_rank)
    return device


def fit(
    model: nn.Module,
    dataset: Dataset,
    step: StepFn,
    *,
    out_dir: str | os.PathLike,
    kind: str,
    payload: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    workers: int = 0,
    seed: int = 0,
    device: str = "auto",
    amp: bool = True,
    resume: bool = False,
    quiet: bool = False,
    drop_last: bool = False,
    throughput_name: str = "items_per_s",
    collate_fn: Callable | None = None,
    on_epoch_end: Callable[[int, nn.Module, dict[str, float]], None] | None = None,
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
        resume: continue from ``out_dir/checkpoint.pt``: weights, optimizer and epoch.

    Returns:
        FitResult with the per-epoch history (also in metrics.csv) and the checkpoint path.
    """
    out_dir = Path(out_dir)
    dist_info = _setup_distributed(device)
    try:
        return _fit(model, dataset, step, out_dir=out_dir, kind=kind, payload=dict(payload or {}),
                    options=dict(options or {}), epochs=epochs, batch_size=batch_size, lr=lr,
                    betas=betas, weight_decay=weight_decay, workers=workers, seed=seed,
                    device_name=device, amp=amp, resume=resume, quiet=quiet,
                    drop_last=drop_last, throughput_name=throughput_name,
                    collate_fn=collate_fn, on_epoch_end=on_epoch_end, dist_info=dist_info)
    finally:
        if dist_info.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _fit(model: nn.Module, dataset: Dataset, step: StepFn, *, out_dir: Path, kind: str,
         payload: dict[str, Any], options: dict[str, Any], epochs: int, batch_size: int,
         lr: float, betas: tuple[float, float], weight_decay: float, workers: int, seed: int,
         device_name: str, amp: bool, resume: bool, quiet: bool, drop_last: bool,
         throughput_name: str, collate_fn: Callable | None,
         on_epoch_end: Callable | None, dist_info: _Dist) -> FitResult:
    device = _device_for(dist_info, device_name)
    if epochs < 1:
        raise InputError("--epochs must be at least 1")
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise InputError("the training set is empty")
    ckpt_path = out_dir / CHECKPOINT_NAME
    cuda = device.type == "cuda"
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=betas,
                                 weight_decay=weight_decay)
    start_epoch, history = 0, []
    if resume:
        start_epoch, history = _restore(ckpt_path, kind, options, model, optimizer)
        if start_epoch >= epochs and dist_info.main and not quiet:
            tqdm.write(f"checkpoint is already at epoch {start_epoch} of {epochs}: nothing to do")
    elif dist_info.main:
        out_dir.mkdir(parents=True, exist_ok=True)

    net: nn.Module = model
    if dist_info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None)

    sampler = DistributedSampler(dataset, num_replicas=dist_info.world, rank=dist_info.rank,
                                 shuffle=True, seed=seed, drop_last=False)
    generator = torch.Generator()
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=cuda, drop_last=drop_last and len(dataset) > batch_size,
                        generator=generator, collate_fn=collate_fn,
                        persistent_workers=False)

    def to_device(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device, non_blocking=cuda)
        if cuda and t.ndim == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    last_plot = -math.inf
    for epoch in range(start_epoch, epochs):
        epoch_seed = seed * 100_003 + epoch
        torch.manual_seed(epoch_seed + dist_info.rank)
        np.random.seed((epoch_seed + dist_info.rank) % (2**32))
        generator.manual_seed(epoch_seed + dist_info.rank)
        sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        net.train()
        row = _run_epoch(net, loader, step, to_device, device, amp, optimizer,
                         desc=f"epoch {epoch + 1}/{epochs}",
                         quiet=quiet or not dist_info.main, dist_info=dist_info)
        row = {"epoch": epoch + 1, **row}
        row[throughput_name] = row.pop("items_per_s")
        history.append(row)
        if dist_info.main:
            _save(ckpt_path, kind, payload, options, model, optimizer, epoch + 1, history)
            _write_metrics(out_dir / METRICS_NAME, history)
            # matplotlib costs ~0.5-1 s on a busy CPU: with short epochs, plot at most every
            # PLOT_EVERY_S seconds (and always after the last epoch)
            if epoch + 1 == epochs or time.perf_counter() - last_plot >= PLOT_EVERY_S:
                _plot_history(out_dir / PLOT_NAME, history)
                last_plot = time.perf_counter()
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, model, row)
        if dist_info.enabled:
            dist.barrier()
    if dist_info.main and start_epoch >= epochs and not ckpt_path.exists():
        _save(ckpt_path, kind, payload, options, model, optimizer, epochs, history)
    return FitResult(history=history, checkpoint=ckpt_path, model=model)


def _run_epoch(net: nn.Module, loader: DataLoader, step: StepFn, to_device: Callable,
               device: torch.device, amp: bool, optimizer: torch.optim.Optimizer, *,
               desc: str, quiet: bool, dist_info: _Dist) -> dict[str, float]:
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    bar = tqdm(loader, desc=desc, disable=quiet, leave=False, unit="batch")
    for i, batch in enumerate(bar):
        with autocast_context(device, amp):
            out = step(net, batch, to_device)
        loss = out.loss
        if not torch.isfinite(loss.detach()).all():
            raise TrainingDivergedError(
                f"{desc}: the loss became {loss.item()} at batch {i + 1}; training stopped and "
                "the checkpoint of the last finished epoch is kept. Lower --lr, or check the "
                "input's band statistics (constant or huge bands, nodata not declared)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().double() * out.n
        for k, v in out.sums.items():
            v = torch.as_tensor(v, device=device).detach().double()
            sums[k] = sums.get(k, torch.zeros((), device=device, dtype=torch.float64)) + v
        count += out.n
        if not quiet and (i % 10 == 0):
            bar.set_postfix(loss=f"{(loss_sum / max(count, 1)).item():.4f}")
    bar.close()
    names = sorted(sums)
    totals = torch.stack([loss_sum, *[sums[k] for k in names],
                          torch.tensor(float(count), device=device, dtype=torch.float64)])
    if dist_info.enabled:
        dist.all_reduce(totals)
    total_count = max(float(totals[-1].item()), 1.0)
    seconds = time.perf_counter() - t0
    row = {"loss": float(totals[0].item()) / total_count}
    for j, k in enumerate(names, start=1):
        row[k] = float(totals[j].item()) / total_count
    row["seconds"] = seconds
    row["items_per_s"] = total_count / seconds if seconds > 0 else math.nan
    return row


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


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    fields: list[str] = []
    for row in history:
        fields += [k for k in row if k not in fields]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    os.replace(tmp, path)


def _plot_history(path: Path, history: list[dict[str, float]]) -> None:
    # a bare Figure (no pyplot): leaves the user's backend alone (e.g. inline in notebooks)
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(5, 3.2), dpi=100)
    ax = fig.subplots()
    ax.plot(epochs, [r["loss"] for r in history], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """Read a run's metrics.csv back as a list of dicts of floats."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
