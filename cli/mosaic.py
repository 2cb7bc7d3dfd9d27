"""``geoembed mosaic``: one VRT (or COG) over the outputs in a folder."""

from __future__ import annotations

from pathlib import Path

import click
from geoembed.cli.options import handle_errors, overwrite_option

from geoembed.io.mosaic import build_mosaic, mosaic_sources


@click.command("mosaic")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The mosaic: a .vrt, or a COG with --cog.")
@click.option("--cog", is_flag=True, default=False,
              help="Write a Cloud Optimized GeoTIFF (merged in memory) instead of a VRT.")
@click.option("--crs", default=None,
              help="CRS of the mosaic (EPSG:32610, WKT...).  [default: the first output's]")
@overwrite_option
@handle_errors
def mosaic_command(out_dir: Path, out: Path, cog: bool, crs: str | None,
                   overwrite: bool) -> None:
    """Mosaic the outputs in OUT_DIR (those its manifest-*.jsonl files list, else its *.tif).

    Outputs in another CRS are reprojected (nearest neighbour) into OUT_reprojected/ next to
    the mosaic first.

    \b
    Example:
      geoembed mosaic embeddings/ --out embeddings.vrt
    """
    sources = mosaic_sources(out_dir, exclude=[out])
    path = build_mosaic(sources, out, cog=cog, crs=crs, overwrite=overwrite)
    click.echo(f"{path}: mosaic of {len(sources)} outputs")
