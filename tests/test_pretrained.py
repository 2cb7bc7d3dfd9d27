"""Transfer from pretrained weights: ``train --weights FILE`` with an smp encoder.

The weights files are written here: a torchvision-style resnet18 state dict (random values,
with a classifier head), a Lightning-style checkpoint with a ``backbone.`` prefix, 13-band
Sentinel-2 weights, and files that must be refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from geoembed.cli import cli

from geoembed.errors import CheckpointError, InputError
from geoembed.inference.embedding import embed
from geoembed.io.checkpoint import load_checkpoint
from geoembed.io.scenes import normalize, open_scene
from geoembed.models import build_encoder, encoder_from_checkpoint
from geoembed.models.pretrained import (
    SENTINEL2,
    adapt_first_conv,
    band_mapping,
    load_weights,
    weights_band_names,
)
from tests.conftest import write_raster

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCENE_BANDS = ("Blue", "Green", "Red", "NIR")


def _backbone_state(in_channels: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A resnet18 backbone state dict with seeded random values (not smp's init) and a
    classifier head, as torchvision's ``resnet18().state_dict()`` has."""
    import segmentation_models_pytorch as smp

    enc = smp.encoders.get_encoder("resnet18", in_channels=in_channels, weights=None)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in enc.state_dict().items():
        if v.is_floating_point():
            v = torch.randn(v.shape, generator=g) * 0.1 + (1.0 if "running_var" in k else 0.0)
            v = v.abs() if "running_var" in k else v
        state[k] = v
    state["fc.weight"] = torch.randn(10, 512, generator=g)
    state["fc.bias"] = torch.randn(10, generator=g)
    return state


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pretrained")
    rgb = _backbone_state()
    torch.save(rgb, d / "imagenet.pth")
    lightning = {"state_dict": {**{f"backbone.{k}": v for k, v in rgb.items()
                                   if not k.startswith("fc.")},
                                "projection_head.0.weight": torch.ones(4, 512)},
                 "epoch": 3, "hyper_parameters": {"lr": 0.1}}
    torch.save(lightning, d / "lightning.ckpt")
    s2 = dict(rgb)
    s2["conv1.weight"] = torch.randn(64, 13, 7, 7, generator=torch.Generator().manual_seed(5))
    torch.save(s2, d / "s2.pth")
    rng = np.random.default_rng(0)
    scene = write_raster(d / "scene.tif", rng.integers(50, 4000, (4, 64, 64)).astype(np.uint16))
    with rasterio.open(scene, "r+") as ds:
        ds.descriptions = SCENE_BANDS
    return {"imagenet": d / "imagenet.pth", "lightning": d / "lightning.ckpt",
            "s2": d / "s2.pth", "scene": scene, "dir": d}


