"""Embedding sources of an evaluation: ``NAME=PATH`` parsing, names and their feature sets.

A source is a tile2vec checkpoint (embedded on the fly) or an embedding raster (sampled at the
labels). ``--embeddings`` and ``--checkpoint`` take ``NAME=PATH`` or a plain ``PATH`` and
may be repeated; Python callers pass a path, a list of them or a dict ``{name: path}``.
A plain path is named ``embedding`` when it is the only source (the feature set name of
single-source reports), else by its file stem.

Each source is its own feature set, named by the source name; ``embedding+bands`` becomes
``NAME+bands`` and ``random-encoder`` (checkpoints only) ``NAME:random-encoder`` -- for the
source named ``embedding`` these are the single-source names ``embedding+bands`` and
``random-encoder``. Stdlib only: the CLI and the config import it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from geoembed.errors import GeoembedError, InputError

DEFAULT_NAME = "embedding"
SOURCE_FEATURES = ("embedding", "embedding+bands", "random-encoder")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_NAME_RULE = "letters, digits, '_', '.' and '-'"


@dataclass(frozen=True)
class Source:
    """One embedding source: its name, ``kind`` (``checkpoint`` or ``embeddings``) and path."""

    name: str
    kind: str
    path: Any

    @property
    def is_checkpoint(self) -> bool:
        return self.kind == "checkpoint"


def split_name(text: Any) -> tuple[str | None, Any]:
    """``"NAME=PATH"`` -> ``(NAME, PATH)``; a plain path -> ``(None, path)``.

    Text before the first ``=`` is a name only if it is a valid name (so a URL with a query
    string stays a path) and the whole text is not an existing file.
    """
    if not isinstance(text, str) or "=" not in text:
        return None, text
    name, path = text.split("=", 1)
    if not _NAME.match(name) or os.path.exists(text):
        return None, text
    if not path.strip():
        raise InputError(f"{text!r}: no path after '='; give NAME=PATH")
    return name, path


def _stem(path: Any) -> str:
    """The file stem of a path or URL, as a valid source name."""
    text = str(path)
    if "://" in text:
        text = urlsplit(text).path
    stem = PurePosixPath(text.replace("\\", "/")).stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".-") or "source"


def _entries(value: Any) -> list[tuple[str | None, Any]]:
    """``(name or None, path)`` for a path, a sequence of paths or a ``{name: path}`` dict."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, str | os.PathLike):
        return [split_name(value)]
    return [split_name(v) for v in value]


def resolve_sources(checkpoint: Any, embeddings: Any, reserved: Sequence[str] = ()
                    ) -> list[Source]:
    """The named sources of ``checkpoint`` and ``embeddings`` options (checkpoints first).

    Raises:
        InputError: a bad name, two sources with the same name, or a name in ``reserved``
            (the baseline feature sets).
    """
    entries = [(n, p, "checkpoint") for n, p in _entries(checkpoint)] + \
              [(n, p, "embeddings") for n, p in _entries(embeddings)]
    sources = []
    for name, path, kind in entries:
        if name is None:
            name = DEFAULT_NAME if len(entries) == 1 else _stem(path)
        elif not _NAME.match(name):
            raise InputError(f"source name {name!r} ({path}): use {_NAME_RULE}")
        sources.append(Source(name, kind, path))
    names = [s.name for s in sources]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise InputError(f"two embedding sources are named {dup!r}; name each one with "
                         "NAME=PATH (e.g. --embeddings mine=emb.tif)")
    clash = next((n for n in names if n in reserved), None)
    if clash is not None:
        raise InputError(f"embedding source name {clash!r} is the name of a feature set; "
                         "pick another with NAME=PATH")
    return sources


def feature_name(generic: str, source: Source) -> str:
    """The feature set of ``source`` for ``embedding``, ``embedding+bands``, ``random-encoder``."""
    if generic == "embedding":
        return source.name
    default = source.name == DEFAULT_NAME
    if generic == "embedding+bands":
        return f"{source.name}+bands"
    if generic == "random-encoder":
        return generic if default else f"{source.name}:random-encoder"
    raise InputError(f"{generic!r} is not a feature set of an embedding source")


def expand_features(names: Sequence[str], sources: Sequence[Source]
                    ) -> list[tuple[str, str, Source | None]]:
    """``(feature set, generic name, source or None)`` for the generic ``names``, in order.

    ``embedding`` and ``embedding+bands`` give one feature set per source, ``random-encoder``
    one per checkpoint source; the baselines stand for themselves (source None).
    """
    out: list[tuple[str, str, Source | None]] = []
    for generic in names:
        if generic not in SOURCE_FEATURES:
            out.append((generic, generic, None))
            continue
        for s in sources:
            if generic != "random-encoder" or s.is_checkpoint:
                out.append((feature_name(generic, s), generic, s))
    return out


@contextlib.contextmanager
def named_errors(source: Source) -> Iterator[None]:
    """Prefix a :class:`GeoembedError`'s one-line message with the source's name (unless it
    is the single default source, whose messages name only its path)."""
    try:
        yield
    except GeoembedError as exc:
        if source.name == DEFAULT_NAME:
            raise
        raise type(exc)(f"{source.kind} source {source.name!r}: {exc}") from None


__all__ = ["DEFAULT_NAME", "SOURCE_FEATURES", "Source", "expand_features", "feature_name",
           "named_errors", "resolve_sources", "split_name"]
