"""`geoembed preview`: an RGB picture of an embedding raster's principal components."""

from __future__ import annotations

from pathlib import Path

import click
from geoembed.cli.options import handle_errors, overwrite_option, quiet_option, seed_option

from geoembed.analysis.preview import preview


@click.command("preview")
@click.argument("embeddings", type=click.Path(path_type=str))  # str: URLs stay whole
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output PNG (RGB = first three principal components; nodata transparent).")
@click.option("--max-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Longer side of the picture in pixels (larger rasters are read decimated).")
@click.option("--samples", type=click.IntRange(min=10), default=100_000, show_default=True,
              help="Valid pixels sampled to fit the PCA.")
@seed_option
@overwrite_option
@quiet_option
@handle_errors
def preview_command(embeddings: str, out: Path, max_size: int, samples: int, seed: int,
                    overwrite: bool, quiet: bool) -> None:
    """RGB picture of the first three principal components of EMBEDDINGS."""
    res = preview(embeddings, out, max_size=max_size, n_samples=samples, seed=seed,
                  overwrite=overwrite, quiet=quiet)
    ev = ", ".join(f"{v:.2f}" for v in res.explained_variance_ratio)
    click.echo(f"{res.path}: {res.width} x {res.height} px; explained variance {ev}")
