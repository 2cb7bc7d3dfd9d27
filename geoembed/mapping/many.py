"""Maps of many scenes: one classifier per scene, sharded and resumable like ``embed``.

:func:`run_maps` runs :func:`geoembed.mapping.map.run_map` on each scene of its shard
(:mod:`geoembed.io.sharded`). With several scenes (or a directory ``out``) each map is
``<scene stem>_map.tif`` in ``out`` with its ``_map.json``, ``_map.qml`` (and
``_map_confusion.png`` with a reference); ``probabilities`` / ``confidence`` name folders,
which get ``<scene stem>_map_probabilities.tif`` / ``_map_confidence.tif``. Labels are per
scene: each scene's classifier is fitted on the labels inside it (others dropped, as for one
scene). A scene whose labels make no map (none inside it, one class, too few per class for
the folds: a :class:`~geoembed.errors.LabelError`) is skipped with a warning and a
``failed`` manifest line saying why, and the run goes on; if no scene of the run gets a map,
that is the LabelError. One scene into a file behaves as ``map`` always did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geoembed.errors import LabelError, first_line
from geoembed.io.checkpoint import file_sha256
from geoembed.io.inputs import Shard
from geoembed.io.paths import is_remote
from geoembed.io.resume import OPTIONS_TAG, options_digest
from geoembed.io.sharded import as_inputs, output_targets, plan
from geoembed.mapping.config import MapConfig
from geoembed.mapping.map import Log, MapRun, default_log, map_paths, run_map
from geoembed.mapping.summary import options

OUTPUT_SUFFIX = "_map.tif"
#: options that do not change a map's files (left out of its options digest)
NOT_DIGESTED = ("overwrite", "quiet", "device", "batch_size")


def run_maps(scenes: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike,
             cfg: MapConfig, *, shard: Shard | None = None, log: Log | None = None
             ) -> list[MapRun]:
    """Map each scene of the shard (see the module docstring); the shard's runs in order.

    Raises:
        LabelError: the labels make no map of any scene of the run (of one scene: why).
        InputError, CRSError, RasterError, CheckpointError, OutputExistsError: bad input
            (nothing is written for a scene that fails; finished scenes are kept).
    """
    log = log or default_log(cfg)
    paths = as_inputs(scenes)
    output_targets(paths, out, OUTPUT_SUFFIX)  # bad --out / names: before any work
    sha = file_sha256(cfg.checkpoint) if cfg.checkpoint is not None else None
    run = plan(paths, out, OUTPUT_SUFFIX, shard=shard, sha256=sha, overwrite=cfg.overwrite,
               log=log)
    if not run.batch:  # one scene into a file: map's own output policy
        return [run_map(paths[i], run.targets[i], cfg, log) for i in run.mine]
    configs = {i: scene_config(cfg, run.targets[i]) for i in run.mine}
    stamp = {OPTIONS_TAG: options_digest(digested_options(cfg, sha))}
    if sha is not None:
        stamp["checkpoint_sha256"] = sha
    todo, done = run.pending(stamp, cfg.overwrite, companions=lambda i: list(
        map_paths(run.targets[i], configs[i]).values())[1:])
    runs = {i: _complete(run.targets[i], configs[i]) for i in done}
    for i in todo:
        try:
            with run.record(i):
                runs[i] = run_map(paths[i], run.targets[i], configs[i], log, tags=stamp)
        except LabelError as exc:
            if len(paths) == 1:
                raise
            log(f"Warning: {paths[i]}: no map, skipped ({first_line(exc)})")
            runs[i] = MapRun(report={}, map_path=run.targets[i],
                             json_path=run.targets[i].with_suffix(".json"),
                             warnings=[first_line(exc)], status="failed",
                             error=first_line(exc))
    if todo and all(r.status == "failed" for r in runs.values()):
        raise LabelError(f"no scene got a map: the labels make no map of any of the "
                         f"{len(runs)} scenes (see the warnings above)")
    return [runs[i] for i in run.mine]


def scene_config(cfg: MapConfig, target: Path) -> MapConfig:
    """A batch scene's options: ``probabilities`` / ``confidence`` folders become that
    scene's files there (``<map stem>_probabilities.tif``, ``<map stem>_confidence.tif``)."""
    changes = {}
    for name in ("probabilities", "confidence"):
        folder = getattr(cfg, name)
        if folder is not None:
            changes[name] = Path(folder) / f"{target.stem}_{name}.tif"
    return dataclasses.replace(cfg, **changes) if changes else cfg


def digested_options(cfg: MapConfig, sha256: str | None) -> dict[str, Any]:
    """What shapes a map's files: the options, the labels' contents, the checkpoint's
    SHA-256 and each embedding raster's size and modification time."""
    found = {k: v for k, v in options(cfg).items() if k not in NOT_DIGESTED}
    found["labels"] = content_digest(cfg.labels)
    found["labels_raster"] = content_digest(cfg.labels_raster)
    found["checkpoint"] = sha256
    found["embeddings"] = [_stat(p) for p in cfg.embeddings or ()]
    found["probabilities"] = cfg.probabilities is not None
    found["confidence"] = cfg.confidence is not None
    return found


def content_digest(value: Any) -> str | None:
    """SHA-256 of a local labels file (a shapefile with its .dbf), of a GeoDataFrame's
    GeoJSON, or the URL itself."""
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        if is_remote(value):
            return str(value)
        path = Path(value)
        parts = [path, path.with_suffix(".dbf")] if path.suffix.lower() == ".shp" else [path]
        return ",".join(file_sha256(p) for p in parts if p.is_file()) or str(path)
    if hasattr(value, "to_json"):
        return hashlib.sha256(value.to_json().encode()).hexdigest()
    return repr(value)


def _stat(path: Any) -> list:
    """A raster as the digest sees it: path, size and mtime (hashing GBs would cost more
    than a map)."""
    if is_remote(path) or not os.path.exists(path):
        return [str(path)]
    st = os.stat(path)
    return [str(path), st.st_size, st.st_mtime_ns]


def _complete(target: Path, cfg: MapConfig) -> MapRun:
    """A map a rerun found complete: its report read back from its JSON."""
    json_path = map_paths(target, cfg)["json"]
    return MapRun(report=json.loads(json_path.read_text()), map_path=target,
                  json_path=json_path, status="skipped")


__all__ = ["OUTPUT_SUFFIX", "content_digest", "digested_options", "run_maps", "scene_config"]
