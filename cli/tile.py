"""`geoembed tile`: sample Tile2Vec triplets from rasters into a triplet store."""

from __future__ import annotations

from pathlib import Path

import click
from geoembed.cli.options import (
    allow_no_crs_option,
    bands_option,
    handle_errors,
    overwrite_option,
    quiet_option,
    seed_option,
    stac_options,
)

from geoembed.samplers.config import TileConfig

_DEFAULT = TileConfig()


@click.command("tile")
@click.argument("scenes", nargs=-1, required=True, metavar="SCENE...",
                type=click.Path(path_type=str))  # str: a Path would fold "https://" URLs
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Directory of the triplet store to write (triplets.npy, footprints.gpkg, "
                   "meta.json).")
@click.option("--n-triplets", "-n", type=int, default=_DEFAULT.n_triplets, show_default=True,
              help="Number of anchor/neighbor/distant triplets.")
@click.option("--tile-size", "-t", type=int, default=_DEFAULT.tile_size, show_default=True,
              help="Tile side in pixels.")
@click.option("--neighborhood", "-r", type=float, default=_DEFAULT.neighborhood,
              show_default=True,
              help="Largest distance in pixels between the centers of an anchor and its "
                   "neighbor; same-scene distant tiles are farther than this.")
@seed_option
@bands_option
@click.option("--max-nodata", type=float, default=_DEFAULT.max_nodata, show_default=True,
              help="Largest nodata fraction of a tile (0: only fully valid tiles).")
@click.option("--distant-other-scene-prob", type=float, default=None,
              help="Probability that a distant tile comes from another scene.  "
                   "[default: 0.5 with several scenes, 0 with one]")
@click.option("--aoi", type=click.Path(path_type=Path), default=None,
              help="Vector file (any CRS) restricting the anchors' centers.  [default: none]")
@click.option("--memory", type=click.IntRange(min=1), default=_DEFAULT.memory,
              show_default=True, metavar="MiB",
              help="Pixels read at once, in MiB: scenes are read in passes of whole block "
                   "rows within it (the triplets do not depend on it).")
@stac_options
@overwrite_option
@quiet_option
@allow_no_crs_option
@handle_errors
def tile_command(scenes: tuple[str, ...], out: Path, n_triplets: int, tile_size: int,
                 neighborhood: float, seed: int, bands: tuple[int, ...] | None,
                 max_nodata: float, distant_other_scene_prob: float | None, aoi: Path | None,
                 memory: int, assets: tuple[str, ...] | None, resampling: str | None,
                 overwrite: bool, quiet: bool, allow_no_crs: bool) -> None:
    """Sample Tile2Vec triplets from SCENE... (GeoTIFFs or any GDAL raster) into --out.

    A SCENE may be a STAC Item or ItemCollection (JSON file or URL): each item is a scene
    of its --assets.

    Anchors are uniform over the scenes' valid area, neighbors within --neighborhood
    pixels of the anchor, distant tiles farther than that or from another scene.
    Footprints are written in the first scene's CRS.
    """
    # numpy, rasterio and the sampler take ~0.7 s to import: not for `geoembed tile --help`
    from geoembed.io.stac import scene_inputs
    from geoembed.samplers.tiling import tile

    config = TileConfig(n_triplets=n_triplets, tile_size=tile_size, neighborhood=neighborhood,
                        bands=bands, max_nodata=max_nodata, aoi=aoi, seed=seed,
                        distant_other_scene_prob=distant_other_scene_prob, memory=memory)
    store = tile(scene_inputs(scenes, assets, resampling), out, config, overwrite=overwrite,
                 quiet=quiet, allow_no_crs=allow_no_crs)
    m = store.meta
    size_mb = (store.path / "triplets.npy").stat().st_size / 2**20
    click.echo(
        f"Wrote {store.n_triplets} triplets of {m['band_count']} x {m['tile_size']} x "
        f"{m['tile_size']} px ({m['dtype']}) from {len(m['scenes'])} scene(s) to {store.path}\n"
        f"  triplets.npy ({size_mb:.1f} MiB), footprints.gpkg "
        f"({m['footprints_crs'] or 'no CRS'}), meta.json"
    )
