"""Sharded, resumable embedding: shards in separate processes equal one run byte for byte,
Slurm / torchrun environments pick the same shards, reruns write only what is missing,
manifests per shard, bad --shard values exit 2 with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from geoembed.cli import cli

from geoembed.inference import embedding
from geoembed.io.manifest import read_manifests
from tests.test_embed import make_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning")
NAMES = ["a", "b", "c", "d"]
# the environment a job array / torchrun sets, kept away from the in-process runs
SHARD_ENV = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
             "SLURM_ARRAY_TASK_STEP", "AWS_BATCH_JOB_ARRAY_INDEX", "RANK", "WORLD_SIZE",
             "LOCAL_RANK")


@pytest.fixture(autouse=True)
def no_shard_env(monkeypatch):
    for name in SHARD_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def scenes(tmp_path, make_raster) -> dict:
    """Four 32 x 32 px scenes (2 x 2 windows of 16 px), listed in scenes.txt, and a checkpoint."""
    paths = [make_raster(f"{n}.tif", size=(32, 32), seed=i) for i, n in enumerate(NAMES)]
    (tmp_path / "scenes.txt").write_text("# four scenes\n" + "\n".join(
        p.name for p in reversed(paths)) + "\n")
    ckpt, _, _ = make_checkpoint(tmp_path / "c.pt", paths[0])
    return {"paths": paths, "ckpt": ckpt, "list": f"@{tmp_path / 'scenes.txt'}",
            "dir": tmp_path}


def run(*args: str, env: dict | None = None):
    return CliRunner(env=env).invoke(cli, ["embed", *map(str, args), "--quiet", "--device",
                                            "cpu"])


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*_embedding.tif"))}


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SHARD_ENV}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def test_two_shard_processes_equal_one_unsharded_run(scenes, tmp_path):
    whole = run(scenes["ckpt"], scenes["list"], "--out", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    procs = [subprocess.Popen(
        [sys.executable, "-m", "geoembed.cli", "embed", str(scenes["ckpt"]), scenes["list"],
         "--out", str(tmp_path / "sharded"), "--shard", f"{i}/2", "--quiet", "--device", "cpu"],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    logs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    want = outputs(tmp_path / "whole")
    assert sorted(want) == [f"{n}_embedding.tif" for n in NAMES]
    assert outputs(tmp_path / "sharded") == want  # byte-identical
    # each shard says what it took and lists exactly its outputs in its own manifest
    assert "shard 0/2 (from --shard): 2 of 4 inputs" in logs[0][1]
    assert f"{scenes['paths'][0]}, {scenes['paths'][2]}" in logs[0][1]
    for i, names in ((0, "ac"), (1, "bd")):
        lines = (tmp_path / "sharded" / f"manifest-{i}-of-2.jsonl").read_text().splitlines()
        recs = [json.loads(line) for line in lines]
        assert [r["output"] for r in recs] == [f"{n}_embedding.tif" for n in names]
        assert {r["status"] for r in recs} == {"written"}
        assert recs[0]["input"] == str(scenes["paths"][i])
    merged = read_manifests(tmp_path / "sharded")
    assert [r["output"] for r in merged] == sorted(want)
    # 32 px of 10 m from the fixture origin: 2 x 2 output pixels of 160 m
    assert merged[0]["footprint"]["bounds"] == [500000.0, 4199680.0, 500320.0, 4200000.0]
    assert merged[0]["footprint"]["crs"] == "EPSG:32610"


@pytest.mark.parametrize("env, names", [
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}, "bd"),
    # --array=1-2: task 1 is the first shard
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1"},
     "ac"),
])
def test_slurm_array_environment_selects_the_shard(scenes, tmp_path, env, names):
    res = run(scenes["ckpt"], scenes["list"], "--out", tmp_path / "o", env=env)
    assert res.exit_code == 0, res.output
    assert sorted(outputs(tmp_path / "o")) == [f"{n}_embedding.tif" for n in names]
    assert "(from SLURM_ARRAY_TASK_ID): 2 of 4 inputs" in res.stderr


def test_killed_run_is_finished_by_a_rerun(scenes, tmp_path, monkeypatch):
    out = tmp_path / "o"
    real = embedding._embed_scene
    calls = []

    def killed_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(embedding, "_embed_scene", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        embedding.embed(scenes["ckpt"], scenes["paths"], out, quiet=True, device="cpu")
    monkeypatch.setattr(embedding, "_embed_scene", real)
    assert sorted(outputs(out)) == ["a_embedding.tif"]
    first = (out / "a_embedding.tif").stat().st_mtime_ns
    stale = out / ".b_embedding.tif.0123abcd.tmp"  # what a SIGKILL leaves behind
    stale.write_bytes(b"half")

    res = run(scenes["ckpt"], scenes["list"], "--out", out)
    assert res.exit_code == 0, res.output
    assert (out / "a_embedding.tif").stat().st_mtime_ns == first  # not rewritten
    assert sorted(outputs(out)) == [f"{n}_embedding.tif" for n in NAMES]
    assert f"{out / 'a_embedding.tif'}: complete (same checkpoint and options), skipped" \
        in res.stderr
    assert f"removed {stale}" in res.stderr and not stale.exists()
    statuses = {r["output"][0]: r["status"] for r in read_manifests(out)}
    assert statuses == {"a": "skipped", "b": "written", "c": "written", "d": "written"}

    # other options: the existing output is not this run's, refused without --overwrite
    res = run(scenes["ckpt"], scenes["list"], "--out", out, "--stride", "8")
    assert res.exit_code == 2 and "not this checkpoint's output" in res.stderr
    res = run(scenes["ckpt"], scenes["list"], "--out", out, "--overwrite")
    assert res.exit_code == 0, res.output
    assert (out / "a_embedding.tif").stat().st_mtime_ns > first


def test_manifest_of_another_checkpoint_is_refused_unless_overwrite(scenes, tmp_path):
    out = tmp_path / "o"
    assert run(scenes["ckpt"], scenes["list"], "--out", out, "--shard", "0/4").exit_code == 0
    other, _, _ = make_checkpoint(tmp_path / "other.pt", seed=1)
    res = run(other, scenes["list"], "--out", out, "--shard", "1/4")
    assert res.exit_code == 2
    assert "lists outputs of another checkpoint" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run(other, scenes["list"], "--out", out, "--shard", "0/4", "--overwrite")
    assert res.exit_code == 0, res.output
    assert [p.name for p in out.glob("manifest-*")] == ["manifest-0-of-4.jsonl"]


def test_a_shard_without_inputs_exits_0_with_a_message(scenes, tmp_path):
    res = run(scenes["ckpt"], scenes["list"], "--out", tmp_path / "o", "--shard", "5/6")
    assert res.exit_code == 0, res.output
    assert "shard 5/6 has no inputs (4 inputs for 6 shards)" in res.stderr
    assert outputs(tmp_path / "o") == {}


@pytest.mark.parametrize("value", ["3/2", "-1/2", "0/0", "x/2"])
def test_bad_shard_exits_2_with_one_line(scenes, tmp_path, value):
    res = run(scenes["ckpt"], scenes["list"], "--out", tmp_path / "o", f"--shard={value}")
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("Error: ") and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_torchrun_two_cpu_processes_split_the_scenes(scenes, tmp_path):
    whole = run(scenes["ckpt"], scenes["list"], "--out", tmp_path / "whole")
    assert whole.exit_code == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", "-m", "geoembed.cli", "embed", str(scenes["ckpt"]), scenes["list"],
           "--out", str(tmp_path / "tr"), "--quiet"]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert outputs(tmp_path / "tr") == outputs(tmp_path / "whole")
    assert "(from torchrun RANK): 2 of 4 inputs" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "tr").glob("manifest-*")) == [
        "manifest-0-of-2.jsonl", "manifest-1-of-2.jsonl"]
