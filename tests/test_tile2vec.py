"""Tile2Vec training: datasets, encoders, the loss going down, resume, checkpoints, bad input."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from geoembed.datasets.triplets import OnTheFlyTripletDataset, TripletStoreDataset
from geoembed.errors import CheckpointError, DeviceError, InputError, OutputExistsError
from geoembed.io.checkpoint import load_checkpoint
from geoembed.io.scenes import BandStats, band_statistics, open_scenes
from geoembed.losses import Tile2VecLoss
from geoembed.models import build_encoder, encoder_from_checkpoint
from geoembed.trainers.fit import read_metrics, seed_everything
from geoembed.trainers.tile2vec import embed_triplets, evaluate_triplets, train
from geoembed.transforms import augment_tiles, dihedral, random_dihedral

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "scene.tif"
TINY = {"encoder": "tilenet", "z_dim": 16, "base_width": 8, "pooling": "last",
        "batch_size": 16, "device": "cpu", "quiet": True}
RUN6 = {**TINY, "lr": 3e-3, "seed": 5}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from geoembed.samplers.tiling import tile

    out = tmp_path_factory.mktemp("t2v") / "store"
    return tile([SCENE], out, n_triplets=96, tile_size=16, neighborhood=16, seed=0,
                quiet=True).path


@pytest.fixture(scope="module")
def run6(store, tmp_path_factory):
    """A 6-epoch run (6 steps per epoch), shared by the loss and checkpoint tests."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(store, tmp_path_factory.mktemp("t2v") / "run6", epochs=6, **RUN6)
    finally:
        torch.set_num_threads(n)


def _first_step_metrics(ds, objective: Tile2VecLoss, seed: int) -> dict[str, float]:
    """Loss and per-triplet means of the untrained TINY model (built as ``train`` builds it)
    on the whole dataset as one batch, in train mode (batch statistics)."""
    seed_everything(seed)
    model = build_encoder("tilenet", ds.in_channels, TINY["z_dim"], base_width=8)
    with torch.no_grad():
        za, zn, zd = embed_triplets(model, torch.stack([ds[i] for i in range(len(ds))]))
        sums = objective.statistics(za, zn, zd)
        return {"loss": objective(za, zn, zd).item(),
                **{k: v.item() / len(ds) for k, v in sums.items()}}


def _copy_run(run6, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run6.checkpoint.parent, out)
    return out


# --------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("name", ["tilenet", "resnet18", "efficientnet-b0"])
def test_encoder_output_shapes(name):
    torch.manual_seed(0)
    model = build_encoder(name, 5, 24, base_width=8)
    x = torch.randn(3, 5, 32, 32)  # smp's efficientnet needs tiles of 32 px or more
    with torch.no_grad():
        z = model(x)  # train mode: batch statistics, as in training
        model.eval()  # (efficientnet's stochastic depth is random in train mode)
        z_eval, z_eval1 = model(x), model(x[:1])
        # the embedding is the global average of the last feature map (+ smp's projection)
        if name == "tilenet":
            pooled = model.stages(model.stem(x)).mean(dim=(2, 3))
        else:
            pooled = model.project(model.encoder(x)[-1].mean(dim=(2, 3)))
    assert z.shape == (3, 24) and z_eval1.shape == (1, 24)
    torch.testing.assert_close(z_eval, pooled)
    torch.testing.assert_close(z_eval1[0], z_eval[0])  # eval mode: independent of the batch
    assert (z[0] - z[1]).abs().max() > 1e-3  # depends on the input


# --------------------------------------------------------------------------- datasets


def test_dihedral_gives_the_eight_symmetries():
    tile = torch.arange(9.0).reshape(1, 3, 3)
    outs = [dihedral(tile, c) for c in range(8)]
    assert torch.equal(outs[0], tile)
    assert torch.equal(outs[1], torch.rot90(tile, 1, (1, 2)))
    assert torch.equal(outs[4], tile.flip(-1))
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8
    x = np.random.default_rng(0).random((2, 3, 5, 5)).astype(np.float32)
    for c in range(8):  # the NumPy views used by the datasets agree with the torch version
        assert np.array_equal(dihedral(x, c), dihedral(torch.from_numpy(x), c).numpy())
        assert np.shares_memory(dihedral(x, c), x)  # a view, no copy


def test_random_dihedral_applies_one_code_to_every_array():
    x = np.arange(32.0).reshape(2, 4, 4)
    y = np.arange(16).reshape(4, 4)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 8, (20,), generator=torch.Generator().manual_seed(0)).tolist()
    for code in codes:  # draws one code per call from the generator, the same for all arrays
        xa, ya, ta = random_dihedral(x, y, torch.from_numpy(y), generator=g)
        assert np.array_equal(xa, dihedral(x, code)) and np.array_equal(ya, dihedral(y, code))
        assert xa.flags.c_contiguous and torch.equal(ta, torch.from_numpy(ya))
    assert len(set(codes)) == 8


