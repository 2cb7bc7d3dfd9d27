"""`geoembed demo`: the pipeline on the bundled sample data (small enough for a laptop CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import geoembed
from geoembed.errors import InputError, OutputExistsError

DEMO_TILE = 32
DEMO_NEIGHBORHOOD = 64
DEMO_TRIPLETS = 2000
QUICK_TRIPLETS = 200


def sample_data_dir() -> Path:
    """The ``sample_data/`` directory of the source checkout (next to the package)."""
    d = Path(geoembed.__file__).resolve().parent.parent / "sample_data"
    if not (d / "scene.tif").is_file():
        raise InputError(
            f"sample data not found in {d}; run the demo from a source checkout, or "
            "generate it with `python -m geoembed.synthetic sample_data --overwrite`"
        )
    return d


def run_demo(out: str | os.PathLike, quick: bool = False, overwrite: bool = False,
             quiet: bool = False) -> dict[str, Path]:
    """Run the demo into ``out``; return the outputs by name.

    For now: sample Tile2Vec triplets from ``sample_data/scene.tif`` into ``out/triplets``
    (32 px tiles, 64 px neighborhood; ``quick`` draws fewer triplets).
    """
    from geoembed.store import tile

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    data = sample_data_dir()
    out.mkdir(parents=True, exist_ok=True)
    store = tile([data / "scene.tif"], out / "triplets",
                 n_triplets=QUICK_TRIPLETS if quick else DEMO_TRIPLETS, tile_size=DEMO_TILE,
                 neighborhood=DEMO_NEIGHBORHOOD, seed=0, overwrite=True, quiet=quiet)
    return {"triplets": store.path}
