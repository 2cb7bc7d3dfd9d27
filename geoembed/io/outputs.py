"""The output policy: an existing output needs ``overwrite``; results are written to a temporary
sibling and renamed into place, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geoembed.errors import OutputExistsError
from geoembed.io.paths import require_local


def check_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse a remote output, or an existing one unless ``overwrite``; make the parent
    directory."""
    require_local(path)
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A hidden temporary path next to ``path`` (same filesystem, so rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def replace_path(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``, replacing a file or a directory that is there."""
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.replace(tmp, final)


@contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False, *,
                  directory: bool = False) -> Iterator[Path]:
    """Write an output under a temporary name and rename it into place on success.

    Checks the policy first (:func:`check_output`). Yields the temporary path (a fresh empty
    directory when ``directory``); if the ``with`` block raises, the temporary output is
    removed and nothing appears at ``path``.

    Example:
        >>> with atomic_output("report.json", overwrite=True) as tmp:
        ...     tmp.write_text("{}")
    """
    final = check_output(path, overwrite)
    tmp = temporary_sibling(final)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        replace_path(tmp, final)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary siblings of ``path`` (:func:`temporary_sibling` names) left by a run that
    was killed before it could rename or remove them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.tmp$")
    return sorted(p for p in path.parent.iterdir() if pattern.match(p.name))


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove what :func:`stale_temporaries` finds (call it only from the process that owns
    ``path``: another one may be writing its temporary right now). Returns what was removed."""
    removed = stale_temporaries(path)
    for tmp in removed:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return removed
