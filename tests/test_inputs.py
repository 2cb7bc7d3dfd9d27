"""Inputs of the many-scene commands: @list files, sorting, shards from options and env."""

from __future__ import annotations

import os

import pytest

from geoembed.errors import InputError
from geoembed.io.inputs import (
    Shard,
    expand_inputs,
    parse_shard,
    resolve_shard,
    select_shard,
    shard_from_env,
    torchrun_local_rank,
)


def test_list_file_is_expanded_relative_to_its_folder_and_sorted(tmp_path):
    (tmp_path / "lists").mkdir()
    lst = tmp_path / "lists" / "scenes.txt"
    lst.write_text("# scenes\n\nb.tif\n  /data/a.tif  \nhttps://h/z.tif\n# c.tif\n")
    got = expand_inputs([f"@{lst}", "m.tif"])
    assert got == sorted([os.path.normpath(tmp_path / "lists" / "b.tif"), "/data/a.tif",
                          "https://h/z.tif", "m.tif"])


def test_duplicates_empty_and_unreadable_lists_are_refused(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("a.tif\n")
    with pytest.raises(InputError, match="given twice"):
        expand_inputs([f"@{lst}", str(tmp_path / "a.tif")])
    with pytest.raises(InputError, match="no inputs"):
        expand_inputs([])
    with pytest.raises(InputError, match="cannot read"):
        expand_inputs([f"@{tmp_path / 'missing.txt'}"])


@pytest.mark.parametrize("text", ["3/2", "-1/2", "0/0", "x/2", "1", "2/2"])
def test_bad_shards_are_refused(text):
    with pytest.raises(InputError):
        parse_shard(text)


def test_shard_takes_every_nth_input():
    inputs = ["a", "b", "c", "d", "e"]
    assert select_shard(inputs, parse_shard("0/2")) == ["a", "c", "e"]
    assert select_shard(inputs, parse_shard(" 1 / 2 ")) == ["b", "d"]
    assert select_shard(inputs, Shard(4, 6)) == ["e"]
    assert select_shard(inputs, Shard(5, 6)) == []
    assert select_shard(inputs, None) == inputs


def test_shard_from_the_environment():
    assert shard_from_env({}) is None
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_from_env(slurm) == Shard(3, 4, "SLURM_ARRAY_TASK_ID")
    # --array=1-4: ids 1..4 -> shards 0..3; --array=10-16:2 -> ids 10,12,14,16
    assert shard_from_env({**slurm, "SLURM_ARRAY_TASK_MIN": "1"}).index == 2
    stepped = {"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_COUNT": "4",
               "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_STEP": "2"}
    assert shard_from_env(stepped) == Shard(2, 4, "SLURM_ARRAY_TASK_ID")
    with pytest.raises(InputError, match="regular range"):  # --array=1,3,7: id 7 of 3
        shard_from_env({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3",
                        "SLURM_ARRAY_TASK_MIN": "1"})
    assert shard_from_env({"AWS_BATCH_JOB_ARRAY_INDEX": "2"}, shards=3) == Shard(2, 3, "x")
    with pytest.raises(InputError, match="--shards"):
        shard_from_env({"AWS_BATCH_JOB_ARRAY_INDEX": "2"})
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert shard_from_env(torchrun) == Shard(1, 2)
    assert torchrun_local_rank(torchrun) == 1 and torchrun_local_rank({}) is None


def test_the_option_wins_over_the_environment():
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}
    assert resolve_shard("0/3", env=env) == Shard(0, 3)
    assert resolve_shard(None, env=env) == Shard(1, 2)
    assert resolve_shard(None, env={}) is None
    with pytest.raises(InputError, match="AWS_BATCH_JOB_ARRAY_INDEX"):
        resolve_shard(None, shards=4, env={})
