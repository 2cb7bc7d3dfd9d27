"""A training run's directory: checkpoint.pt, metrics.csv and loss.png, and the policy for
reusing it (refuse an existing run unless ``--overwrite`` or ``--resume``).

Torch-free: the weak and Tile2Vec trainers and the tests share it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

# a bare Figure (no pyplot): leaves the user's backend alone (e.g. inline in notebooks)
from matplotlib.figure import Figure

from geoembed.errors import CheckpointError, InputError, OutputExistsError
from geoembed.io.paths import require_local

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.csv"
PLOT_NAME = "loss.png"
#: Least seconds between two redraws of loss.png during training.
PLOT_EVERY_S = 30.0


def is_main_process() -> bool:
    """True outside torchrun and on rank 0 under it (the process that writes files)."""
    return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0


def check_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a run directory that cannot be used: a file, ``--resume`` without a
    checkpoint, or an existing run without ``--overwrite`` (nothing is deleted here)."""
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    require_local(out, "run directory")
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


def write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """Write the per-epoch rows to ``path`` (CSV, atomically; columns in first-seen order)."""
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


def plot_history(path: Path, history: list[dict[str, float]]) -> None:
    """Draw the training loss per epoch to ``path`` (PNG, atomically)."""
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
