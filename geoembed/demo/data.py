"""Where the demo finds the sample data: the source checkout's ``sample_data/``, or a copy
generated on first use (by :mod:`geoembed.synthetic`, identical to the committed files) in the
user's cache, so that an installed geoembed runs the demo from any directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import geoembed
from geoembed.errors import InputError
from geoembed.io.outputs import temporary_sibling
from geoembed.synthetic import FILES, generate_sample_data

#: The generator's arguments that produce the committed ``sample_data/``.
SAMPLE_SIZE = 1024
SAMPLE_SEED = 0


def checkout_sample_data() -> Path:
    """``sample_data/`` of the source checkout (next to the package; may not exist)."""
    return Path(geoembed.__file__).resolve().parent.parent / "sample_data"


def sample_data_cache() -> Path:
    """The cache folder of generated sample data: ``$XDG_CACHE_HOME/geoembed/sample_data-<v>``
    (``~/.cache`` when ``XDG_CACHE_HOME`` is unset), one per geoembed version."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "geoembed" / f"sample_data-{geoembed.__version__}"


def is_complete(path: Path) -> bool:
    """Whether ``path`` holds every sample-data file."""
    return all((path / name).is_file() for name in FILES.values())


def sample_data_dir(*, fallback: str | os.PathLike | None = None,
                    echo: Callable[[str], None] | None = None) -> Path:
    """The sample data: the checkout's ``sample_data/``, else the cached copy (generated on
    first use, about 10 s), else (cache not writable) a copy generated in ``fallback``.

    Args:
        fallback: where to generate the data when the cache folder cannot be written.
        echo: called with a one-line message before generating (None: silent).

    Raises:
        InputError: the data had to be generated and neither the cache nor ``fallback``
            could be written.
    """
    checkout = checkout_sample_data()
    if (checkout / FILES["scene"]).is_file():
        return checkout
    say = echo or (lambda msg: None)
    places = [sample_data_cache()] + ([Path(fallback)] if fallback is not None else [])
    errors = []
    for place in places:
        if is_complete(place):
            return place
        say(f"sample data: not in a source checkout; generating it into {place} (once)")
        try:
            return _generate(place)
        except OSError as exc:
            errors.append(f"{place}: {exc.strerror or exc}")
    raise InputError(f"cannot write the sample data ({'; '.join(errors)}); set XDG_CACHE_HOME "
                     "to a writable directory")


def _generate(place: Path) -> Path:
    """Generate the sample data in a temporary sibling of ``place`` and rename it into place
    (a concurrent run that finished first wins; its copy is identical)."""
    place.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(place)
    try:
        generate_sample_data(tmp, size=SAMPLE_SIZE, seed=SAMPLE_SEED)
        if place.is_dir() and not is_complete(place):  # a partial copy (files deleted)
            shutil.rmtree(place)
        try:
            os.rename(tmp, place)
        except OSError:
            if not is_complete(place):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return place
