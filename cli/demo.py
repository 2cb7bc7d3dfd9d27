"""`geoembed demo`: run the pipeline on the bundled sample data."""

from __future__ import annotations

from pathlib import Path

import click
from geoembed.cli.options import device_option, handle_errors


@click.command("demo")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("demo_output"),
              show_default=True, help="Directory for the demo's outputs.")
@click.option("--quick", is_flag=True, default=False,
              help="Tiny settings that run every step in about a minute (results are not "
                   "meaningful; for tests and a first look).")
@device_option
@click.option("--overwrite", is_flag=True, default=False,
              help="Replace a previous demo directory (a directory that is not one is never "
                   "deleted).")
@click.option("--quiet", "-q", is_flag=True, default=False,
              help="No progress bars or step lines: print only the summary.")
@handle_errors
def demo_command(out: Path, quick: bool, device: str, overwrite: bool, quiet: bool) -> None:
    """Run the whole pipeline on the bundled sample data (sample_data/).

    An installed geoembed (no source checkout) generates the same sample data once into
    $XDG_CACHE_HOME/geoembed (default ~/.cache/geoembed).

    tile -> train -> embed -> preview + similar -> evaluate, and weak train -> segment
    (scored against the true land cover), with settings sized for a laptop CPU (a few
    minutes on 2 cores). Ends with a table of what was measured and where each file is
    (also in OUT/summary.md and OUT/demo.json).
    """
    from geoembed.demo import run_demo  # here, not at the top: keeps torch out of start-up

    result = run_demo(out, quick=quick, overwrite=overwrite, quiet=quiet, device=device,
                      echo=None if quiet else click.echo)
    if not quiet:
        click.echo("")
    click.echo(result.summary())
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
