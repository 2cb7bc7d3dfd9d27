"""`geoembed demo`: run the pipeline on the bundled sample data."""

from __future__ import annotations

from pathlib import Path

import click
from geoembed.cli.options import handle_errors, overwrite_option, quiet_option


@click.command("demo")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("demo_output"),
              show_default=True, help="Directory for the demo's outputs.")
@click.option("--quick", is_flag=True, default=False,
              help="A smaller, faster run (for tests and a first look).")
@overwrite_option
@quiet_option
@handle_errors
def demo_command(out: Path, quick: bool, overwrite: bool, quiet: bool) -> None:
    """Run geoembed on the bundled sample data (sample_data/) and say where outputs are."""
    from geoembed.demo import run_demo

    outputs = run_demo(out, quick=quick, overwrite=overwrite, quiet=quiet)
    click.echo(f"Demo outputs in {out}:")
    for name, path in outputs.items():
        click.echo(f"  {name}: {path}")