def _assert_backbone_equal(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.encoder.state_dict()
    for k, v in got.items():
        if k != "conv1.weight":
            assert torch.equal(v, state[k]), k


def test_imagenet_state_dict_bands_matched_by_name(files):
    state = torch.load(files["imagenet"], weights_only=True)
    model = build_encoder("resnet18", 4, 0, weights=files["imagenet"], band_names=SCENE_BANDS)
    _assert_backbone_equal(model, state)
    w, src = model.encoder.conv1.weight.detach(), state["conv1.weight"]
    assert w.shape == (64, 4, 7, 7)
    # scene bands blue, green, red take the RGB weights' bands 3, 2, 1; NIR the scaled mean
    assert torch.equal(w[:, 0], src[:, 2]) and torch.equal(w[:, 1], src[:, 1])
    assert torch.equal(w[:, 2], src[:, 0])
    torch.testing.assert_close(w[:, 3], src.mean(dim=1) * 3 / 4)
    assert model.band_map == ["blue", "green", "red", None]
    assert model.z_dim == 512 and model(torch.zeros(2, 4, 32, 32)).shape == (2, 512)


def test_lightning_prefix_stripped_unnamed_bands_in_order(files):
    state = torch.load(files["imagenet"], weights_only=True)
    model = build_encoder("resnet18", 5, 16, weights=files["lightning"])
    _assert_backbone_equal(model, state)
    w, src = model.encoder.conv1.weight.detach(), state["conv1.weight"]
    for i in range(3):  # no names: the first three bands are RGB
        assert torch.equal(w[:, i], src[:, i])
    for i in (3, 4):
        torch.testing.assert_close(w[:, i], src.mean(dim=1) * 3 / 5)
    assert model.band_map == ["red", "green", "blue", None, None]
    assert model.eval()(torch.zeros(1, 5, 32, 32)).shape == (1, 16)  # projected to z_dim


def test_sentinel2_weights_matched_by_band_name(files):
    state = torch.load(files["s2"], weights_only=True)
    model = build_encoder("resnet18", 3, 0, weights=files["s2"], band_names=["B8", "b04", None])
    w, src = model.encoder.conv1.weight.detach(), state["conv1.weight"]
    assert torch.equal(w[:, 0], src[:, SENTINEL2.index("B08")])
    assert torch.equal(w[:, 1], src[:, SENTINEL2.index("B04")])
    torch.testing.assert_close(w[:, 2], src.mean(dim=1) * 13 / 3)
    _assert_backbone_equal(model, state)


def test_band_helpers_known_answers():
    weight = torch.tensor([[1.0, 2.0, 3.0]]).reshape(1, 3, 1, 1)
    out = adapt_first_conv(weight, [2, None, 0, None])
    assert out.flatten().tolist() == [3.0, 1.5, 1.0, 1.5]  # mean 2 * 3/4
    assert adapt_first_conv(weight, [None]).flatten().tolist() == [6.0]  # one band: the sum
    # ImageNet weights on a Sentinel-2 scene: --weights-bands B04,B03,B02
    names = weights_band_names("B04,B03,B02", 3)
    assert band_mapping(["B2", "B3", "B4", "B8"], names, 3) == [2, 1, 0, None]
    assert band_mapping(["B2", "B3"], weights_band_names(None, 3), 3) == [0, 1]  # in order
    assert band_mapping(["R", "x"], weights_band_names("rgb", 3), 3) == [0, None]
    # Sentinel-2 weights on a scene whose bands have common names (not B01..B12)
    assert band_mapping(["Blue", "Green", "Red", "NIR", "x"], SENTINEL2, 13) == [
        SENTINEL2.index(b) for b in ("B02", "B03", "B04", "B08")] + [None]
    assert weights_band_names(None, 13) == SENTINEL2 and weights_band_names(None, 4) is None
    with pytest.raises(InputError, match="names 2 bands"):
        weights_band_names("B04,B03", 3)


def test_whole_model_state_dict_loads_as_is(tmp_path):
    torch.manual_seed(1)
    src = build_encoder("tilenet", 3, 8, base_width=4)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "tilenet.pt")
    model = build_encoder("tilenet", 3, 8, base_width=4, weights=tmp_path / "tilenet.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
    assert not hasattr(model, "band_map")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_refused_and_mismatched_files(files, tmp_path):
    model = build_encoder("resnet18", 4, 0)
    marker = tmp_path / "marker"
    torch.save({"state_dict": {"conv1.weight": torch.ones(1)}, "x": _Evil(marker)},
               tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused to load") as err:
        load_weights(model, tmp_path / "evil.pth")
    assert "\n" not in str(err.value) and not marker.exists()

    state = torch.load(files["imagenet"], weights_only=True)
    bad = {k: v for k, v in state.items() if k != "layer4.1.bn2.weight"}
    bad["layer5.0.conv1.weight"] = torch.ones(3)
    torch.save(bad, tmp_path / "keys.pth")
    with pytest.raises(CheckpointError) as err:
        load_weights(model, tmp_path / "keys.pth")
    msg = str(err.value)
    assert "missing layer4.1.bn2.weight" in msg and "unexpected layer5.0.conv1.weight" in msg
    assert "fc." not in msg and "\n" not in msg

    shaped = dict(state, **{"layer1.0.conv1.weight": torch.ones(64, 64, 1, 1)})
    torch.save(shaped, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match="shapes differ: layer1.0.conv1.weight"):
        load_weights(model, tmp_path / "shape.pth")


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_epochs_0_checkpoint_embeds_like_the_pretrained_encoder(files, tmp_path):
    run = tmp_path / "run"
    res = _run("train", "--scenes", files["scene"], "--out", run, "--encoder", "resnet18",
               "--weights", files["lightning"], "--epochs", "0", "--z-dim", "0",
               "--tile-size", "32", "--neighborhood", "8", "--n-triplets", "4",
               "--device", "cpu", "--quiet")
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(run / "checkpoint.pt", kind="tile2vec")
    assert ckpt["epoch"] == 0 and ckpt["history"] == []
    assert ckpt["encoder"] == {"name": "resnet18", "in_channels": 4, "z_dim": 512,
                               "base_width": 16, "project": False}  # width: the cpu preset's
    assert ckpt["init_band_map"] == ["blue", "green", "red", None]
    want = build_encoder("resnet18", 4, 0, weights=files["lightning"],
                         band_names=SCENE_BANDS).eval()
    for k, v in want.state_dict().items():
        assert torch.equal(ckpt["state_dict"][k], v), k
    assert isinstance(encoder_from_checkpoint(ckpt).project, torch.nn.Identity)

    out = embed(run / "checkpoint.pt", files["scene"], tmp_path / "emb.tif", stride=16,
                quiet=True)[0]
    with rasterio.open(out) as ds:
        emb = ds.read()
    assert emb.shape == (512, 3, 3)
    scene = open_scene(files["scene"])
    data, valid = scene.read_with_mask(rasterio.windows.Window(0, 0, 64, 64))
    r, c = 16, 32  # output pixel (1, 2)
    x = normalize(data[None, :, r:r + 32, c:c + 32], ckpt["band_stats"],
                  valid[None, r:r + 32, c:c + 32])
    with torch.no_grad():
        direct = want(torch.from_numpy(x)).numpy()[0]
    np.testing.assert_allclose(emb[:, 1, 2], direct, rtol=1e-4, atol=1e-5)


def test_cli_bad_weights_exit_2(files, tmp_path):
    (tmp_path / "junk.pth").write_text("not a weights file")
    torch.save({"x": _Evil(tmp_path / "marker")}, tmp_path / "evil.pth")
    common = ["train", "--scenes", files["scene"], "--encoder", "resnet18", "--epochs", "0",
              "--tile-size", "32", "--neighborhood", "8", "--n-triplets", "4",
              "--device", "cpu", "--quiet"]
    cases = [(["--weights", tmp_path / "missing.pth"], "no such weights file"),
             (["--weights", tmp_path / "junk.pth"], "not a readable weights file"),
             (["--weights", tmp_path / "evil.pth"], "refused to load"),
             (["--weights", files["s2"], "--weights-bands", "rgb"], "has 13 input bands"),
             (["--weights-bands", "rgb"], "only with --weights")]
    for i, (args, message) in enumerate(cases):
        res = _run(*common, "--out", tmp_path / f"r{i}", *args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output and res.output.count("\n") == 1, (args, res.output)
        assert not (tmp_path / f"r{i}").exists()
    assert not (tmp_path / "marker").exists()
