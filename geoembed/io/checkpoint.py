"""Self-contained checkpoints that load with ``torch.load(..., weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values (no pickled objects):
``format`` ("geoembed-checkpoint"), ``kind`` (e.g. "tile2vec", "weak"), ``geoembed_version``
and whatever the producer stores (model config, ``state_dict``, band statistics, bands,
tile size, training options, optimizer state, epoch).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

from geoembed import __version__
from geoembed.errors import CheckpointError, first_line
from geoembed.io.outputs import replace_path, temporary_sibling

FORMAT = "geoembed-checkpoint"

# torch is imported inside the two functions that need it: geoembed.evaluation imports this
# module and evaluates an embedding raster without torch (it reads a checkpoint only when
# given one), and torch's import takes seconds.


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any], kind: str) -> Path:
    """Write ``payload`` atomically (temporary file, then rename) with format markers."""
    import torch  # lazy: see the note above

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**payload, "format": FORMAT, "kind": kind, "geoembed_version": __version__}
    tmp = temporary_sibling(path)
    try:
        torch.save(data, tmp)
        replace_path(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, kind: str | None = None,
                    map_location: Any = "cpu") -> dict[str, Any]:
    """Load a geoembed checkpoint safely (``weights_only=True``) and check what it is.

    Raises:
        CheckpointError: missing file, corrupt file, a pickle with arbitrary objects,
            not a geoembed checkpoint, or a checkpoint of another kind.
    """
    import torch  # lazy: see the note above

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: not a plain weights file ({first_line(exc, 120)}); "
            "geoembed only loads checkpoints it wrote"
        ) from None
    except Exception as exc:  # zip errors, truncated files, EOF...
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                              f"{first_line(exc, 120)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a geoembed checkpoint")
    if kind is not None and data.get("kind") != kind:
        raise CheckpointError(
            f"{path}: a {data.get('kind')!r} checkpoint, but a {kind!r} checkpoint is needed"
        )
    return data


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file (recorded in outputs made from a checkpoint)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
