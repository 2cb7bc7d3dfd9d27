"""The training recipe's options (issue 14): multi-stage pooling, percentile normalisation,
radiometric jitter, distant tiles from other scenes; each checked against a direct
computation, and end to end through train -> checkpoint -> embed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geoembed.errors import InputError
from geoembed.inference.embedding import embed, load_embedding_model
from geoembed.inference.engine import Normalizer
from geoembed.io.checkpoint import load_checkpoint
from geoembed.io.scenes import NORMALIZATIONS, BandStats, normalize, open_scene
from geoembed.models import build_encoder, encoder_from_checkpoint
from geoembed.models.tilenet import POOLINGS, TileNet
from geoembed.trainers import tile2vec_config
from geoembed.trainers.tile2vec import train
from geoembed.trainers.tile2vec_config import TrainConfig
from geoembed.transforms import radiometric_jitter
from tests.test_embed import direct

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "scene.tif"
TINY = {"encoder": "tilenet", "z_dim": 16, "base_width": 4, "batch_size": 8,
        "device": "cpu", "quiet": True}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_torch_free_config_names_match_the_library():
    assert tile2vec_config.POOLINGS == POOLINGS
    assert tile2vec_config.NORMALIZATIONS == NORMALIZATIONS


def test_stage_pooling_concatenates_every_stage_average():
    torch.manual_seed(0)
    last = TileNet(3, z_dim=12, base_width=4).eval()
    stages = TileNet(3, z_dim=12, base_width=4, pooling="stages").eval()
    stages.load_state_dict(last.state_dict())  # the same weights: pooling has none
    x = torch.randn(5, 3, 20, 20)
    with torch.no_grad():
        z = stages(x)
        h, want = last.stem(x), []
        for stage in last.stages:
            h = stage(h)
            want.append(h.mean(dim=(2, 3)))
        z_last = last(x)
    assert stages.out_dim == 4 * 15 + 12 == z.shape[1]
    torch.testing.assert_close(z, torch.cat(want, 1))
    torch.testing.assert_close(z[:, -12:], z_last)  # the last stage's part is the paper's
    assert not torch.allclose(z[:, :4], z[:, -4:])  # the first stage is not the last
    stages.pooling = "center"  # the centre cell of every map (20 px: 20, 10, 5, 3, 2 cells)
    assert stages.out_dim == 72 and last.out_dim == 12
    with torch.no_grad():
        h, want = last.stem(x), []
        for stage in last.stages:
            h = stage(h)
            want.append(h[:, :, h.shape[2] // 2, h.shape[3] // 2])
        torch.testing.assert_close(stages(x), torch.cat(want, 1))
        assert want[0].shape[1] == 4 and not torch.allclose(want[0], h.mean(dim=(2, 3))[:, :4])


def test_smp_stage_pooling_sizes():
    model = build_encoder("resnet18", 3, 0, pooling="stages").eval()
    with torch.no_grad():
        z = model(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 64 + 64 + 128 + 256 + 512) and model.out_dim == z.shape[1]
    projected = build_encoder("resnet18", 3, 10, pooling="stages")
    assert projected.project.in_features == 1024 and projected.out_dim == 10
    center = build_encoder("resnet18", 3, 0, pooling="center").eval()
    center.load_state_dict(model.state_dict())
    with torch.no_grad():
        maps = center.encoder(torch.ones(1, 3, 32, 32))[1:]
        want = torch.cat([m[:, :, m.shape[2] // 2, m.shape[3] // 2] for m in maps], 1)
        torch.testing.assert_close(center(torch.ones(1, 3, 32, 32)), want)
    with pytest.raises(InputError, match="unknown pooling"):
        build_encoder("tilenet", 3, 8, pooling="max")


def test_percentile_normalisation_maps_the_2_98_range_to_minus_one_one():
    stats = BandStats(mean=[50.0, 0.0], std=[10.0, 1.0], p2=[10.0, -4.0], p98=[90.0, 4.0],
                      mode="percentile")
    x = np.array([[[10, 50, 90, 200]], [[-4, 0, 2, -100]]], dtype=np.float32)
    out = normalize(x, stats)
    np.testing.assert_allclose(out, [[[-1, 0, 1, 1]], [[-1, 0, 0.5, -1]]], atol=1e-6)
    plain = normalize(x, BandStats(mean=[50.0, 0.0], std=[10.0, 1.0], p2=[10.0, -4.0],
                                   p98=[90.0, 4.0]))
    np.testing.assert_allclose(plain[0, 0], [-4, 0, 4, 15], atol=1e-6)  # mean/std, no clip
    # the inference engine's on-device normaliser does the same arithmetic
    tiles = np.random.default_rng(0).normal(50, 40, (3, 2, 4, 4)).astype(np.float32)
    valid = np.ones((3, 4, 4), bool)
    valid[1, :2] = False
    for s in (stats, BandStats.from_dict({**stats.to_dict(), "mode": "meanstd"})):
        got = Normalizer(s, torch.device("cpu"))(tiles, valid).numpy()
        np.testing.assert_allclose(got, normalize(tiles, s, valid), atol=1e-6)


def test_band_stats_dict_keeps_the_mode_and_old_dicts_read_as_meanstd():
    d = {"mean": [1.0], "std": [2.0], "p2": [0.0], "p98": [3.0]}
    assert BandStats.from_dict(d).mode == "meanstd" and BandStats.from_dict(d).to_dict() == d
    pct = BandStats.from_dict({**d, "mode": "percentile"})
    assert pct.mode == "percentile" and BandStats.from_dict(pct.to_dict()) == pct
    with pytest.raises(ValueError, match="unknown normalization"):
        BandStats(**d, mode="minmax")


def test_radiometric_jitter_is_one_gain_and_offset_per_tile():
    rng = np.random.default_rng(0)
    tiles = rng.normal(0, 1, (6, 3, 8, 8)).astype(np.float32)
    valid = np.ones((6, 8, 8), bool)
    valid[2, 0, :] = False
    torch.manual_seed(3)
    out = radiometric_jitter(tiles, 0.3, valid)
    assert out.dtype == np.float32 and out.shape == tiles.shape
    assert (out[2, :, 0, :] == 0).all()  # nodata stays at 0
    gains = []
    for k in range(6):  # out = g * x + b over every valid pixel of every band of tile k
        m = valid[k][None].repeat(3, 0)
        xs, ys = tiles[k][m], out[k][m]
        g, b = np.polyfit(xs, ys, 1)
        np.testing.assert_allclose(ys, g * xs + b, atol=1e-5)
        assert 0.7 - 1e-6 <= g <= 1.3 + 1e-6 and abs(b) <= 0.3 + 1e-6
        gains.append(g)
    assert np.ptp(gains) > 0.05  # independent per tile
    torch.manual_seed(3)
    np.testing.assert_array_equal(radiometric_jitter(tiles, 0.3, valid), out)  # torch's RNG
    np.testing.assert_array_equal(radiometric_jitter(tiles, 0.0), tiles)
    with pytest.raises(ValueError):
        radiometric_jitter(tiles, -0.1)


def test_config_validates_and_stores_only_changed_recipe_options():
    with pytest.raises(InputError, match="unknown pooling"):
        TrainConfig(pooling="max").validate()
    with pytest.raises(InputError, match="unknown normalization"):
        TrainConfig(normalization="minmax").validate()
    with pytest.raises(InputError, match="--jitter"):
        TrainConfig(jitter=1.5).validate()
    plain = TrainConfig().resolved("cuda").checkpoint_options({})  # paper: pooling last
    assert not {"pooling", "jitter", "normalization", "distant_other_scene"} & set(plain)
    assert TrainConfig().resolved("cpu").checkpoint_options({})["pooling"] == "center"
    assert TrainConfig.from_checkpoint({"options": plain}).pooling == "last"  # earlier runs
    cfg = TrainConfig(pooling="stages", jitter=0.2, normalization="percentile",
                      distant_other_scene=0.0).resolved("cpu")
    opts = cfg.checkpoint_options({})
    assert (opts["pooling"], opts["jitter"], opts["normalization"],
            opts["distant_other_scene"]) == ("stages", 0.2, "percentile", 0.0)
    back = TrainConfig.from_checkpoint({"options": opts})
    assert (back.pooling, back.jitter, back.normalization) == ("stages", 0.2, "percentile")


def test_presets_fill_only_unset_options_and_resume_takes_the_checkpoints():
    from geoembed.trainers.tile2vec_config import PRESETS

    cpu = TrainConfig(z_dim=32).resolved("cpu")
    assert (cpu.preset, cpu.z_dim, cpu.base_width, cpu.epochs) == (
        "cpu", 32, PRESETS["cpu"]["base_width"], PRESETS["cpu"]["epochs"])
    assert cpu.tile_size is None  # on-the-fly options: filled by the trainer, not here
    assert TrainConfig(preset="paper").resolved("cpu").z_dim == 512  # a named preset wins
    assert TrainConfig().resolved("mps").preset == "cpu"
    assert TrainConfig().resolved("cpu").pooling == "center"
    assert TrainConfig(encoder="resnet18").resolved("cpu").pooling == "last"  # smp encoders
    saved = TrainConfig(z_dim=24, base_width=4, epochs=3, tile_size=20, neighborhood=10,
                        n_triplets=7)
    resumed = TrainConfig(epochs=9).resolved("cpu", saved)
    assert (resumed.z_dim, resumed.base_width, resumed.epochs, resumed.tile_size,
            resumed.neighborhood, resumed.n_triplets) == (24, 4, 9, 20, 10, 7)
    with pytest.raises(InputError, match="unknown preset"):
        TrainConfig(preset="gpu").validate()


def test_cpu_preset_trains_on_the_fly_with_its_tile_sizes(tmp_path):
    from geoembed.trainers.tile2vec_config import PRESETS

    result = train(None, tmp_path / "run", scenes=[SCENE], n_triplets=8, epochs=1,
                   base_width=4, z_dim=8, batch_size=8, device="cpu", quiet=True)
    ckpt = load_checkpoint(result.checkpoint, "tile2vec")
    assert ckpt["tile_size"] == PRESETS["cpu"]["tile_size"]
    assert ckpt["neighborhood"] == PRESETS["cpu"]["neighborhood"]
    resumed = train(None, tmp_path / "run", scenes=[SCENE], epochs=2, resume=True, batch_size=8,
                    device="cpu", quiet=True)  # model and sampling options from the checkpoint
    assert len(resumed.history) == 2 and resumed.model.z_dim == 8


def test_distant_tiles_from_other_scenes(tmp_path, make_raster):
    from geoembed.datasets.triplets import OnTheFlyTripletDataset
    from geoembed.io.scenes import band_statistics, open_scenes

    scenes = open_scenes([make_raster("a.tif", seed=1), make_raster("b.tif", seed=2)])
    stats = band_statistics(scenes)
    for p, want in ((0.0, 0.0), (1.0, 1.0)):
        ds = OnTheFlyTripletDataset(scenes, 40, 16, 16, band_stats=stats,
                                    distant_other_scene_prob=p)
        infos = [ds.sampler.draw(np.random.default_rng([0, 0, i]))[0] for i in range(40)]
        other = np.mean([t.distant.scene != t.anchor.scene for t in infos])
        assert other == want


def test_recipe_options_reach_the_checkpoint_and_embed(tmp_path):
    result = train(None, tmp_path / "run", scenes=[SCENE], n_triplets=16, tile_size=16,
                   neighborhood=16, epochs=1, pooling="stages", normalization="percentile",
                   jitter=0.2, seed=1, **TINY)
    ckpt = load_checkpoint(result.checkpoint, "tile2vec")
    assert ckpt["encoder"]["pooling"] == "stages" and ckpt["encoder"]["z_dim"] == 16
    assert ckpt["band_stats"]["mode"] == "percentile"
    assert ckpt["options"]["jitter"] == 0.2
    em = load_embedding_model(result.checkpoint)
    assert em.z_dim == 4 * 15 + 16 and em.band_stats.mode == "percentile"
    model = encoder_from_checkpoint(ckpt)
    out = embed(result.checkpoint, SCENE, tmp_path / "emb.tif", stride=16, quiet=True)[0]
    with rasterio.open(out) as ds:
        emb = ds.read()
        assert ds.count == em.z_dim
    scene = open_scene(SCENE)
    n_rows, n_cols = (scene.height - 16) // 16 + 1, (scene.width - 16) // 16 + 1
    want, frac = direct(model, SCENE, em.band_stats, 16, 16, n_rows, n_cols)
    ok = ~np.isnan(emb[0])  # windows over too much nodata are NaN
    assert ok.sum() > 100 and (frac[~ok] > 0).all()
    np.testing.assert_allclose(emb[:, ok], want[:, ok], atol=1e-4, rtol=1e-4)
