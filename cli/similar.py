"""`geoembed similar`: cosine-similarity maps against reference points."""

from __future__ import annotations

from pathlib import Path

import click
from geoembed.cli.options import handle_errors, overwrite_option, quiet_option

from geoembed.analysis.similarity import similarity_map
from geoembed.errors import InputError
from geoembed.io.points import merge_points, read_points_file


@click.command("similar")
@click.argument("embeddings", type=click.Path(path_type=str))  # str: URLs stay whole
@click.option("--point", "points", type=(float, float), multiple=True, metavar="X Y",
              help="A reference location (repeatable), in --crs.")
@click.option("--points", "points_file", type=click.Path(path_type=Path), default=None,
              help="Reference points: a vector file of points (its own CRS) or a CSV with "
                   "x,y (or lon,lat) columns in --crs.  [default: none]")
@click.option("--crs", default="EPSG:4326", show_default=True,
              help="CRS of --point (and of CSV points): EPSG:4326 is lon/lat; give the "
                   "raster's CRS for projected coordinates.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output similarity GeoTIFF (float32, nodata NaN).")
@overwrite_option
@quiet_option
@handle_errors
def similar_command(embeddings: str, points: tuple[tuple[float, float], ...],
                    points_file: Path | None, crs: str, out: Path, overwrite: bool,
                    quiet: bool) -> None:
    """Cosine-similarity map of EMBEDDINGS against the embedding at reference points.

    The reference is the mean of the unit-normalised embeddings at the points; every
    output pixel is the cosine similarity (-1..1) of its embedding to it.
    """
    groups = [([p[0] for p in points], [p[1] for p in points], crs)]
    if points_file is not None:
        groups.append(read_points_file(points_file, crs))
    xs, ys, first = merge_points(groups)
    if not len(xs):
        raise InputError("give reference points with --point X Y or --points FILE")
    path, _ = similarity_map(embeddings, xs, ys, out, crs=first, overwrite=overwrite,
                             quiet=quiet)
    click.echo(f"{path}: cosine similarity to the mean embedding of {len(xs)} point(s)")
