"""`geoembed train` under torchrun: 2 CPU processes with the gloo backend (DDP)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from geoembed.datasets.triplets import TripletStoreDataset
from geoembed.io.checkpoint import load_checkpoint
from geoembed.losses import Tile2VecLoss
from geoembed.models import build_encoder
from geoembed.trainers.fit import read_metrics, seed_everything
from geoembed.trainers.tile2vec import embed_triplets

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "scene.tif"
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _two_ranks_in_one_process(store: Path, *, epochs: int, batch_size: int
                              ) -> tuple[dict[str, torch.Tensor], list[float]]:
    """What DDP computes with 2 ranks: each rank's DistributedSampler batches (BatchNorm
    statistics per rank), the mean of the two ranks' losses back-propagated (DDP averages
    gradients), the CLI's defaults (Adam lr 1e-3, betas (0.5, 0.999), margin 10, l2 0.01).
    Returns the final parameters and each epoch's mean loss over all triplets."""
    seed_everything(0)  # as train() does before building the model
    model = build_encoder("tilenet", 4, 16, base_width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    ds = TripletStoreDataset(store, augment=False)
    objective = Tile2VecLoss()
    epoch_losses = []
    for epoch in range(epochs):
        batches = []
        for rank in range(2):
            sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
            sampler.set_epoch(epoch)
            idx = list(sampler)
            batches.append([idx[i:i + batch_size] for i in range(0, len(idx), batch_size)])
        total = 0.0
        for pair in zip(*batches, strict=True):
            losses = [objective(*embed_triplets(model, torch.stack([ds[i] for i in b])))
                      for b in pair]
            optimizer.zero_grad()
            (sum(losses) / 2).backward()
            optimizer.step()
            total += sum(loss.item() * len(b) for loss, b in zip(losses, pair, strict=True))
        epoch_losses.append(total / len(ds))
    return {k: v.detach() for k, v in model.named_parameters()}, epoch_losses


@pytest.mark.usefixtures("one_torch_thread")  # the same arithmetic as the OMP_NUM_THREADS=1 ranks
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
def test_two_process_gloo_run_writes_one_checkpoint(tmp_path):
    from geoembed.samplers.tiling import tile

    store = tile([SCENE], tmp_path / "store", n_triplets=24, tile_size=16, neighborhood=16,
                 seed=0, quiet=True).path
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "geoembed.cli",
           "train", str(store), "--out", str(out), "--z-dim", "16", "--base-width", "8",
           "--pooling", "last", "--batch-size", "4", "--epochs", "2", "--device", "cpu",
           "--no-augment", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    # rank 0 alone writes: one checkpoint, one metrics.csv, no temporary files left
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "loss.png",
                                                     "metrics.csv"]
    assert proc.stdout.count("checkpoint:") == 1  # one summary (rank 0)
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    ckpt = load_checkpoint(out / "checkpoint.pt", "tile2vec")
    # the same training simulated in one process: each rank's batches, gradients averaged
    weights, losses = _two_ranks_in_one_process(store, epochs=2, batch_size=4)
    assert [r["loss"] for r in rows] == pytest.approx(losses, rel=1e-4)  # all-reduced means
    for r in rows:  # all 24 triplets of the epoch are counted, not rank 0's 12
        assert r["triplets_per_s"] * r["seconds"] == pytest.approx(24, rel=1e-4)
    for k, v in weights.items():
        torch.testing.assert_close(ckpt["state_dict"][k], v, rtol=1e-4, atol=1e-5)
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2
    # DDP state dicts are saved unwrapped ("module." prefixes would break embed)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    # each rank saw half of the 24 triplets per epoch: 3 steps of 4 -> Adam step count 6
    steps = {int(s["step"]) for s in ckpt["optimizer"]["state"].values()}
    assert steps == {6}
