"""The loop ``embed``, ``segment`` and ``map`` share over many inputs: output names, the
shard's inputs, resumable outputs and the manifest.

:func:`plan` names each input's output (``--out`` itself for one input unless it is a
folder; ``<out>/<input stem><suffix>`` otherwise), picks the shard's inputs, and, for a run
into a folder, refuses another checkpoint's manifests and opens this shard's
(:mod:`geoembed.io.manifest`). :meth:`ShardPlan.pending` removes temporaries left by a killed
run and skips outputs that are complete and this run's (:mod:`geoembed.io.resume`);
:meth:`ShardPlan.record` appends an output's manifest line. Torch-free.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoembed.errors import InputError, OutputExistsError
from geoembed.io.inputs import Shard, select_shard
from geoembed.io.manifest import ManifestWriter, check_checkpoint
from geoembed.io.outputs import remove_stale_temporaries
from geoembed.io.resume import matching_output

Log = Callable[[str], None]
Companions = Callable[[int], Sequence[Path]]


def as_inputs(scenes: str | os.PathLike | Sequence[str | os.PathLike]) -> list:
    """One path (or URL) as a list of one; a sequence as a list."""
    return [scenes] if isinstance(scenes, str | os.PathLike) else list(scenes)


def output_path_for(scene: str | os.PathLike, out: str | os.PathLike, n_scenes: int,
                    suffix: str) -> Path:
    """Where an input's output goes: ``out`` itself for one input unless it is a
    directory; ``out/<input stem><suffix>`` otherwise."""
    out = Path(out)
    if n_scenes == 1 and not out.is_dir():
        return out
    return out / f"{Path(scene).stem}{suffix}"


def output_targets(inputs: Sequence, out: str | os.PathLike, suffix: str) -> list[Path]:
    """The output path of each input; several inputs need a directory and distinct stems.

    Raises:
        InputError: no input, ``out`` a file for several inputs, or two inputs with one stem.
    """
    out = Path(out)
    if not inputs:
        raise InputError("no scene given")
    if len(inputs) > 1:
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: give a directory as --out for several scenes")
        stems = [Path(p).stem for p in inputs]
        dupes = sorted({s for s in stems if stems.count(s) > 1})
        if dupes:
            raise InputError(f"several scenes are named {dupes}: their outputs would collide")
    return [output_path_for(p, out, len(inputs), suffix) for p in inputs]


@dataclass
class ShardPlan:
    """The inputs of a run, their outputs, this shard's share and its manifest."""

    inputs: list
    targets: list[Path]
    mine: list[int]
    manifest: ManifestWriter | None
    say: Log

    @property
    def batch(self) -> bool:
        """A run into a folder (several inputs or a directory ``--out``), with a manifest."""
        return self.manifest is not None

    def pending(self, expected: Mapping[str, Any], overwrite: bool, *, resume: bool = True,
                companions: Companions | None = None) -> tuple[list[int], dict[int, Path]]:
        """This shard's inputs still to do, and the complete outputs skipped (by index).

        Temporaries a killed run left next to an output (or a companion file) are removed.
        With ``resume`` and without ``overwrite``, an existing output whose tags hold
        ``expected`` and the input's name (``source``) is skipped (a ``skipped`` manifest
        line) when its ``companions`` (files written with it) exist too; one whose
        companions are missing is this run's, left unfinished: it is removed and redone.

        Raises:
            OutputExistsError: an existing output of another checkpoint or other options.
        """
        todo, done = [], {}
        for i in self.mine:
            target = self.targets[i]
            extra = list(companions(i)) if companions else []
            for path in (target, *extra):
                for tmp in remove_stale_temporaries(path):
                    self.say(f"removed {tmp}, left by an interrupted run")
            if not resume or overwrite or not target.exists():
                todo.append(i)
                continue
            if not matching_output(target, {**expected, "source": Path(self.inputs[i]).name}):
                raise OutputExistsError(f"{target} exists and is not this checkpoint's "
                                        "output with these options; pass --overwrite to "
                                        "replace it")
            missing = [p for p in extra if not p.exists()]
            if missing:
                self.say(f"{target}: unfinished ({missing[0].name} missing), redone")
                for path in (target, *extra):
                    path.unlink(missing_ok=True)
                todo.append(i)
                continue
            self.say(f"{target}: complete (same checkpoint and options), skipped")
            done[i] = target
            if self.manifest:
                self.manifest.add(str(self.inputs[i]), target, "skipped", 0.0)
        return todo, done

    @contextmanager
    def record(self, i: int) -> Iterator[None]:
        """Time the ``with`` block writing input ``i``'s output and append its manifest line:
        ``written``, or ``failed`` (with the error's first line) when it raises."""
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            if self.manifest:
                self.manifest.add(str(self.inputs[i]), self.targets[i], "failed",
                                  time.perf_counter() - start, error=_first_line(exc))
            raise
        if self.manifest:
            self.manifest.add(str(self.inputs[i]), self.targets[i], "written",
                              time.perf_counter() - start)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def plan(inputs: Sequence, out: str | os.PathLike, suffix: str, *, shard: Shard | None,
         sha256: str | None, overwrite: bool, log: Log | None = None) -> ShardPlan:
    """Name the outputs, take the shard's inputs and open its manifest (into a folder).

    Logs the shard and the inputs it took, or that it has none.

    Raises:
        InputError: see :func:`output_targets`.
        OutputExistsError: the folder's manifests come from another checkpoint (without
            ``overwrite``; :func:`geoembed.io.manifest.check_checkpoint`).
    """
    say = log or (lambda _: None)
    inputs = list(inputs)
    out = Path(out)
    targets = output_targets(inputs, out, suffix)
    mine = [i for i, _ in select_shard(list(enumerate(inputs)), shard)]  # type: ignore[arg-type]
    manifest = None
    if len(inputs) > 1 or out.is_dir():
        check_checkpoint(out, sha256, overwrite)
        manifest = ManifestWriter.for_shard(out, sha256,
                                            *((shard.index, shard.count) if shard else (0, 1)))
    if shard is not None:
        names = ", ".join(str(inputs[i]) for i in mine) or "none"
        say(f"shard {shard} (from {shard.source}): {len(mine)} of {len(inputs)} inputs: "
            f"{names}")
    if not mine:
        say(f"shard {shard} has no inputs ({len(inputs)} inputs for {shard.count} shards)"
            if shard else "no inputs")
    return ShardPlan(inputs=inputs, targets=targets, mine=mine, manifest=manifest, say=say)


__all__ = ["ShardPlan", "as_inputs", "output_path_for", "output_targets", "plan"]
