"""geoembed embed: values equal the model's output per window, georeferencing, nodata, int8,
COG layout, streaming with batches across rows, bad input through the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from geoembed.cli import cli
from rasterio.transform import from_origin

from geoembed import __version__
from geoembed.errors import InputError
from geoembed.inference.config import EmbedConfig
from geoembed.inference.embedding import embed
from geoembed.inference.engine import Normalizer
from geoembed.io.checkpoint import file_sha256, save_checkpoint
from geoembed.io.embeddings import DEQUANTIZATION, dequantize
from geoembed.io.georef import window_grid_transform
from geoembed.io.scenes import band_statistics, normalize, open_scene
from geoembed.models import build_encoder, encoder_config
from tests.conftest import ORIGIN, PIXEL, write_raster

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning")


def make_checkpoint(path: Path, scene: Path | None = None, *, in_channels: int = 4,
                    z_dim: int = 8, tile: int = 16, kind: str = "tile2vec", seed: int = 0
                    ) -> tuple[Path, torch.nn.Module, dict]:
    """A random-init TileNet checkpoint with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = build_encoder("tilenet", in_channels, z_dim=z_dim, base_width=8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    if scene is not None:
        stats = band_statistics([open_scene(scene)], n_windows=4, window_size=64).to_dict()
    else:
        stats = {"mean": [100.0] * in_channels, "std": [30.0] * in_channels,
                 "p2": [0.0] * in_channels, "p98": [200.0] * in_channels}
    save_checkpoint(path, {
        "encoder": encoder_config("tilenet", in_channels, z_dim, 8),
        "state_dict": model.state_dict(), "bands": list(range(1, in_channels + 1)),
        "band_stats": stats, "tile_size": tile, "scenes": [], "options": {}, "epoch": 1,
    }, kind=kind)
    return path, model.eval(), stats


def direct(model: torch.nn.Module, scene_path: Path, stats: dict, tile: int, stride: int,
           n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window's embedding computed directly: ``(Z, n_rows, n_cols)``, nodata fraction."""
    scene = open_scene(scene_path)
    data, valid = scene.read_with_mask(rasterio.windows.Window(0, 0, scene.width, scene.height))
    tiles, valids = [], []
    for i in range(n_rows):
        for j in range(n_cols):
            r, c = i * stride, j * stride
            tiles.append(data[:, r:r + tile, c:c + tile])
            valids.append(valid[r:r + tile, c:c + tile])
    tiles, valids = np.stack(tiles), np.stack(valids)
    x = torch.from_numpy(normalize(tiles, stats, valids))
    with torch.no_grad():
        y = model(x).numpy()
    frac = 1.0 - valids.mean(axis=(1, 2))
    return y.T.reshape(-1, n_rows, n_cols), frac.reshape(n_rows, n_cols)


@pytest.fixture(scope="module")
def bordered(tmp_path_factory) -> tuple[Path, Path, torch.nn.Module, dict]:
    """A 4-band uint16 scene with a 5-px nodata border, and a tile-16 checkpoint."""
    d = tmp_path_factory.mktemp("embed")
    rng = np.random.default_rng(1)
    data = rng.integers(20, 220, (4, 90, 110)).astype(np.uint16)
    data[:, :5], data[:, -5:], data[:, :, :5], data[:, :, -5:] = 0, 0, 0, 0
    data[:, 40:70, 60:90] = 0  # an inner hole: windows over it are mostly nodata
    scene = write_raster(d / "scene.tif", data, nodata=0)
    ckpt, model, stats = make_checkpoint(d / "ckpt.pt", scene)
    return scene, ckpt, model, stats


def test_float32_equals_direct_model_output_and_nodata(bordered, tmp_path):
    scene, ckpt, model, stats = bordered
    out = embed(ckpt, scene, tmp_path / "emb.tif", stride=6, batch_size=23, quiet=True)[0]
    with rasterio.open(out) as ds:
        emb = ds.read()
        assert ds.count == 8 and ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert ds.descriptions[:2] == ("emb_000", "emb_001")
        assert ds.crs == open_scene(scene).crs
    n_rows, n_cols = (90 - 16) // 6 + 1, (110 - 16) // 6 + 1
    assert emb.shape == (8, n_rows, n_cols)
    want, frac = direct(model, scene, stats, 16, 6, n_rows, n_cols)
    rejected = frac > 0.5
    partial = (frac > 0) & ~rejected
    assert rejected.sum() > 5 and partial.sum() > 20 and (frac == 0).sum() > 20
    assert np.isnan(emb[:, rejected]).all()
    np.testing.assert_allclose(emb[:, ~rejected], want[:, ~rejected], atol=1e-5, rtol=1e-5)


def test_output_pixel_centers_are_window_centers(bordered, tmp_path):
    scene_path, ckpt, _, _ = bordered
    out = embed(ckpt, scene_path, tmp_path / "emb.tif", stride=6, quiet=True)[0]
    scene = open_scene(scene_path)
    rng = np.random.default_rng(0)
    with rasterio.open(out) as ds:
        for i, j in rng.integers(0, [ds.height, ds.width], size=(20, 2)):
            win = rasterio.windows.Window(j * 6, i * 6, 16, 16)
            left, bottom, right, top = scene.window_bounds(win)
            x, y = ds.transform @ (j + 0.5, i + 0.5)
            assert (x, y) == pytest.approx(((left + right) / 2, (top + bottom) / 2))
            # and back: the window center falls in output pixel (i, j)
            assert ds.index((left + right) / 2, (top + bottom) / 2) == (i, j)


def test_int8_dequantises_within_quantisation_error(bordered, tmp_path):
    scene, ckpt, model, stats = bordered
    out = embed(ckpt, scene, tmp_path / "emb8.tif", stride=6, dtype="int8", quiet=True)[0]
    with rasterio.open(out) as ds:
        q = ds.read()
        assert ds.dtypes[0] == "int8" and ds.nodata == -128
        tags = ds.tags()
    assert tags["dequantization"] == DEQUANTIZATION and tags["embedding_dtype"] == "int8"
    want, frac = direct(model, scene, stats, 16, 6, *q.shape[1:])
    rejected = frac > 0.5
    assert (q[:, rejected] == -128).all() and (q[:, ~rejected] != -128).all()
    unit = want / np.linalg.norm(want, axis=0, keepdims=True)
    got = dequantize(q)
    err = np.abs(got[:, ~rejected] - unit[:, ~rejected])
    assert err.max() <= 1 / 127.5 + 1e-6
    assert err.max() > 1e-4  # it really is quantised
    # dequantised vectors are (nearly) unit length
    np.testing.assert_allclose(np.linalg.norm(got[:, ~rejected], axis=0), 1.0, atol=0.02)


def test_max_nodata_extremes_and_float_nan_scene(tmp_path):
    data = np.random.default_rng(2).normal(100, 30, (4, 48, 48)).astype(np.float32)
    data[:, 10:14, 20:23] = np.nan  # a few NaN pixels
    scene = write_raster(tmp_path / "f.tif", data, nodata=np.nan)
    ckpt, model, stats = make_checkpoint(tmp_path / "c.pt", tile=16)
    strict = embed(ckpt, scene, tmp_path / "a.tif", stride=8, max_nodata=0.0, quiet=True)[0]
    loose = embed(ckpt, scene, tmp_path / "b.tif", stride=8, max_nodata=1.0, quiet=True)[0]
    want, frac = direct(model, scene, stats, 16, 8, 5, 5)
    with rasterio.open(strict) as a, rasterio.open(loose) as b:
        ea, eb = a.read(), b.read()
    touched = frac > 0
    assert touched.sum() >= 2
    assert np.isnan(ea[:, touched]).all() and np.isfinite(ea[:, ~touched]).all()
    # the NaN pixels are filled with the band mean (0 after normalisation)
    np.testing.assert_allclose(eb, want, atol=1e-5, rtol=1e-5)


def test_several_hundred_windows_batch_not_dividing_and_cog(tmp_path, make_raster):
    scene = make_raster("big.tif", bands=3, size=(128, 128), dtype="uint8", border=3)
    ckpt, model, stats = make_checkpoint(tmp_path / "c.pt", scene, in_channels=3, tile=8)
    out = embed(ckpt, scene, tmp_path / "e.tif", stride=5, batch_size=37, prefetch=1,
                quiet=True, blocksize=16)[0]
    n = (128 - 8) // 5 + 1
    assert n * n == 625 and 625 % 37
    want, frac = direct(model, scene, stats, 8, 5, n, n)
    with rasterio.open(out) as ds:
        emb = ds.read()
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.overviews(1) == [2]
        assert ds.block_shapes[0] == (16, 16)
        assert ds.compression is not None
    rejected = frac > 0.5
    assert rejected.any()
    np.testing.assert_allclose(emb[:, ~rejected], want[:, ~rejected], atol=1e-5, rtol=1e-5)
    assert np.isnan(emb[:, rejected]).all()
    # overviews average the valid children only (NaN nodata is skipped, not propagated)
    with rasterio.open(out, overview_level=0) as ov:
        level = ov.read(1)
    child = emb[0, :2, :2]
    assert np.isnan(child).sum() in (1, 2, 3)
    assert level[0, 0] == pytest.approx(np.nanmean(child), rel=1e-5)


def test_stride_25_and_50_geometry(tmp_path):
    data = np.random.default_rng(3).integers(1, 255, (4, 150, 200)).astype(np.uint8)
    scene = write_raster(tmp_path / "s.tif", data)
    ckpt, _, _ = make_checkpoint(tmp_path / "c.pt", tile=50, z_dim=4)
    a = embed(ckpt, scene, tmp_path / "s25.tif", stride=25, quiet=True)[0]
    b = embed(ckpt, scene, tmp_path / "s50.tif", quiet=True)[0]  # default stride = tile
    with rasterio.open(a) as d25, rasterio.open(b) as d50:
        assert d25.shape == (5, 7) and d50.shape == (3, 4)
        assert d50.transform == from_origin(ORIGIN[0], ORIGIN[1], 50 * PIXEL, 50 * PIXEL)
        assert d25.transform == from_origin(ORIGIN[0] + 12.5 * PIXEL, ORIGIN[1] - 12.5 * PIXEL,
                                            25 * PIXEL, 25 * PIXEL)
        assert d25.tags()["stride"] == "25" and d50.tags()["stride"] == "50"
        e25, e50 = d25.read(), d50.read()
        for i in range(3):
            for j in range(4):
                assert d25.xy(2 * i, 2 * j) == pytest.approx(d50.xy(i, j))
                np.testing.assert_allclose(e25[:, 2 * i, 2 * j], e50[:, i, j], atol=1e-5)


def test_window_grid_transform_formula():
    t = window_grid_transform(from_origin(100.0, 200.0, 2.0, 2.0), tile=10, stride=4)
    # window (1, 2): top-left scene pixel (row 4, col 8), center (col 13, row 9)
    assert t @ (2.5, 1.5) == pytest.approx((100.0 + 13 * 2.0, 200.0 - 9 * 2.0))


def test_tags(bordered, tmp_path):
    scene, ckpt, _, _ = bordered
    out = embed(ckpt, scene, tmp_path / "e.tif", stride=8, max_nodata=0.25, quiet=True)[0]
    with rasterio.open(out) as ds:
        tags = ds.tags()
    assert tags["checkpoint_sha256"] == file_sha256(ckpt)
    assert tags["tile_size"] == "16" and tags["stride"] == "8" and tags["z_dim"] == "8"
    assert tags["geoembed_version"] == __version__ and tags["encoder"] == "tilenet"
    assert tags["embedding_dtype"] == "float32" and tags["max_nodata"] == "0.25"
    assert tags["bands"] == "1,2,3,4" and tags["source"] == "scene.tif"


def test_cli_several_scenes_to_directory(tmp_path, make_raster):
    s1 = make_raster("a.tif", size=(40, 40), seed=1)
    s2 = make_raster("b.tif", size=(48, 40), seed=2)
    ckpt, model, stats = make_checkpoint(tmp_path / "c.pt", s1)
    res = CliRunner().invoke(cli, ["embed", str(ckpt), str(s1), str(s2), "--out",
                                   str(tmp_path / "out"), "--quiet", "--batch-size", "5"])
    assert res.exit_code == 0, res.output
    # each scene's output holds its own windows' embeddings, on its own georeference
    for name, scene, shape in (("a", s1, (2, 2)), ("b", s2, (3, 2))):
        with rasterio.open(tmp_path / "out" / f"{name}_embedding.tif") as ds:
            got, transform = ds.read(), ds.transform
        want, frac = direct(model, scene, stats, 16, 16, *shape)
        assert (frac <= 0.5).all()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
        with rasterio.open(scene) as src:
            assert transform == window_grid_transform(src.transform, 16, 16)
            assert transform.c == src.transform.c and transform.a == 16 * src.transform.a
    assert "a_embedding.tif: 8 bands, 2 x 2 px, float32" in res.output
    # one scene into an existing directory goes inside it
    res = CliRunner().invoke(cli, ["embed", str(ckpt), str(s1), "--out", str(tmp_path / "out"),
                                   "--quiet", "--overwrite", "--dtype", "int8"])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "out" / "a_embedding.tif") as a:
        assert a.dtypes[0] == "int8"
        q = a.read()
    want, _ = direct(model, s1, stats, 16, 16, 2, 2)
    unit = want / np.linalg.norm(want, axis=0, keepdims=True)
    assert np.abs(dequantize(q) - unit).max() <= 1 / 127.5 + 1e-6


@pytest.fixture
def cli_inputs(tmp_path, make_raster) -> dict[str, Path]:
    scene = make_raster("s.tif", size=(40, 40))
    ckpt, _, _ = make_checkpoint(tmp_path / "c.pt", scene)
    weak, _, _ = make_checkpoint(tmp_path / "weak.pt", scene, kind="weak")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    (tmp_path / "exists.tif").write_bytes(b"x")
    return {"scene": scene, "ckpt": ckpt, "weak": weak, "plain": tmp_path / "plain.pt",
            "text": tmp_path / "text.pt", "exists": tmp_path / "exists.tif",
            "three": make_raster("three.tif", bands=3, size=(40, 40)),
            "small": make_raster("small.tif", size=(12, 40)),
            "out": tmp_path / "o.tif", "dir": tmp_path}


@pytest.mark.parametrize("args, message", [
    (["{dir}/missing.pt", "{scene}", "--out", "{out}"], "no such checkpoint"),
    (["{plain}", "{scene}", "--out", "{out}"], "not a geoembed checkpoint"),
    (["{text}", "{scene}", "--out", "{out}"], "refused to load"),
    (["{weak}", "{scene}", "--out", "{out}"], "'tile2vec' checkpoint is needed"),
    (["{ckpt}", "{three}", "--out", "{out}"], "the scene has 3 band(s)"),
    (["{ckpt}", "{three}", "--bands", "1,2,3", "--out", "{out}"], "the checkpoint's encoder "
                                                                  "takes 4"),
    (["{ckpt}", "{small}", "--out", "{out}"], "smaller than one tile"),
    (["{ckpt}", "{scene}", "--stride", "0", "--out", "{out}"], "at least 1"),
    (["{ckpt}", "{scene}", "--stride", "17", "--out", "{out}"], "larger than the tile"),
    (["{ckpt}", "{scene}", "--out", "{exists}"], "--overwrite"),
    (["{ckpt}", "{scene}", "{three}", "--out", "{exists}"], "give a directory"),
    (["{ckpt}", "{dir}/nope.tif", "--out", "{out}"], "no such file"),
])
def test_cli_bad_input_exits_2(cli_inputs, args, message):
    argv = ["embed", *[a.format(**cli_inputs) for a in args], "--quiet"]
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 2, res.output
    assert message in res.stderr, res.stderr
    assert res.stderr.startswith("Error: ") and len(res.stderr.strip().splitlines()) == 1
    assert not cli_inputs["out"].exists()


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_leaves_nothing(cli_inputs, monkeypatch, tmp_path, exc):
    calls = {"n": 0}
    real = Normalizer.__call__

    def flaky(self, tiles, valid):
        calls["n"] += 1
        if calls["n"] == 3:
            raise exc("stop")
        return real(self, tiles, valid)

    monkeypatch.setattr(Normalizer, "__call__", flaky)
    out = tmp_path / "sub" / "e.tif"
    with pytest.raises(exc):
        embed(cli_inputs["ckpt"], cli_inputs["scene"], out, stride=2, batch_size=10,
              quiet=True)
    assert calls["n"] == 3
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_package_level_api_is_the_function_after_submodule_imports(bordered, tmp_path):
    import geoembed
    import geoembed.inference.embedding  # noqa: F401
    import geoembed.inference.segmentation  # noqa: F401

    assert geoembed.segment is geoembed.inference.segmentation.segment
    assert geoembed.embed is geoembed.inference.embedding.embed
    scene, ckpt, _, _ = bordered
    out = geoembed.embed(ckpt, [scene], tmp_path / "e.tif", stride=16, quiet=True)
    assert out == [tmp_path / "e.tif"]
    # keyword arguments and an EmbedConfig (with keyword overrides) give the same file
    config = EmbedConfig(stride=8, quiet=True, dtype="int8")
    again = geoembed.embed(ckpt, scene, tmp_path / "c.tif", config, stride=16, dtype="float32")
    with rasterio.open(out[0]) as a, rasterio.open(again[0]) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.tags()["stride"] == b.tags()["stride"] == "16"
    assert config.stride == 8  # the caller's config is not changed
    with pytest.raises(TypeError, match="strides"):
        geoembed.embed(ckpt, scene, tmp_path / "d.tif", strides=16)


@pytest.mark.parametrize("options, message", [
    ({"dtype": "float16"}, "dtype must be one of"),
    ({"max_nodata": 1.5}, "max_nodata must be between 0 and 1"),
    ({"blocksize": 40}, "multiple of 16"),
    ({"batch_size": 0}, "at least 1"),
    ({"stride": 0}, "at least 1"),
])
def test_embed_config_rejects_bad_options(options, message):
    with pytest.raises(InputError, match=message):
        EmbedConfig(**options)


def test_embed_config_matches_the_cli_defaults():
    """The CLI builds its EmbedConfig from its options: same names, same defaults."""
    from geoembed.cli.embed import embed_command

    defaults = {p.name: p.default for p in embed_command.params if isinstance(p, click.Option)}
    config = EmbedConfig()
    for field in dataclasses.fields(EmbedConfig):
        if field.name in defaults:
            assert getattr(config, field.name) == defaults[field.name], field.name
    # the input options pick which scenes run (shards, STAC assets), not how one is embedded
    inputs = {"shard", "shards", "assets", "resampling"}
    assert set(defaults) - {"out", "help", *inputs} <= {
        f.name for f in dataclasses.fields(EmbedConfig)}


def test_bands_override_selects_the_checkpoint_bands(tmp_path):
    data = np.random.default_rng(5).integers(1, 255, (5, 40, 40)).astype(np.uint8)
    five = write_raster(tmp_path / "five.tif", data)
    four = write_raster(tmp_path / "four.tif", data[1:])
    ckpt, _, _ = make_checkpoint(tmp_path / "c.pt", tile=16)
    a = embed(ckpt, five, tmp_path / "a.tif", bands=[2, 3, 4, 5], quiet=True)[0]
    b = embed(ckpt, four, tmp_path / "b.tif", quiet=True)[0]
    with rasterio.open(a) as da, rasterio.open(b) as db:
        np.testing.assert_array_equal(da.read(), db.read())
        assert da.tags()["bands"] == "2,3,4,5"
