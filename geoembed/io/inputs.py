"""Inputs of the many-scene commands: ``@list.txt`` files expanded, sorted, split into shards.

``embed``, ``segment`` and ``map`` take many inputs (paths, URLs, or ``@list.txt`` files
listing them). :func:`expand_inputs` turns them into one sorted list without repeats, and
:func:`select_shard` gives shard ``I`` of ``N`` every input whose index mod ``N`` is ``I``,
so that independent processes (a Slurm or AWS Batch job array, torchrun ranks) split the
work without talking to each other. The shard comes from ``--shard I/N`` or, failing that,
from the environment (:func:`resolve_shard`). Torch-free.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from geoembed.errors import InputError
from geoembed.io.paths import is_remote
from geoembed.io.stac import expand_stac

Expander = Callable[[str], "list[str] | None"]
EXPANDERS: list[Expander] = [expand_stac]
"""Hooks tried on every input, in order: one returns the inputs an item stands for (a STAC
ItemCollection -> its items...) or None to leave the item as it is."""


def _read_list(item: str) -> list[str]:
    """The inputs listed in ``@list.txt``: one a line, blanks and ``#`` comments skipped,
    relative paths taken from the list file's folder."""
    path = Path(item[1:])
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"{item}: cannot read the input list ({exc.strerror or exc})") from None
    inputs = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("@"):
            raise InputError(f"{path}: lists cannot name other lists ({text})")
        if not is_remote(text) and not os.path.isabs(text):
            text = os.path.normpath(path.parent / text)
        inputs.append(text)
    return inputs


def _expand_one(item: str, hooks: Sequence[Expander]) -> list[str]:
    """The inputs one command-line item stands for."""
    items = _read_list(item) if item.startswith("@") else [item]
    expanded = []
    for text in items:
        for hook in hooks:
            more = hook(text)
            if more is not None:
                expanded.extend(more)
                break
        else:
            expanded.append(text)
    return expanded


def _key(text: str) -> str:
    """What makes two inputs the same: the normalised absolute path, or the URL itself."""
    return text if is_remote(text) else os.path.normpath(os.path.abspath(text))


