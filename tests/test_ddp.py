"""`geoembed train` under torchrun: 2 CPU processes with the gloo backend (DDP)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geoembed.io.checkpoint import load_checkpoint
from geoembed.trainers.fit import read_metrics

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "scene.tif"
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_two_process_gloo_run_writes_one_checkpoint(tmp_path):
    from geoembed.io.store import tile

    store = tile([SCENE], tmp_path / "store", n_triplets=24, tile_size=16, neighborhood=16,
                 seed=0, quiet=True).path
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "geoembed.cli",
           "train", str(store), "--out", str(out), "--z-dim", "16", "--base-width", "8",
           "--batch-size", "4", "--epochs", "2", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # rank 0 alone writes: one checkpoint, one metrics.csv, no temporary files left
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "loss.png",
                                                     "metrics.csv"]
    assert proc.stdout.count("checkpoint:") == 1  # one summary (rank 0)
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["loss"] > 0 and 0 <= r["violated"] <= 1 for r in rows)
    ckpt = load_checkpoint(out / "checkpoint.pt", "tile2vec")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2
    # DDP state dicts are saved unwrapped ("module." prefixes would break embed)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    # each rank saw half of the 24 triplets per epoch: 3 steps of 4 -> Adam step count 6
    steps = {int(s["step"]) for s in ckpt["optimizer"]["state"].values()}
    assert steps == {6}