def _code_of(aug: torch.Tensor, plain: torch.Tensor) -> int:
    matches = [c for c in range(8) if torch.equal(dihedral(plain, c), aug)]
    assert matches, "the augmented tile is not a flip/rotation of the plain one"
    return matches[0]


def test_store_dataset_normalises_and_augments_per_tile(store):
    plain = TripletStoreDataset(store, augment=False)
    assert len(plain) == 96 and plain.in_channels == 4 and plain.tile_size == 16
    assert isinstance(plain.triplets(), np.memmap)  # never loaded whole
    raw = plain.raw(3).astype(np.float64)
    mean = np.array(plain.band_stats.mean).reshape(1, -1, 1, 1)
    std = np.array(plain.band_stats.std).reshape(1, -1, 1, 1)
    x = plain[3]
    assert x.dtype == torch.float32 and x.shape == (3, 4, 16, 16)
    assert np.allclose(x.numpy(), (raw - mean) / std, atol=1e-4)
    assert abs(float(x.mean())) < 3  # standardised, not raw reflectance

    aug = TripletStoreDataset(store, augment=True)
    torch.manual_seed(0)
    first = [aug[i] for i in range(8)]
    torch.manual_seed(0)
    again = [aug[i] for i in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))  # torch RNG
    codes = [[_code_of(first[i][r], plain[i][r]) for r in range(3)] for i in range(8)]
    assert any(len(set(c)) > 1 for c in codes)  # tiles of a triplet differ: independent
    assert len({c for cs in codes for c in cs}) >= 4


def test_store_dataset_pickles_without_the_array(store):
    ds = TripletStoreDataset(store, augment=False, indices=[5, 7])
    state = pickle.dumps(ds)
    assert len(state) < 20_000  # the memory map is not pickled (spawned workers reopen it)
    back = pickle.loads(state)
    assert len(back) == 2 and torch.equal(back[1], ds[1])
    assert torch.equal(ds[0], TripletStoreDataset(store, augment=False)[5])


def test_on_the_fly_dataset_depends_on_seed_epoch_index():
    scenes = open_scenes([SCENE])
    stats = band_statistics(scenes, n_windows=4, window_size=64)
    ds = OnTheFlyTripletDataset(scenes, 4, 16, 16, band_stats=stats, seed=3, augment=False)
    assert len(ds) == 4 and ds[0].shape == (3, 4, 16, 16)
    a0 = ds.raw(0)
    assert np.array_equal(a0, ds.raw(0))
    assert not np.array_equal(a0, ds.raw(1))
    ds.set_epoch(1)
    assert not np.array_equal(a0, ds.raw(0))  # a fresh triplet every epoch
    ds.set_epoch(0)
    assert np.array_equal(a0, ds.raw(0))
    other = OnTheFlyTripletDataset(scenes, 4, 16, 16, band_stats=stats, seed=4, augment=False)
    assert not np.array_equal(a0, other.raw(0))
    with pytest.raises(IndexError):
        ds.raw(4)


def test_augment_tiles_needs_square_tiles():
    with pytest.raises(ValueError):
        augment_tiles(torch.zeros(3, 2, 4, 5))


# --------------------------------------------------------------------------- training


def test_loss_goes_down_and_metrics_are_written(run6):
    out = run6.checkpoint.parent
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert set(rows[0]) == {"epoch", "loss", "violated", "d_an", "d_ad", "seconds",
                            "triplets_per_s"}
    last = rows[-2:]
    assert np.mean([r["loss"] for r in last]) < 0.8 * rows[0]["loss"]
    assert np.mean([r["violated"] for r in last]) < rows[0]["violated"] - 0.1
    # the encoder pulls neighbors in relative to distant tiles
    gap = [r["d_ad"] - r["d_an"] for r in rows]
    assert np.mean(gap[-2:]) > gap[0] + 0.5
    for r in rows:  # 96 triplets per epoch: whole violated counts, 96 triplets timed
        assert r["violated"] * 96 == pytest.approx(round(r["violated"] * 96), abs=1e-3)
        assert r["triplets_per_s"] * r["seconds"] == pytest.approx(96, rel=1e-4)
    assert (out / "loss.png").stat().st_size > 1000
    assert run6.history[-1]["loss"] == pytest.approx(rows[-1]["loss"], rel=1e-5)