def expand_inputs(items: Sequence[str], expanders: Sequence[Expander] = ()) -> list[str]:
    """Expand ``@list.txt`` items (and the :data:`EXPANDERS` hooks); return the inputs sorted.

    ``expanders`` are tried before :data:`EXPANDERS` (e.g. STAC items with the command's
    ``--assets``: :func:`geoembed.io.stac.stac_expander`).

    Raises:
        InputError: no inputs, an unreadable list, or an input given twice.
    """
    inputs: list[str] = []
    for item in items:
        inputs.extend(_expand_one(os.fspath(item), [*expanders, *EXPANDERS]))
    if not inputs:
        raise InputError("no inputs: give scenes or @list.txt files that list them")
    seen: dict[str, str] = {}
    for text in inputs:
        key = _key(text)
        if key in seen:
            raise InputError(f"{text}: given twice (as {seen[key]}); each input may appear once")
        seen[key] = text
    return sorted(inputs)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based), and where it came from (for the log)."""

    index: int
    count: int
    source: str = field(default="--shard", compare=False)

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InputError(f"shard {self.index}/{self.count} ({self.source}): give I/N with "
                             "N >= 1 and 0 <= I < N (0-based)")

    @property
    def label(self) -> str:
        """``"1-of-4"``: the shard in file names (manifests)."""
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


_SHARD = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")


def parse_shard(text: str, source: str = "--shard") -> Shard:
    """``"1/4"`` -> ``Shard(1, 4)``.

    Raises:
        InputError: not ``I/N`` with whole numbers, ``N < 1`` or ``I`` outside ``0..N-1``.
    """
    match = _SHARD.match(text)
    if not match:
        raise InputError(f"{source} {text!r}: give I/N, the 0-based shard I of N, like 0/4")
    return Shard(int(match.group(1)), int(match.group(2)), source)


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise InputError(f"{name}={env[name]!r} is not a whole number") from None


def _slurm_shard(env: Mapping[str, str]) -> Shard:
    """The shard of a Slurm array task: ``(ID - MIN) / STEP`` of ``SLURM_ARRAY_TASK_COUNT``."""
    if "SLURM_ARRAY_TASK_COUNT" not in env:
        raise InputError("SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT; "
                         "pass --shard I/N")
    task, count = _env_int(env, "SLURM_ARRAY_TASK_ID"), _env_int(env, "SLURM_ARRAY_TASK_COUNT")
    low = _env_int(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
    step = _env_int(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
    offset, rest = divmod(task - low, max(step, 1))
    if rest or not 0 <= offset < count:
        raise InputError(f"Slurm array task {task} (min {low}, step {step}, count {count}) is "
                         "not one of a regular range; use --array=0-(N-1) or pass --shard I/N")
    return Shard(offset, count, "SLURM_ARRAY_TASK_ID")


def shard_from_env(env: Mapping[str, str], shards: int | None = None) -> Shard | None:
    """The shard the environment sets, or None.

    In order: a Slurm array task (``SLURM_ARRAY_TASK_ID``, ``SLURM_ARRAY_TASK_COUNT``, less
    ``SLURM_ARRAY_TASK_MIN``, over ``SLURM_ARRAY_TASK_STEP``); an AWS Batch array child
    (``AWS_BATCH_JOB_ARRAY_INDEX`` with ``shards``, the array size, which Batch does not
    export); a torchrun rank (``RANK`` of ``WORLD_SIZE``).

    Raises:
        InputError: an AWS Batch index without ``shards``, or values that make no shard.
    """
    if "SLURM_ARRAY_TASK_ID" in env:
        return _slurm_shard(env)
    if "AWS_BATCH_JOB_ARRAY_INDEX" in env:
        if shards is None:
            raise InputError("AWS_BATCH_JOB_ARRAY_INDEX is set: pass --shards N, the array "
                             "size, or --shard I/N")
        return Shard(_env_int(env, "AWS_BATCH_JOB_ARRAY_INDEX"), shards,
                     "AWS_BATCH_JOB_ARRAY_INDEX")
    if "RANK" in env and "WORLD_SIZE" in env:
        return Shard(_env_int(env, "RANK"), _env_int(env, "WORLD_SIZE"), "torchrun RANK")
    return None


def resolve_shard(shard: str | None, shards: int | None = None,
                  env: Mapping[str, str] | None = None) -> Shard | None:
    """``--shard I/N`` when given, else the environment's shard (:func:`shard_from_env`).

    ``shards`` (``--shards N``) alone, without an array index in the environment, is refused:
    it names no shard.
    """
    env = os.environ if env is None else env
    if shard is not None:
        return parse_shard(shard)
    found = shard_from_env(env, shards)
    if found is None and shards is not None:
        raise InputError("--shards N needs AWS_BATCH_JOB_ARRAY_INDEX in the environment; "
                         "outside AWS Batch pass --shard I/N")
    return found


def torchrun_local_rank(env: Mapping[str, str] | None = None) -> int | None:
    """``LOCAL_RANK`` under torchrun (the GPU this process should use), else None."""
    env = os.environ if env is None else env
    if "LOCAL_RANK" not in env or "WORLD_SIZE" not in env:
        return None
    return _env_int(env, "LOCAL_RANK")


def select_shard(inputs: Sequence[str], shard: Shard | None) -> list[str]:
    """The inputs shard ``I/N`` takes: every one whose index mod ``N`` is ``I`` (all when
    ``shard`` is None). ``inputs`` should be sorted (:func:`expand_inputs`)."""
    if shard is None:
        return list(inputs)
    return [text for i, text in enumerate(inputs) if i % shard.count == shard.index]
