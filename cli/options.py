"""Options and helpers shared by the commands."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
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


class CommaList(click.ParamType):
    """A comma-separated list option: ``"1,2,3"`` -> ``(1, 2, 3)``; empty -> ``None``.

    Items keep their order and repeats; the library drops repeats where they mean nothing
    (feature sets, classifiers, learning-curve sizes).

    Args:
        item: converts one item (``int``, ``str``...); a ValueError makes it a usage error.
        choices: the allowed items, when the list is a choice among names.
        minimum: the smallest allowed number, for numeric items.
        example: shown in the error message.
        aliases: whole-value shortcuts, e.g. ``{"both": ("logreg", "rf")}``.
    """

    name = "list"

    def __init__(self, item: Callable[[str], Any] = str, *, choices: Sequence[str] | None = None,
                 minimum: float | None = None, example: str = "a,b",
                 below_minimum: str | None = None,
                 aliases: dict[str, tuple] | None = None) -> None:
        self.item = item
        self.choices = tuple(choices) if choices is not None else None
        self.minimum = minimum
        self.example = example
        self.below_minimum = below_minimum
        self.aliases = dict(aliases or {})

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> tuple | None:
        if value is None or isinstance(value, tuple):
            return value
        text = str(value).strip()
        if text == "":
            return None
        if text in self.aliases:
            return self.aliases[text]
        try:
            items = tuple(self.item(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            self.fail(f"{value!r}: give a comma-separated list like {self.example}", param, ctx)
        if self.choices is not None:
            bad = [v for v in items if v not in self.choices]
            if bad:
                allowed = ", ".join([*self.choices, *self.aliases])
                self.fail(f"unknown {', '.join(map(str, bad))}; choose from {allowed}", param, ctx)
        if self.minimum is not None and any(v < self.minimum for v in items):
            self.fail(self.below_minimum or f"values must be at least {self.minimum}", param, ctx)
        return items  # repeats kept: --bands 1,1,2 and --decoder-channels 16,16,16 mean them


BANDS = CommaList(int, minimum=1, example="1,2,3,4",
                  below_minimum="band numbers are 1-based (the first band is 1)")


bands_option = click.option(
    "--bands", type=BANDS, default=None, metavar="1,2,3",
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


def label_options(func: F) -> F:
    """The labels of ``evaluate`` and ``map``: ``--labels`` with ``--label-column``, or
    ``--labels-raster``; ``--max-labels``, ``--polygon-samples``."""
    path = click.Path(dir_okay=False, path_type=Path)
    raster = click.Path(dir_okay=False, path_type=str)  # str: a Path would fold "https://"
    for option in reversed((
        click.option("--labels", type=path, default=None,
                     help="Vector labels (points or polygons; any format geopandas reads, any "
                          "CRS).  [required unless --labels-raster]"),
        click.option("--label-column", default=None,
                     help="Column of --labels holding the class.  [required with --labels]"),
        click.option("--labels-raster", type=raster, default=None,
                     help="Label raster on the scene's grid (its nodata = unlabelled), "
                          "instead of --labels.  [default: none]"),
        click.option("--max-labels", type=click.IntRange(min=2), default=None,
                     help="Use a random subset of at most this many labels.  [default: all]"),
        click.option("--polygon-samples", type=click.IntRange(min=1), default=None,
                     help="Random points per polygon.  [default: one point inside each "
                          "polygon]"),
    )):
        func = option(func)
    return func


def cv_groups_option(func: F) -> F:
    """``--cv-groups``: how the spatial CV of ``evaluate`` and ``map`` groups the labels
    (:func:`geoembed.evaluation.folds.cv_groups`); the command gets ``cv_groups``."""
    from geoembed.evaluation.config import CV_GROUPS  # light: stdlib and errors only

    return click.option(
        "--cv-groups", type=click.Choice(CV_GROUPS), default="auto", show_default=True,
        help="Spatial CV groups: blocks (--block-size squares); polygons (also keeps every "
             "pixel of one label feature in one fold: blocks joined by the polygons that "
             "span them; needs --labels); auto: polygons for polygon labels, else "
             "blocks.")(func)


def shard_options(func: F) -> F:
    """``--shard I/N`` and ``--shards N`` (the AWS Batch array size), for the many-input
    commands; :func:`resolve_cli_shard` turns them (or the environment) into a shard."""
    func = click.option(
        "--shards", type=click.IntRange(min=1), default=None, metavar="N",
        help="Number of shards when the shard index comes from AWS_BATCH_JOB_ARRAY_INDEX "
             "(AWS Batch does not export the array size).  [default: none]")(func)
    return click.option(
        "--shard", default=None, metavar="I/N",
        help="Process only shard I of N (0-based): the inputs, sorted, whose index mod N is "
             "I. Without it: SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, "
             "AWS_BATCH_JOB_ARRAY_INDEX with --shards, or torchrun's RANK / WORLD_SIZE "
             "(device cuda:LOCAL_RANK).  [default: every input]")(func)


def resolve_cli_shard(shard: str | None, shards: int | None, device: str) -> tuple[Any, str]:
    """The shard to run (None: all inputs) and the device: under torchrun with CUDA,
    ``cuda:LOCAL_RANK`` when ``device`` is auto or cuda (one GPU per local rank)."""
    from geoembed.io.inputs import resolve_shard, torchrun_local_rank

    found = resolve_shard(shard, shards)
    local_rank = torchrun_local_rank()
    if local_rank is not None and device in ("auto", "cuda"):
        import torch  # only under torchrun, where the command imports torch anyway

        if torch.cuda.is_available():
            device = f"cuda:{local_rank}"
    return found, device


def stac_options(func: F) -> F:
    """``--assets`` and ``--resampling``: how a STAC item input becomes a scene
    (:mod:`geoembed.io.stac`); the command gets ``assets`` and ``resampling``."""
    from geoembed.io.stac import RESAMPLING

    func = click.option(
        "--resampling", type=click.Choice(RESAMPLING), default=None,
        help="STAC items: how assets coarser than the finest one meet its grid, and (only "
             "when given) how assets in another CRS are warped onto it.  [default: nearest; "
             "assets in another CRS refused]")(func)
    return click.option(
        "--assets", type=CommaList(str, example="B04,B03,B02,B08"), default=None,
        metavar="KEY,...",
        help="STAC items: the band assets to stack, in this order, onto the finest asset's "
             "grid.  [default: the item's only GeoTIFF asset]")(func)
