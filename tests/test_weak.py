"""Weak supervision: U-CAM model, masked loss, CAM threshold, label datasets, weak_train."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from rasterio.transform import from_origin
from rasterio.windows import Window
from shapely.geometry import Point, box

from geoembed.datasets.weak import PointTiles
from geoembed.errors import InputError, LabelError, OutputExistsError, RasterError
from geoembed.io.checkpoint import load_checkpoint
from geoembed.io.scenes import band_statistics, open_scene
from geoembed.losses import IGNORE_INDEX, cam_image_loss, masked_pixel_loss
from geoembed.models.unet_cam import WeakUNet, weak_model_from_checkpoint
from geoembed.samplers.weak import polygon_window, random_subset
from geoembed.trainers.fit import read_metrics
from geoembed.trainers.weak import weak_train
from geoembed.trainers.weak_labels import (
    class_encoding,
    prepare_image_labels,
    prepare_pixel_labels,
)
from geoembed.trainers.weak_threshold import majority_scores, search_threshold
from geoembed.transforms import random_dihedral
from tests.conftest import ORIGIN, PIXEL, UTM_CRS, write_raster

TINY = {"encoder_depth": 3, "decoder_channels": (16, 8, 4)}
SIZE = 96
CELL = 24


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def weak_scene(tmp_path: Path, size: int = SIZE, seed: int = 0, border: int = 0
               ) -> tuple[Path, np.ndarray]:
    """A 4-band uint16 scene whose class 1 (a checkerboard of CELL px squares) is brighter
    and striped; returns (path, true mask (size, size) uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    mask = (((yy // CELL) + (xx // CELL)) % 2 == 0).astype(np.uint8)
    stripes = (xx % 4 < 2).astype(float)
    data = np.stack([1000 + 300.0 * mask * (0.5 + stripes) + rng.normal(0, 40, (size, size))
                     for _ in range(4)])
    data = np.clip(data, 1, None).astype(np.uint16)
    nodata = None
    if border:
        data[:, :border, :] = 0
        nodata = 0
    path = write_raster(tmp_path / f"scene{seed}.tif", data, nodata=nodata)
    return path, mask


def tile_labels(tmp_path: Path, mask: np.ndarray, tile: int = 32, crs: str = UTM_CRS,
                name: str = "tiles.gpkg", shift: float = 0.0) -> Path:
    """Tile polygons on a ``tile`` grid with ``crop`` = 1 when >= half the tile is class 1
    (``row``, ``col``: the tile's top-left pixel)."""
    rows = []
    for r in range(0, mask.shape[0] - tile + 1, tile // 2):
        for c in range(0, mask.shape[1] - tile + 1, tile // 2):
            frac = mask[r:r + tile, c:c + tile].mean()
            x0 = ORIGIN[0] + c * PIXEL + shift
            y1 = ORIGIN[1] - r * PIXEL
            rows.append({"crop": int(frac >= 0.5), "frac": frac, "row": r, "col": c,
                         "geometry": box(x0, y1 - tile * PIXEL, x0 + tile * PIXEL, y1)})
    gdf = gpd.GeoDataFrame(rows, crs=UTM_CRS).to_crs(crs)
    path = tmp_path / name
    gdf.to_file(path)
    return path


def point_labels(tmp_path: Path, mask: np.ndarray, n: int = 40, seed: int = 0,
                 crs: str = "EPSG:4326", name: str = "points.gpkg") -> Path:
    """Random labelled pixel centres (reprojected to ``crs``)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, mask.shape[0], n)
    cols = rng.integers(0, mask.shape[1], n)
    geoms = [Point(ORIGIN[0] + (c + 0.5) * PIXEL, ORIGIN[1] - (r + 0.5) * PIXEL)
             for r, c in zip(rows, cols, strict=True)]
    gdf = gpd.GeoDataFrame({"crop": mask[rows, cols].astype(int), "row": rows, "col": cols},
                           geometry=geoms, crs=UTM_CRS).to_crs(crs)
    path = tmp_path / name
    gdf.to_file(path)
    return path


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tile", [50, 32, 21])
def test_cam_has_the_input_tile_shape_and_averages_to_the_image_logit(tile):
    torch.manual_seed(0)
    model = WeakUNet(4, 2, "image", **TINY).eval()
    x = torch.randn(3, 4, tile, tile)
    valid = torch.ones(3, tile, tile, dtype=torch.bool)
    valid[0, :, : tile // 3] = False
    with torch.no_grad():
        cam = model(x)
        pooled = model(x, valid, image_logits=True)
    assert cam.shape == (3, 1, tile, tile)
    assert pooled.shape == (3, 1)
    # CAM = the image head applied per pixel: its valid-pixel mean is the image logit
    v = valid[:, None].float()
    mean_cam = (cam * v).sum((2, 3)) / v.sum((2, 3))
    torch.testing.assert_close(mean_cam, pooled, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tile", [64, 50])
def test_pixel_models_are_smp_unets_on_the_reflect_padded_tile(tile):
    """A pixel / dense model is smp's U-Net with the same weights: encoder and decoder run
    on the tile reflect-padded to the encoder's stride (8 at depth 3), the decoder output is
    cropped back, then the segmentation head (a 3x3 conv: zero padding at the tile's edge)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, tile, tile)
    pad = (-tile) % 8
    lo, hi = pad // 2, pad - pad // 2
    for label_type, n_classes in (("pixel", 2), ("dense", 3)):
        model = WeakUNet(3, n_classes, label_type, **TINY).eval()
        unet = smp.Unet("resnet18", encoder_depth=3, encoder_weights=None,
                        decoder_channels=TINY["decoder_channels"], in_channels=3,
                        classes=1 if n_classes == 2 else n_classes).eval()
        state = {k.replace("cam_head.", "segmentation_head."): v
                 for k, v in model.state_dict().items()}
        missing, unexpected = unet.load_state_dict(state, strict=False)
        assert not unexpected and all(k.startswith(("encoder.layer3", "encoder.layer4"))
                                      for k in missing)
        with torch.no_grad():
            feats = unet.decoder(unet.encoder(F.pad(x, (lo, hi, lo, hi), mode="reflect")))
            expected = unet.segmentation_head(feats[..., lo:lo + tile, lo:lo + tile])
            torch.testing.assert_close(model(x), expected)
            if not pad:
                torch.testing.assert_close(model(x), unet(x))


def test_multiclass_cams_average_to_the_image_logits():
    torch.manual_seed(0)
    model = WeakUNet(3, 4, "image", **TINY).eval()
    x = torch.randn(2, 3, 50, 50)
    with torch.no_grad():
        cam, pooled = model(x), model(x, image_logits=True)
    assert pooled.shape == (2, 4)
    torch.testing.assert_close(cam.mean((2, 3)), pooled, atol=1e-5, rtol=1e-5)


def test_cam_head_sits_on_the_decoder_output():
    model = WeakUNet(4, 2, "image", **TINY)
    assert model.cam_head.in_features == TINY["decoder_channels"][-1]
    # unused ResNet stages are dropped (no gradient-less parameters)
    assert not hasattr(model.encoder, "layer3") and not hasattr(model.encoder, "layer4")


def test_bad_model_options_are_input_errors():
    with pytest.raises(InputError, match="decoder channels"):
        WeakUNet(4, 2, "image", encoder_depth=3, decoder_channels=(8, 4))
    with pytest.raises(InputError, match="unknown encoder"):
        WeakUNet(4, 2, "image", encoder="nope")


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_out", [1, 3])
def test_masked_loss_ignores_unlabelled_pixels(n_out):
    torch.manual_seed(0)
    target = torch.full((2, 8, 8), IGNORE_INDEX, dtype=torch.long)
    target[0, 1, 2] = 1
    target[1, 5, 6] = 0
    target[1, 7, 0] = min(2, n_out)  if n_out > 1 else 1
    labelled = target != IGNORE_INDEX
    base = torch.randn(2, n_out, 8, 8)

    def loss_and_grad(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = logits.clone().requires_grad_(True)
        loss = masked_pixel_loss(logits, target, pos_weight=2.0 if n_out == 1 else None)
        loss.backward()
        return loss.detach(), logits.grad

    loss1, grad1 = loss_and_grad(base)
    changed = base.clone()
    changed[~labelled[:, None].expand_as(changed)] = torch.randn(
        int((~labelled).sum()) * n_out) * 100
    loss2, grad2 = loss_and_grad(changed)
    assert torch.equal(loss1, loss2)
    torch.testing.assert_close(grad1, grad2)
    assert grad1[~labelled[:, None].expand_as(grad1)].abs().max() == 0
    assert grad1[labelled[:, None].expand_as(grad1)].abs().min() > 0
    # changing a labelled logit does change the loss
    changed[0, 0, 1, 2] += 3.0
    assert not torch.equal(loss_and_grad(changed)[0], loss1)


def test_masked_loss_without_labels_is_zero_with_a_graph():
    logits = torch.randn(1, 1, 4, 4, requires_grad=True)
    loss = masked_pixel_loss(logits, torch.full((1, 4, 4), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0 and logits.grad.abs().max() == 0


def test_cam_image_loss_reweights_positives():
    logits = torch.tensor([[0.3], [-0.2]])
    y = torch.tensor([1, 0])
    plain = cam_image_loss(logits, y)
    weighted = cam_image_loss(logits, y, pos_weight=3.0)
    bce_pos = torch.nn.functional.softplus(-torch.tensor(0.3))
    bce_neg = torch.nn.functional.softplus(torch.tensor(-0.2))
    torch.testing.assert_close(plain, (bce_pos + bce_neg) / 2)
    torch.testing.assert_close(weighted, (3 * bce_pos + bce_neg) / 2)


# ---------------------------------------------------------------------------------------------
# CAM threshold
# ---------------------------------------------------------------------------------------------

def test_majority_score_is_the_more_than_half_cutoff():
    rng = np.random.default_rng(0)
    cams = torch.from_numpy(rng.normal(size=(6, 5, 7)))
    valid = torch.from_numpy(rng.random((6, 5, 7)) > 0.3)
    s = majority_scores(cams, valid).numpy()
    for i in range(6):
        v = cams[i][valid[i]].numpy()
        for t in np.concatenate([v, v - 1e-9, v + 1e-9]):
            assert ((v > t).sum() > len(v) / 2) == (s[i] > t)
    # 4 pixels 1..4: "more than half above t" holds for t < 2
    assert majority_scores(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]))[0] == 2.0


def test_threshold_search_picks_the_separating_value():
    # positives' majority scores 2, 3, 4; negatives' -1, 0, 1: any t in [1, 2) is perfect
    t, acc = search_threshold(np.array([2, 3, 4, -1, 0, 1.0]), np.array([1, 1, 1, 0, 0, 0]))
    assert acc == 1.0 and t == pytest.approx(1.5)
    # one negative at 2.5 among the positives: the best t is still in [1, 2), 5/6 correct
    # (t in [2.5, 3) ties at 5/6: the first best interval wins, its middle is 1.0)
    t, acc = search_threshold(np.array([2, 3, 4, -1, 0, 2.5]), np.array([1, 1, 1, 0, 0, 0]))
    assert acc == pytest.approx(5 / 6) and t == pytest.approx(1.0)
    # all positive is best: one unit below the lowest score
    t, acc = search_threshold(np.array([5.0, 6.0, 1.0]), np.array([1, 1, 1]))
    assert acc == 1.0 and t == pytest.approx(0.0)
    # all negative is best: one unit above the highest score
    t, acc = search_threshold(np.array([5.0, 6.0, 1.0]), np.array([0, 0, 0]))
    assert acc == 1.0 and t == pytest.approx(7.0)


def test_threshold_search_matches_brute_force():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=40)
    labels = (scores + rng.normal(0, 0.7, 40) > 0.2).astype(int)
    t, acc = search_threshold(scores, labels)
    grid = np.linspace(-4, 4, 4001)
    brute = max(((scores > g) == labels).mean() for g in grid)
    assert acc == pytest.approx(brute)
    assert ((scores > t) == labels).mean() == pytest.approx(acc)


# ---------------------------------------------------------------------------------------------
# datasets and labels
# ---------------------------------------------------------------------------------------------

def test_augmentation_moves_image_and_label_together():
    torch.manual_seed(1)
    x = torch.arange(16.0).reshape(1, 4, 4)
    y = torch.arange(16).reshape(4, 4)
    seen = set()
    for _ in range(40):
        xa, ya = random_dihedral(x, y)
        assert torch.equal(xa[0].long(), ya)
        seen.add(tuple(ya.flatten().tolist()))
    assert len(seen) == 8


def test_point_tiles_put_every_labelled_point_of_the_tile_in_the_target(tmp_path):
    path, mask = weak_scene(tmp_path)
    scene = open_scene(path)
    stats = band_statistics([scene], n_windows=4, window_size=64)
    rows = np.array([48, 52, 90, 50])
    cols = np.array([48, 50, 3, 95])
    codes = np.array([1, 0, 1, 0])
    ds = PointTiles([scene], np.zeros(4, int), rows, cols, codes, 32, stats, augment=False)
    positions, with_neighbour = set(), 0
    for seed in range(20):
        torch.manual_seed(seed)
        x, target = ds[0]
        assert x.shape == (4, 32, 32) and target.shape == (32, 32)
        hits = {tuple(h) for h in (target != IGNORE_INDEX).nonzero().tolist()}
        # the window is recovered from point 0's position in the tile
        (pr, pc), = [h for h in hits if target[h] == 1]
        r0, c0 = 48 - pr, 48 - pc
        inside = r0 <= 52 < r0 + 32 and c0 <= 50 < c0 + 32
        assert hits == ({(pr, pc), (52 - r0, 50 - c0)} if inside else {(pr, pc)})
        with_neighbour += inside
        positions.add((pr, pc))
    assert len(positions) > 15  # the point's position in the tile is random
    assert 0 < with_neighbour < 20
    # clipped at the scene's edge: the point is still inside its tile
    w = ds.window_for(3, 0, 0)
    assert w.col_off == SIZE - 32 and w.col_off <= 95 < w.col_off + 32
    t = ds.target_for(3, w)
    assert t[50 - w.row_off, 95 - w.col_off] == 0


def test_class_encoding():
    enc = class_encoding([0, 1, 1, 0], None)
    assert enc.names == ["0", "1"] and enc.encode([1, 0, 1.0]).tolist() == [1, 0, 1]
    enc = class_encoding([3, 4, 5, 6], ["3", "5"])
    assert enc.names == ["not 3,5", "3,5"] and enc.encode([3, 4, 5, 6]).tolist() == [1, 0, 1, 0]
    enc = class_encoding([10, 2, 2], None)
    assert enc.names == ["2", "10"]  # numeric order, not string order
    with pytest.raises(LabelError, match="only one class"):
        class_encoding([1, 1], None)
    with pytest.raises(LabelError, match="no label equals"):
        class_encoding([0, 1], ["7"])


def test_image_labels_read_the_scene_pixels_of_each_polygon(tmp_path):
    path, mask = weak_scene(tmp_path)
    scene = open_scene(path)
    stats = band_statistics([scene], n_windows=4, window_size=64)
    tiles = tile_labels(tmp_path, mask, crs="EPSG:4326")  # back in UTM: the same pixels
    prep = prepare_image_labels([scene], tiles, "crop", tile=32, stats=stats)
    gdf = gpd.read_file(tiles)
    assert prep.n_labels == len(gdf) == 25 and prep.n_outside == prep.n_nodata == 0
    with rasterio.open(path) as src:
        raw = src.read().astype(np.float64)
    mean, std = np.array(stats.mean)[:, None, None], np.array(stats.std)[:, None, None]
    for i, (r, c, crop) in enumerate(zip(gdf["row"], gdf["col"], gdf["crop"], strict=True)):
        assert prep.dataset.windows[i] == Window(c, r, 32, 32)
        x, valid = prep.dataset.read(i)
        np.testing.assert_allclose(x, (raw[:, r:r + 32, c:c + 32] - mean) / std, atol=1e-5)
        assert valid.all() and prep.codes[i] == crop


def test_point_labels_label_the_pixel_they_were_made_from(tmp_path):
    path, mask = weak_scene(tmp_path, border=8)  # rows 0-7 are nodata
    scene = open_scene(path)
    stats = band_statistics([scene], n_windows=4, window_size=64)
    gdf = gpd.read_file(point_labels(tmp_path, mask, n=40))  # EPSG:4326
    far = np.arange(40) < 5
    gdf.loc[far, "geometry"] = gdf.geometry[far].translate(5.0, 0)  # 5 degrees east
    prep = prepare_pixel_labels([scene], gdf, "crop", tile=32, stats=stats)
    on_nodata = ~far & (gdf["row"].to_numpy() < 8)
    kept = gdf[~far & ~on_nodata]
    assert (prep.n_outside, prep.n_nodata, prep.n_labels) == (5, on_nodata.sum(), len(kept))
    ds = prep.dataset
    np.testing.assert_array_equal(ds.rows, kept["row"])
    np.testing.assert_array_equal(ds.cols, kept["col"])
    np.testing.assert_array_equal(ds.codes, mask[kept["row"], kept["col"]])
    for i in range(len(kept)):  # the point at (5, 7) in its tile (shifted inside the scene)
        w = ds.window_for(i, 5, 7)
        r, c = ds.rows[i], ds.cols[i]
        assert w == Window(min(max(c - 7, 0), SIZE - 32), min(max(r - 5, 0), SIZE - 32), 32, 32)
        assert ds.target_for(i, w)[r - w.row_off, c - w.col_off] == ds.codes[i]


def _tiny_train(scene, labels, out, **kw):
    args = {"tile_size": 32, "epochs": 1, "batch_size": 8, "quiet": True, "device": "cpu",
            **TINY}
    args.update(kw)
    return weak_train(scene, labels, out, **args)


def test_bad_labels_are_clear_errors(tmp_path):
    path, mask = weak_scene(tmp_path)
    tiles = tile_labels(tmp_path, mask)
    with pytest.raises(LabelError, match="no column 'klass'"):
        _tiny_train(path, tiles, tmp_path / "r1", label_type="image", label_column="klass")
    far = tile_labels(tmp_path, mask, name="far.gpkg", shift=1e6)
    with pytest.raises(LabelError, match="inside"):
        _tiny_train(path, far, tmp_path / "r2", label_type="image", label_column="crop")
    far_pts = gpd.read_file(point_labels(tmp_path, mask, crs=UTM_CRS, name="p.gpkg"))
    far_pts["geometry"] = far_pts.geometry.translate(1e6, 0)
    with pytest.raises(LabelError, match="falls on a valid pixel"):
        _tiny_train(path, far_pts, tmp_path / "r3", label_type="pixel", label_column="crop")
    one = gpd.read_file(tiles)
    one["crop"] = 1
    with pytest.raises(LabelError, match="only one class"):
        _tiny_train(path, one, tmp_path / "r4", label_type="image", label_column="crop")
    with pytest.raises(InputError, match="--label-column"):
        _tiny_train(path, tiles, tmp_path / "r5", label_type="pixel")
    # a dense label raster on another grid
    other = write_raster(tmp_path / "other.tif", mask[None, :80, :80].copy(),
                         transform=from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL))
    with pytest.raises(RasterError, match="not on the scene's grid"):
        _tiny_train(path, other, tmp_path / "r6", label_type="dense")
    shifted = write_raster(tmp_path / "shifted.tif", mask[None].copy(),
                           transform=from_origin(ORIGIN[0] + 5, ORIGIN[1], PIXEL, PIXEL))
    with pytest.raises(RasterError, match="transform differs"):
        _tiny_train(path, shifted, tmp_path / "r7", label_type="dense")


def test_pixel_training_reduces_the_loss_and_resumes(tmp_path):
    path, mask = weak_scene(tmp_path)
    points = point_labels(tmp_path, mask, n=48)
    out = tmp_path / "run"
    res = _tiny_train(path, points, out, label_type="pixel", label_column="crop", epochs=6,
                      lr=3e-3)
    losses = [r["loss"] for r in res.history]
    assert len(losses) == 6
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2])
    assert res.n_labels == 48 and res.threshold is None
    ckpt = load_checkpoint(res.checkpoint, kind="weak")
    assert ckpt["label_type"] == "pixel" and ckpt["class_names"] == ["0", "1"]
    assert ckpt["tile_size"] == 32 and len(ckpt["band_stats"]["mean"]) == 4
    assert ckpt["model"]["decoder_channels"] == [16, 8, 4]
    with pytest.raises(OutputExistsError):
        _tiny_train(path, points, out, label_type="pixel", label_column="crop")
    # resume to 7 epochs: one more epoch, the same first six
    res2 = _tiny_train(path, points, out, label_type="pixel", label_column="crop", epochs=7,
                       lr=3e-3, resume=True)
    assert len(res2.history) == 7
    assert [r["loss"] for r in res2.history[:6]] == pytest.approx(losses)
    assert len(read_metrics(out / "metrics.csv")) == 7


def test_image_training_stores_a_cam_threshold(tmp_path):
    path, mask = weak_scene(tmp_path)
    tiles = tile_labels(tmp_path, mask, crs="EPSG:4326")  # reprojected to whole pixels
    res = _tiny_train(path, tiles, tmp_path / "run", label_type="image", label_column="crop",
                      epochs=2, max_labels=20)
    assert (res.n_labels, res.n_input, res.n_unused, res.n_outside) == (20, 25, 5, 0)
    ckpt = load_checkpoint(res.checkpoint, kind="weak")
    assert ckpt["threshold"] == pytest.approx(res.threshold)
    # the 20 tiles trained on; positives weighted by negatives / positives among them
    gdf = gpd.read_file(tiles).iloc[random_subset(25, 20, seed=0)]
    crop = gdf["crop"].to_numpy()
    assert ckpt["pos_weight"] == pytest.approx((crop == 0).sum() / (crop == 1).sum())
    # the stored accuracy is the threshold's on those images, recomputed from their pixels;
    # 0.9 today after 2 epochs (calling every tile positive scores 0.75)
    model = weak_model_from_checkpoint(ckpt)
    with rasterio.open(path) as src:
        raw = src.read().astype(np.float64)
    mean = np.array(ckpt["band_stats"]["mean"])[:, None, None]
    std = np.array(ckpt["band_stats"]["std"])[:, None, None]
    x = np.stack([(raw[:, r:r + 32, c:c + 32] - mean) / std
                  for r, c in zip(gdf["row"], gdf["col"], strict=True)])
    with torch.no_grad():
        cams = model(torch.from_numpy(x).float())[:, 0]
    called = majority_scores(cams).numpy() > ckpt["threshold"]
    assert ckpt["threshold_accuracy"] == pytest.approx((called == crop).mean())
    assert ckpt["threshold_accuracy"] >= 0.85


def test_dense_training_with_positive_values(tmp_path):
    path, mask = weak_scene(tmp_path)
    lab = (mask * 3 + 2).astype(np.uint8)  # classes 2 and 5; 255 = unlabelled
    lab[:8] = 255
    lab_path = write_raster(tmp_path / "lab.tif", lab[None], nodata=255)
    res = _tiny_train(path, lab_path, tmp_path / "run", label_type="dense", positive=["5"],
                      max_labels=5)
    assert res.class_names == ["not 5", "5"] and res.n_labels == 5
    ckpt = load_checkpoint(res.checkpoint, kind="weak")
    assert ckpt["positive"] == ["5"] and ckpt["class_values"] == [["2"], ["5"]]
    assert res.extra["pixel_counts"][1] == int((lab == 5).sum())


def test_image_windows_are_whole_pixels_in_the_scene(tmp_path):
    path, _ = weak_scene(tmp_path)
    transform = open_scene(path).transform
    x0, y1 = ORIGIN[0] + 10 * PIXEL, ORIGIN[1] - 20 * PIXEL
    w = polygon_window((x0, y1 - 50 * PIXEL, x0 + 50 * PIXEL, y1), transform)
    assert w == Window(10, 20, 50, 50)
    w = polygon_window((x0 + 1, y1 - 50 * PIXEL + 1, x0 + 50 * PIXEL - 1, y1 - 1), transform)
    assert w == Window(10, 20, 50, 50)


def test_points_on_nodata_skip_untransformable_points(make_raster):
    """A point that cannot be reprojected is not counted, and the others keep their rows."""
    from pyproj import Transformer

    from geoembed.trainers.weak_labels import _points_on_nodata

    scene = open_scene(make_raster("s.tif", size=(32, 32), border=4))
    to_lonlat = Transformer.from_crs(UTM_CRS, "EPSG:4326", always_xy=True)
    cells = [(0, 0), (16, 16), (31, 2), (10, 20)]  # nodata, valid, nodata, valid
    pts = [Point(*to_lonlat.transform(ORIGIN[0] + (c + 0.5) * PIXEL,
                                      ORIGIN[1] - (r + 0.5) * PIXEL)) for r, c in cells]
    pts.insert(1, Point(0, 95))  # latitude 95: no UTM coordinates
    gdf = gpd.GeoDataFrame({"v": range(5)}, geometry=pts, crs="EPSG:4326", index=[9, 7, 5, 3, 1])
    assert _points_on_nodata(gdf, scene).tolist() == [True, False, False, True, False]