def test_resume_gives_the_same_weights(store, tmp_path):
    opts = {**TINY, "batch_size": 48, "seed": 7}
    whole = train(store, tmp_path / "whole", epochs=3, **opts)
    out = tmp_path / "resumed"
    train(store, out, epochs=2, **opts)
    after2 = load_checkpoint(out / "checkpoint.pt")["state_dict"]
    resumed = train(store, out, epochs=3, resume=True, **opts)
    a = whole.model.state_dict()
    b = resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in whole.history],
                                                      rel=1e-5)
    assert not torch.equal(after2["stem.0.weight"], b["stem.0.weight"])  # epoch 3 trained


def test_checkpoint_is_self_contained_and_rebuilds_the_encoder(store, run6):
    ckpt = load_checkpoint(run6.checkpoint, "tile2vec")
    assert ckpt["encoder"] == {"name": "tilenet", "in_channels": 4, "z_dim": 16,
                               "base_width": 8}
    assert ckpt["bands"] == [1, 2, 3, 4]
    assert ckpt["band_stats"] == TripletStoreDataset(store).band_stats.to_dict()
    assert ckpt["tile_size"] == 16 and ckpt["neighborhood"] == 16
    assert ckpt["scenes"] == [str(SCENE.resolve())]
    assert ckpt["loss"]["name"] == "triplet" and ckpt["loss"]["margin"] == 10.0
    assert ckpt["options"]["lr"] == 3e-3
    assert ckpt["epoch"] == 6 and len(ckpt["history"]) == 6
    assert ckpt["options"]["batch_size"] == 16 and ckpt["world_size"] == 1
    rebuilt = encoder_from_checkpoint(ckpt)
    batch = torch.stack([TripletStoreDataset(store, augment=False)[i] for i in range(4)])
    model = run6.model.eval()
    with torch.no_grad():
        expected = embed_triplets(model, batch)
        got = embed_triplets(rebuilt, batch)
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(e, g, atol=1e-6)
    # a plain torch.load with weights_only=True works too
    assert "state_dict" in torch.load(run6.checkpoint, weights_only=True)


