"""`geoembed train` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from geoembed.cli import cli

from geoembed.io.checkpoint import load_checkpoint
from geoembed.trainers.fit import read_metrics

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "scene.tif"
TINY = ["--z-dim", "16", "--base-width", "8", "--pooling", "last", "--batch-size", "16",
        "--device", "cpu", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from geoembed.samplers.tiling import tile

    out = tmp_path_factory.mktemp("cli") / "store"
    return tile([SCENE], out, n_triplets=32, tile_size=16, neighborhood=16, seed=0,
                quiet=True).path


def _run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_train_writes_a_run_and_prints_a_summary(store, tmp_path):
    out = tmp_path / "run"
    res = _run("train", store, "--out", out, "--epochs", "2", "--margin", "5", "--l2", "0.02",
               "--lr", "0.002", "--beta1", "0.9", "--seed", "3", *TINY)
    assert res.exit_code == 0, res.output
    assert "epoch 2: loss" in res.output and "d(a,n)" in res.output
    assert f"checkpoint: {out / 'checkpoint.pt'}" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "loss.png",
                                                     "metrics.csv"]
    assert len(read_metrics(out / "metrics.csv")) == 2
    ckpt = load_checkpoint(out / "checkpoint.pt", "tile2vec")
    assert ckpt["loss"] == {"name": "triplet", "margin": 5.0, "l2": 0.02, "temperature": 0.1}
    assert ckpt["options"]["lr"] == 0.002 and ckpt["options"]["beta1"] == 0.9
    assert ckpt["options"]["seed"] == 3 and ckpt["encoder"]["z_dim"] == 16

    # the run exists: refused, then resumed to a third epoch, then replaced
    res = _run("train", store, "--out", out, "--epochs", "3", *TINY)
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = _run("train", store, "--out", out, "--epochs", "3", "--margin", "5", "--l2", "0.02",
               "--lr", "0.002", "--beta1", "0.9", "--seed", "3", "--resume", *TINY)
    assert res.exit_code == 0, res.output
    assert "epoch 3: loss" in res.output
    res = _run("train", store, "--out", out, "--epochs", "1", "--overwrite", *TINY)
    assert res.exit_code == 0, res.output
    assert len(read_metrics(out / "metrics.csv")) == 1


def test_the_preset_says_what_it_filled(store, tmp_path):
    res = _run("train", store, "--out", tmp_path / "run", "--epochs", "1", "--base-width", "4",
               "--batch-size", "16", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "preset cpu: --z-dim 64" in res.output  # on the CPU; --base-width and --epochs given
    assert "--base-width 16" not in res.output and "--tile-size" not in res.output  # a store
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt", "tile2vec")
    assert (ckpt["encoder"]["z_dim"], ckpt["encoder"]["base_width"]) == (64, 4)


def test_resume_with_other_options_exits_2(store, tmp_path):
    out = tmp_path / "run"
    assert _run("train", store, "--out", out, "--epochs", "1", *TINY).exit_code == 0
    res = _run("train", store, "--out", out, "--epochs", "2", "--loss", "infonce", "--resume",
               *TINY)
    assert res.exit_code == 2
    assert "do not match the checkpoint" in res.output and "infonce" in res.output


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_bad_input_exits_2_with_one_line(store, tmp_path):
    cases = [
        (["train", tmp_path / "nope", "--out", tmp_path / "r"], "no triplet store"),
        (["train", store, "--out", tmp_path / "r", "--encoder", "resnet-18"],
         "unknown encoder 'resnet-18'"),
        (["train", store, "--out", tmp_path / "r", "--tile-size", "32", "--max-nodata", "0.5"],
         "--tile-size, --max-nodata only apply with --scenes"),
        (["train", store, store, "--out", tmp_path / "r"], "one triplet STORE"),
        (["train", store, "--out", tmp_path / "r", "--resume"], "does not exist"),
        (["train", store, "--out", tmp_path / "r", "--margin", "-1"], "--margin -1.0"),
    ]
    if not torch.cuda.is_available():
        cases.append((["train", store, "--out", tmp_path / "r", "--device", "cuda"],
                      "no CUDA GPU"))
    for args, message in cases:
        res = _run(*args, *TINY[:-3], "--quiet")
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output
    assert not (tmp_path / "r").exists()

    # a checkpoint that is a pickle with code in it: refused, and the code never runs
    run = tmp_path / "evil"
    run.mkdir()
    marker = tmp_path / "marker"
    torch.save({"format": "geoembed-checkpoint", "kind": "tile2vec", "x": _Evil(marker)},
               run / "checkpoint.pt")
    res = _run("train", store, "--out", run, "--resume", *TINY)
    assert res.exit_code == 2 and "refused to load" in res.output
    assert not marker.exists()


def test_on_the_fly_scenes(tmp_path):
    out = tmp_path / "run"
    res = _run("train", "--scenes", SCENE, "--out", out, "--n-triplets", "16", "--tile-size",
               "16", "--neighborhood", "12", "--bands", "1,2,4", "--max-nodata", "0.1", "--epochs",
               "1", *TINY)
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(out / "checkpoint.pt", "tile2vec")
    assert ckpt["bands"] == [1, 2, 4] and ckpt["encoder"]["in_channels"] == 3
    assert ckpt["tile_size"] == 16 and ckpt["neighborhood"] == 12 and ckpt["store"] is None
    assert ckpt["options"]["max_nodata"] == 0.1


def test_help_and_defaults_match_the_library():
    import inspect

    from geoembed.cli import train as cli_train

    import geoembed
    from geoembed import losses
    from geoembed.trainers.tile2vec import train
    from geoembed.trainers.tile2vec_config import TrainConfig

    assert geoembed.train is train  # the lazy top-level export
    res = _run("train", "--help")
    assert res.exit_code == 0
    for option in ("--encoder", "--z-dim", "--margin", "--loss", "--temperature", "--resume",
                   "--scenes", "--workers", "--no-amp", "--weights"):
        assert option in res.output
    assert cli_train.DEFAULT_MARGIN == losses.DEFAULT_MARGIN
    assert cli_train.DEFAULT_L2 == losses.DEFAULT_L2
    assert cli_train.DEFAULT_TEMPERATURE == losses.DEFAULT_TEMPERATURE
    lib = TrainConfig()  # the defaults of train(), the CLI and the checkpoint
    cmd = {p.name: p.default for p in cli_train.train_command.params}
    for name in ("preset", "z_dim", "base_width", "epochs", "batch_size", "lr", "beta1",
                 "loss", "margin", "l2", "temperature", "workers", "seed", "device", "encoder",
                 "pooling", "normalization", "jitter"):
        assert cmd[name] == getattr(lib, name), name
    assert (lib.preset, lib.z_dim, lib.batch_size, lib.lr, lib.beta1, lib.margin) == (
        "auto", None, 50, 1e-3, 0.5, 10.0)  # the documented defaults
    paper = lib.resolved("cuda")  # auto: the paper's TileNet on a GPU
    assert (paper.preset, paper.z_dim, paper.base_width, paper.epochs) == ("paper", 512, 64, 50)
    cpu = lib.resolved("cpu")
    assert cpu.preset == "cpu" and (cpu.z_dim, cpu.base_width) == (64, 16)
    assert "cpu preset 64, paper 512" in " ".join(res.output.split())
    assert list(inspect.signature(train).parameters)[:2] == ["store", "out"]


def test_diverging_run_exits_2_with_one_line_and_keeps_the_last_good_checkpoint(
        store, tmp_path, monkeypatch):
    from geoembed.losses import Tile2VecLoss
    from geoembed.models import encoder_from_checkpoint

    good = tmp_path / "good"  # the same run, stopped after its first epoch by itself
    assert _run("train", store, "--out", good, "--epochs", "1", *TINY).exit_code == 0
    real = Tile2VecLoss.__call__
    calls = []

    def nan_from_epoch_2(self, za, zn, zd):  # 32 triplets in batches of 16: 2 per epoch
        calls.append(1)
        loss = real(self, za, zn, zd)
        return loss * float("nan") if len(calls) > 2 else loss

    monkeypatch.setattr(Tile2VecLoss, "__call__", nan_from_epoch_2)
    out = tmp_path / "run"
    res = _run("train", store, "--out", out, "--epochs", "3", *TINY)
    assert res.exit_code == 2
    assert res.output.splitlines() == [
        "Error: epoch 2/3: the loss became nan at batch 1; training stopped and the checkpoint "
        "of the last finished epoch is kept. Lower --lr, or check the input's band statistics "
        "(constant or huge bands, nodata not declared)"]
    ckpt = load_checkpoint(out / "checkpoint.pt", "tile2vec")
    assert ckpt["epoch"] == 1 and len(read_metrics(out / "metrics.csv")) == 1
    expected = load_checkpoint(good / "checkpoint.pt", "tile2vec")["state_dict"]
    assert ckpt["state_dict"].keys() == expected.keys()
    for k, v in expected.items():  # epoch 1's weights, as the uninterrupted run has them
        assert torch.equal(ckpt["state_dict"][k], v), k
    model = encoder_from_checkpoint(ckpt)
    assert model(torch.zeros(1, 4, 16, 16)).shape == (1, 16)


def test_train_config_round_trips_through_the_checkpoint(store, tmp_path):
    from geoembed.trainers.tile2vec import train
    from geoembed.trainers.tile2vec_config import TrainConfig

    config = TrainConfig(z_dim=16, base_width=8, batch_size=16, epochs=1, lr=0.002, beta1=0.9,
                         margin=5.0, l2=0.02, seed=3, augment=False, device="cpu", quiet=True)
    result = train(store, tmp_path / "run", config=config)
    ckpt = load_checkpoint(result.checkpoint, "tile2vec")
    back = TrainConfig.from_checkpoint(ckpt)
    assert back == TrainConfig(z_dim=16, base_width=8, batch_size=16, epochs=1, lr=0.002,
                               beta1=0.9, margin=5.0, l2=0.02, seed=3, augment=False,
                               pooling="center")  # the cpu preset's, filled at training
    # keyword arguments override the config's fields
    again = train(store, tmp_path / "run", config=config, epochs=2, resume=True)
    assert [int(r["epoch"]) for r in again.history] == [1, 2]


def test_run_diverging_in_its_first_epoch_says_no_checkpoint_exists(store, tmp_path,
                                                                    monkeypatch):
    from geoembed.losses import Tile2VecLoss

    real = Tile2VecLoss.__call__
    monkeypatch.setattr(Tile2VecLoss, "__call__",
                        lambda self, za, zn, zd: real(self, za, zn, zd) * float("nan"))
    out = tmp_path / "run"
    res = _run("train", store, "--out", out, "--epochs", "2", *TINY)
    assert res.exit_code == 2
    assert res.output.splitlines() == [
        "Error: epoch 1/2: the loss became nan at batch 1; training stopped and no epoch "
        "finished, so there is no checkpoint. Lower --lr, or check the input's band "
        "statistics (constant or huge bands, nodata not declared)"]
    assert not (out / "checkpoint.pt").exists()
