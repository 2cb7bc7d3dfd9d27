"""Options and helpers shared by the commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from geoembed.errors import GeoembedError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn a :class:`GeoembedError` into a one-line message and exit status 2.

    Applied to every command so that click's CliRunner (used in tests and notebooks) sees
    the same behaviour as the console script.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GeoembedError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]


def parse_positive_ints(value: str | None, *, example: str, below_one: str
                        ) -> tuple[int, ...] | None:
    """'1,2,3' -> (1, 2, 3); None or '' -> None. ``below_one`` is the error for values < 1."""
    if value is None or value.strip() == "":
        return None
    try:
        numbers = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated integers like {example}"
                                 ) from None
    if any(n < 1 for n in numbers):
        raise click.BadParameter(below_one)
    return numbers


def parse_bands(value: str | None) -> tuple[int, ...] | None:
    """'1,2,3' -> (1, 2, 3); None -> None (every band)."""
    return parse_positive_ints(value, example="1,2,3,4",
                               below_one="band numbers are 1-based (the first band is 1)")


bands_option = click.option(
    "--bands", callback=lambda ctx, param, v: parse_bands(v), default=None, metavar="1,2,3",
    help="Comma-separated 1-based bands to use, like rasterio.  [default: every band]",
)
overwrite_option = click.option(
    "--overwrite", is_flag=True, default=False, help="Replace an existing output.",
)
quiet_option = click.option(
    "--quiet", "-q", is_flag=True, default=False, help="No progress bars.",
)
seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same result).",
)
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
    show_default=True, help="Compute device; auto picks cuda, then mps, then cpu.",
)
allow_no_crs_option = click.option(
    "--allow-no-crs", is_flag=True, default=False,
    help="Accept rasters without a CRS (pixel coordinates only).",
)