class _Evil:
    """Unpickling this would run code (create a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_tampered_checkpoints_are_refused(store, run6, tmp_path):
    out = _copy_run(run6, tmp_path)
    ckpt_path = out / "checkpoint.pt"
    data = torch.load(ckpt_path, weights_only=True)

    torch.save({**data, "kind": "weak"}, ckpt_path)
    with pytest.raises(CheckpointError, match="'weak' checkpoint"):
        train(store, out, epochs=7, resume=True, **RUN6)

    torch.save([1, 2, 3], ckpt_path)
    with pytest.raises(CheckpointError, match="not a geoembed checkpoint"):
        load_checkpoint(ckpt_path, "tile2vec")

    torch.save(data, ckpt_path)
    blob = ckpt_path.read_bytes()
    ckpt_path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError):
        train(store, out, epochs=7, resume=True, **RUN6)

    marker = tmp_path / "marker"
    torch.save({**data, "extra": _Evil(marker)}, ckpt_path)
    with pytest.raises(CheckpointError, match="refused"):
        train(store, out, epochs=7, resume=True, **RUN6)
    torch.save(_Evil(marker), ckpt_path)
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt_path)
    assert not marker.exists()  # the code in the pickle never ran

    with pytest.raises(CheckpointError):
        encoder_from_checkpoint({k: v for k, v in data.items() if k != "encoder"})
    broken = {**data, "state_dict": {k: v.reshape(-1)[:1] for k, v in data["state_dict"].items()}}
    with pytest.raises(CheckpointError):
        encoder_from_checkpoint(broken)


def test_resume_refuses_other_options(store, run6, tmp_path):
    out = _copy_run(run6, tmp_path)
    with pytest.raises(CheckpointError, match="margin"):
        train(store, out, epochs=7, resume=True, **{**RUN6, "margin": 5.0})
    with pytest.raises(CheckpointError, match="z_dim"):
        train(store, out, epochs=7, resume=True, **{**RUN6, "z_dim": 8})
    with pytest.raises(CheckpointError, match="does not exist"):
        train(store, tmp_path / "nothing", epochs=4, resume=True, **TINY)


def test_bad_input_is_refused(store, run6, tmp_path):
    with pytest.raises(InputError, match="no triplet store"):
        train(tmp_path / "missing", tmp_path / "r1", **TINY)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(store, corrupt)
    (corrupt / "meta.json").write_text("{not json")
    with pytest.raises(InputError):
        train(corrupt, tmp_path / "r2", **TINY)
    truncated = tmp_path / "truncated"
    shutil.copytree(store, truncated)
    blob = (truncated / "triplets.npy").read_bytes()
    (truncated / "triplets.npy").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(InputError):
        train(truncated, tmp_path / "r3", **TINY)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(store, run6.checkpoint.parent, **TINY)
    with pytest.raises(InputError, match="unknown encoder 'resnet-18'.*resnet18"):
        train(store, tmp_path / "r4", **{**TINY, "encoder": "resnet-18"})
    with pytest.raises(InputError, match="cannot embed 16 px tiles"):
        train(store, tmp_path / "r4", **{**TINY, "encoder": "efficientnet-b0"})
    with pytest.raises(InputError, match="only apply with --scenes"):
        train(store, tmp_path / "r5", tile_size=32, **TINY)
    with pytest.raises(InputError, match="either"):
        train(None, tmp_path / "r6", **TINY)
    with pytest.raises(InputError, match="lr"):
        train(store, tmp_path / "r7", lr=0.0, **TINY)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError):
            train(store, tmp_path / "r8", **{**TINY, "device": "cuda"})
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 9))


def test_overwrite_replaces_a_run(store, run6, tmp_path):
    out = _copy_run(run6, tmp_path)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError):  # a failing run does not delete the previous one
        train(tmp_path / "missing", out, overwrite=True, **TINY)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 6
    result = train(store, out, epochs=1, seed=1, overwrite=True, **TINY)
    assert len(read_metrics(out / "metrics.csv")) == 1
    assert load_checkpoint(result.checkpoint)["epoch"] == 1
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files go


def test_initial_weights_file(store, tmp_path):
    torch.manual_seed(3)
    start = build_encoder("tilenet", 4, 16, base_width=8)
    torch.save(start.state_dict(), tmp_path / "w.pt")
    result = train(store, tmp_path / "run", epochs=1, lr=1e-9, weights=tmp_path / "w.pt",
                   **TINY)
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["init_weights"] == str(tmp_path / "w.pt")
    # with a negligible learning rate the weights are still the file's
    w0 = start.state_dict()["stem.0.weight"]
    assert torch.allclose(ckpt["state_dict"]["stem.0.weight"], w0, atol=1e-6)
    with pytest.raises(CheckpointError, match="do not fit"):
        train(store, tmp_path / "run2", weights=tmp_path / "w.pt", **{**TINY, "z_dim": 8})


def test_infonce_and_on_the_fly_training(tmp_path):
    result = train(None, tmp_path / "run", scenes=[SCENE], n_triplets=16, tile_size=16,
                   neighborhood=16, epochs=2, loss="infonce", temperature=0.2, seed=2,
                   augment=False, **TINY)
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 2
    ckpt = load_checkpoint(result.checkpoint, "tile2vec")
    # one batch per epoch: epoch 1's metrics are the untrained model's on epoch 0's triplets
    ds = OnTheFlyTripletDataset(open_scenes([SCENE]), 16, 16, 16, seed=2, augment=False,
                                band_stats=BandStats.from_dict(ckpt["band_stats"]),
                                max_nodata=0.0)
    expected = _first_step_metrics(ds, Tile2VecLoss("infonce", temperature=0.2), seed=2)
    assert rows[0]["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    for key in ("violated", "d_an", "d_ad"):  # between unit vectors for InfoNCE
        assert rows[0][key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
    assert ckpt["loss"]["name"] == "infonce" and ckpt["loss"]["temperature"] == 0.2
    assert ckpt["store"] is None and ckpt["scenes"] == [str(SCENE.resolve())]
    assert ckpt["tile_size"] == 16 and ckpt["options"]["n_triplets"] == 16
    assert len(ckpt["band_stats"]["mean"]) == 4


def test_evaluate_triplets(store, run6):
    ds = TripletStoreDataset(store, augment=False)
    stats = evaluate_triplets(run6.model, ds, margin=10.0)
    assert stats["n"] == 96
    # the same statistics from torch.cdist on the model's eval-mode embeddings
    model = run6.model.eval()
    with torch.no_grad():
        za, zn, zd = model(torch.stack([ds[i] for i in range(96)]).flatten(0, 1)
                           ).reshape(96, 3, -1).unbind(1)
    d_an, d_ad = torch.cdist(za, zn).diagonal(), torch.cdist(za, zd).diagonal()
    assert stats["d_an"] == pytest.approx(d_an.mean().item(), rel=1e-4)
    assert stats["d_ad"] == pytest.approx(d_ad.mean().item(), rel=1e-4)
    assert stats["accuracy"] == pytest.approx((d_an < d_ad).double().mean().item())
    assert stats["violated"] == pytest.approx((d_an - d_ad + 10 > 0).double().mean().item())
    assert stats["accuracy"] > 0.5  # trained: most neighbors nearer than distant tiles
