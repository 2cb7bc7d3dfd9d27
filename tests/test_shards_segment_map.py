"""`segment` and `map` over many scenes (issue 15): shards equal one run, reruns skip complete
outputs and redo unfinished ones, maps named by scene stem with one classifier per scene (a
scene without labels skipped), STAC items as segment inputs, bad --shard exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner
from geoembed.cli import cli
from rasterio.transform import from_origin

from geoembed.errors import LabelError
from geoembed.io.manifest import read_manifests
from geoembed.mapping.map import map as make_map
from tests.conftest import ORIGIN, PIXEL, write_raster
from tests.test_evaluation import BLOCK, block_center_labels, class_layout, points
from tests.test_shards import SHARD_ENV
from tests.test_stac import BANDS, write_item, write_stack
from tests.test_weak import TINY, point_labels, weak_scene

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning")]
SEG = "_segmentation.tif"
SIZE = 96  # map scenes: 96 x 96 px, class blocks of BLOCK px


@pytest.fixture(autouse=True)
def no_shard_env(monkeypatch):
    for name in SHARD_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def weak(tmp_path_factory) -> dict:
    """A tiny pixel-label U-Net (one epoch: only determinism matters here) and two 64 px
    scenes (scene1.tif, scene2.tif) listed in scenes.txt."""
    from geoembed.trainers.weak import weak_train

    tmp = tmp_path_factory.mktemp("weak")
    path, mask = weak_scene(tmp, size=64)
    res = weak_train(path, point_labels(tmp, mask, n=32), tmp / "run", label_type="pixel",
                     label_column="crop", tile_size=32, epochs=1, batch_size=8, quiet=True,
                     device="cpu", **TINY)
    (tmp / "scenes").mkdir()
    scenes = [weak_scene(tmp / "scenes", size=64, seed=seed)[0] for seed in (2, 1)]
    (tmp / "scenes.txt").write_text("# two scenes\n" + "\n".join(
        f"scenes/{p.name}" for p in scenes) + "\n")
    return {"ckpt": res.checkpoint, "scenes": sorted(scenes), "list": f"@{tmp / 'scenes.txt'}"}


def run(command: str, *args, env: dict | None = None):
    return CliRunner(env=env).invoke(cli, [command, *map(str, args), "--quiet"])


def segmentations(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob(f"*{SEG}"))}


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.suffix != ".jsonl"}


# ----------------------------------------------------------------------------- segment

def test_segment_shards_equal_one_unsharded_run(weak, tmp_path):
    whole = run("segment", weak["ckpt"], weak["list"], "--out", tmp_path / "whole",
                "--device", "cpu")
    assert whole.exit_code == 0, whole.output
    want = segmentations(tmp_path / "whole")
    assert sorted(want) == ["scene1" + SEG, "scene2" + SEG]
    logs = []
    for i in range(2):
        res = run("segment", weak["ckpt"], weak["list"], "--out", tmp_path / "sharded",
                  "--shard", f"{i}/2", "--device", "cpu")
        assert res.exit_code == 0, res.output
        logs.append(res.stderr)
    assert segmentations(tmp_path / "sharded") == want  # byte-identical
    assert f"shard 1/2 (from --shard): 1 of 2 inputs: {weak['scenes'][1]}" in logs[1]
    for i in range(2):
        [rec] = [json.loads(line) for line in (tmp_path / "sharded" / f"manifest-{i}-of-2.jsonl")
                 .read_text().splitlines()]
        assert (rec["input"], rec["output"], rec["status"]) == (
            str(weak["scenes"][i]), f"scene{i + 1}{SEG}", "written")
        # 64 px of 10 m from the fixture origin
        assert rec["footprint"]["bounds"] == [ORIGIN[0], ORIGIN[1] - 640, ORIGIN[0] + 640,
                                              ORIGIN[1]]
    # the Slurm environment selects the same shard
    res = run("segment", weak["ckpt"], weak["list"], "--out", tmp_path / "slurm", "--device",
              "cpu", env={"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"})
    assert res.exit_code == 0, res.output
    assert segmentations(tmp_path / "slurm") == {f"scene2{SEG}": want[f"scene2{SEG}"]}


def test_segment_rerun_skips_complete_outputs_and_redoes_unfinished_ones(weak, tmp_path):
    out = tmp_path / "o"
    args = ("segment", weak["ckpt"], weak["list"], "--out", out, "--device", "cpu",
            "--probabilities")
    assert run(*args).exit_code == 0
    assert sorted(p.name for p in out.glob("*.tif")) == [
        f"scene1{SEG}", "scene1_segmentation_probabilities.tif", f"scene2{SEG}",
        "scene2_segmentation_probabilities.tif"]
    before = mtimes(out)
    # a killed run: scene2's probabilities never renamed into place, a temporary left over
    (out / "scene2_segmentation_probabilities.tif").unlink()
    stale = out / ".scene2_segmentation_probabilities.tif.0123abcd.tmp"
    stale.write_bytes(b"half")
    res = run(*args)
    assert res.exit_code == 0, res.output
    after = mtimes(out)
    assert after[f"scene1{SEG}"] == before[f"scene1{SEG}"]  # skipped, not rewritten
    assert after["scene1_segmentation_probabilities.tif"] == \
        before["scene1_segmentation_probabilities.tif"]
    assert after[f"scene2{SEG}"] > before[f"scene2{SEG}"]  # redone with its probabilities
    assert "scene2_segmentation_probabilities.tif" in after and not stale.exists()
    assert f"{out / ('scene1' + SEG)}: complete (same checkpoint and options), skipped" \
        in res.stderr
    assert "unfinished (scene2_segmentation_probabilities.tif missing), redone" in res.stderr
    assert {r["output"]: r["status"] for r in read_manifests(out)} == {
        f"scene1{SEG}": "skipped", f"scene2{SEG}": "written"}
    # other options: not this run's outputs, refused without --overwrite
    res = run(*args[:-1], "--stride", "8")
    assert res.exit_code == 2 and "not this checkpoint's output" in res.stderr
    # one scene into a file keeps its old policy: an existing output needs --overwrite
    single = tmp_path / "one.tif"
    assert run("segment", weak["ckpt"], weak["scenes"][0], "--out", single,
               "--device", "cpu").exit_code == 0
    res = run("segment", weak["ckpt"], weak["scenes"][0], "--out", single, "--device", "cpu")
    assert res.exit_code == 2 and "exists; pass --overwrite" in res.stderr
    assert not list(tmp_path.glob("manifest-*"))


def test_segment_stac_item_like_the_stacked_file(weak, tmp_path, monkeypatch):
    """An item's assets (B08 at 20 m) stacked in a VRT segment to the same classes as the
    4-band file stacked by hand; the output is named by the item's id."""
    monkeypatch.setenv("GEOEMBED_CACHE", str(tmp_path / "cache"))
    item, stack = write_item(tmp_path / "item")
    local = write_stack(tmp_path / "stacked.tif", stack)
    out = tmp_path / "out"
    out.mkdir()
    res = run("segment", weak["ckpt"], item, "--out", out, "--assets", ",".join(BANDS),
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    ref = tmp_path / "ref.tif"
    assert run("segment", weak["ckpt"], local, "--out", ref, "--device", "cpu").exit_code == 0
    with rasterio.open(out / f"S2A_T10SEG_20240601{SEG}") as a, rasterio.open(ref) as b:
        assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
        np.testing.assert_array_equal(a.read(), b.read())
        assert set(np.unique(a.read(1))) >= {0, 1}  # not one constant class
        assert a.tags()["source"] == "S2A_T10SEG_20240601.vrt"


@pytest.mark.parametrize("command", ["segment", "map"])
@pytest.mark.parametrize("value", ["3/2", "x/2"])
def test_bad_shard_exits_2_with_one_line(weak, tmp_path, command, value):
    first = [weak["ckpt"]] if command == "segment" else []
    res = run(command, *first, weak["list"], "--out", tmp_path / "o", f"--shard={value}")
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("Error: ") and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- map

def map_scene(path: Path, x0: float, y0: float, shift: int) -> Path:
    """A 2-band scene whose band 1 is set by the class layout, classes rolled by ``shift``
    (the same brightness is another class in each scene: one classifier per scene)."""
    rng = np.random.default_rng(shift)
    cls = (class_layout(SIZE) + shift) % 3
    b1 = 200 + 300 * cls + rng.normal(0, 20, cls.shape)
    b2 = 500 + rng.normal(0, 50, cls.shape)
    return write_raster(path, np.stack([b1, b2]).astype("uint16"),
                        transform=from_origin(x0, y0, PIXEL, PIXEL))


@pytest.fixture
def map_inputs(tmp_path) -> dict:
    """west / east side by side with 90 labels each in one file; north without labels."""
    width = SIZE * PIXEL
    west = map_scene(tmp_path / "west.tif", ORIGIN[0], ORIGIN[1], 0)
    east = map_scene(tmp_path / "east.tif", ORIGIN[0] + width, ORIGIN[1], 1)
    north = map_scene(tmp_path / "north.tif", ORIGIN[0], ORIGIN[1] + width, 2)
    rows, cols, cls = block_center_labels(90, seed=2)
    gdf = pd.concat([points(west, rows, cols, [f"c{c}" for c in cls]),
                     points(east, rows, cols, [f"c{c}" for c in cls])], ignore_index=True)
    gdf.to_file(tmp_path / "labels.gpkg")
    return {"west": west, "east": east, "north": north, "labels": tmp_path / "labels.gpkg"}


def test_map_of_several_scenes_one_classifier_each_named_by_stem(map_inputs, tmp_path):
    out = tmp_path / "maps"
    opts = {"labels": map_inputs["labels"], "label_column": "cls", "features": "bands",
            "block_size": BLOCK, "quiet": True}
    runs = make_map([map_inputs[k] for k in ("east", "north", "west")], out, **opts)
    assert [r.status for r in runs] == ["written", "failed", "written"]
    assert "none of the 180 labels" in runs[1].error
    assert sorted(p.name for p in out.iterdir()) == [
        "east_map.json", "east_map.qml", "east_map.tif", "manifest-0-of-1.jsonl",
        "west_map.json", "west_map.qml", "west_map.tif"]
    truth = class_layout(SIZE)
    for name in ("west", "east"):
        with rasterio.open(out / f"{name}_map.tif") as ds:
            codes = ds.read(1)
            assert json.loads(ds.tags()["CLASS_NAMES"]) == ["c0", "c1", "c2"]
        assert (codes == truth).mean() >= 0.999  # each scene's own classifier
        report = json.loads((out / f"{name}_map.json").read_text())
        assert report["labels"]["outside"] == 90 and report["labels"]["used"] == 90
    status = {r["output"]: (r["status"], r.get("error", "")) for r in read_manifests(out)}
    assert status["north_map.tif"][0] == "failed"
    assert "none of the 180 labels" in status["north_map.tif"][1]
    # the CLI rerun skips both maps (mtimes unchanged) and retries north
    before = mtimes(out)
    res = run("map", map_inputs["east"], map_inputs["west"], map_inputs["north"],
              "--labels", map_inputs["labels"], "--label-column", "cls", "--features", "bands",
              "--block-size", BLOCK, "--out", out)
    assert res.exit_code == 0, res.output
    assert mtimes(out) == before
    assert f"{out / 'west_map.tif'}: complete (same options), skipped" in res.stdout
    assert "north.tif: no map, skipped (" in res.stderr
    # only the label-less scene: nothing to map is an error
    with pytest.raises(LabelError, match="none of the 180 labels"):
        make_map([map_inputs["north"]], tmp_path / "north", **opts)
