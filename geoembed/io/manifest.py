"""The manifest of a sharded run: one JSON line per output, one file per shard.

Each shard appends to ``manifest-<I>-of-<N>.jsonl`` in the output folder (never another
shard's file, so shards writing at the same time cannot clobber each other's lines).
A record holds ``input``, ``output`` (its name in the folder), ``footprint`` (``bounds``
and ``crs`` of the output, and ``bounds_4326`` when it has a CRS), ``status``
(``written`` / ``skipped`` / ``failed``, with ``error`` when it failed), ``seconds``,
``checkpoint_sha256`` (None for a run without a checkpoint) and ``time``.
:func:`read_manifests` merges the files: the latest record per output wins.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds

from geoembed.errors import InputError, OutputExistsError

PATTERN = "manifest-*.jsonl"
STATUSES = ("written", "skipped", "failed")


def manifest_name(index: int = 0, count: int = 1) -> str:
    """``manifest-<index>-of-<count>.jsonl`` (an unsharded run is shard 0 of 1)."""
    return f"manifest-{index}-of-{count}.jsonl"


def footprint(path: str | os.PathLike) -> dict[str, Any]:
    """An output's footprint: ``bounds`` (left, bottom, right, top) and ``crs`` (EPSG code or
    WKT; None without a CRS), with ``bounds_4326`` (lon/lat) when it has a CRS."""
    with rasterio.open(path) as ds:
        bounds, crs = list(ds.bounds), ds.crs
    found: dict[str, Any] = {"bounds": bounds, "crs": None}
    if crs:
        epsg = crs.to_epsg()
        found["crs"] = f"EPSG:{epsg}" if epsg else crs.to_wkt()
        found["bounds_4326"] = list(transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))
    return found


def _read_lines(path: Path) -> list[dict[str, Any]]:
    records = []
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            # a line cut short by a killed process: the output it names is redone anyway
            if n != len(lines):
                raise InputError(f"{path}: line {n} is not JSON; remove the file") from None
    return records


def read_manifests(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Every shard's records merged: the latest (by ``time``) per output, sorted by output."""
    latest: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(folder).glob(PATTERN)):
        for rec in _read_lines(path):
            key = rec.get("output")
            if key is None:
                continue
            if key not in latest or rec.get("time", 0) >= latest[key].get("time", 0):
                latest[key] = rec
    return [latest[k] for k in sorted(latest)]


def check_checkpoint(folder: str | os.PathLike, sha256: str | None, overwrite: bool) -> None:
    """Refuse an output folder whose manifests come from another checkpoint, unless
    ``overwrite``, which removes those manifests (the outputs they list are redone).

    Raises:
        OutputExistsError: a manifest from another checkpoint without ``overwrite``.
    """
    for path in sorted(Path(folder).glob(PATTERN)):
        try:
            records = _read_lines(path)
        except FileNotFoundError:  # another shard removed it meanwhile
            continue
        other = {r.get("checkpoint_sha256") for r in records} - {sha256}
        if not other:
            continue
        if not overwrite:
            raise OutputExistsError(f"{path} lists outputs of another checkpoint "
                                    f"({sorted(map(str, other))[0][:12]}...); pass --overwrite "
                                    "to redo them, or use another output folder")
        path.unlink(missing_ok=True)


@dataclass
class ManifestWriter:
    """Appends this shard's records to its own manifest file, one flushed line each."""

    path: Path
    checkpoint_sha256: str | None

    @classmethod
    def for_shard(cls, folder: str | os.PathLike, sha256: str | None, index: int = 0,
                  count: int = 1) -> ManifestWriter:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder / manifest_name(index, count), sha256)

    def add(self, source: str, output: str | os.PathLike, status: str, seconds: float,
            error: str | None = None) -> dict:
        """Append one record (the footprint read from ``output`` when it exists; ``error``,
        why it failed, when given)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        output = Path(output)
        record = {
            "input": str(source), "output": output.name,
            "footprint": footprint(output) if status != "failed" and output.exists() else None,
            "status": status, "seconds": round(float(seconds), 3),
            "checkpoint_sha256": self.checkpoint_sha256, "time": time.time(),
        }
        if error is not None:
            record["error"] = error
        with open(self.path, "a") as f:  # one write per line; appends are not interleaved
            f.write(json.dumps(record) + "\n")
        return record
