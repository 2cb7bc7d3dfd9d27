"""The ``geoembed`` command line: a click group whose commands are imported on first use.

Each command lives in its own module; importing this package (and ``geoembed --help``)
imports neither torch nor segmentation-models-pytorch.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from geoembed import __version__
from geoembed.errors import GeoembedError

# command name -> "module:attribute" (modules relative to geoembed.cli)
COMMANDS: dict[str, str] = {
    "tile": "tile:tile_command",
    "train": "train:train_command",
    "embed": "embed:embed_command",
    "similar": "similar:similar_command",
    "preview": "preview:preview_command",
    "evaluate": "evaluate:evaluate_command",
    "map": "map:map_command",
    "weak": "weak:weak_group",
    "segment": "segment:segment_command",
    "mosaic": "mosaic:mosaic_command",
    "demo": "demo:demo_command",
}

# one-line summaries shown by `geoembed --help` without importing the commands
SUMMARIES: dict[str, str] = {
    "tile": "Sample Tile2Vec triplets from rasters into a triplet store.",
    "train": "Train an encoder with the triplet loss (CPU, GPU, or torchrun).",
    "embed": "Embed whole scenes into multi-band embedding GeoTIFFs.",
    "similar": "Cosine-similarity map against the embedding at given points.",
    "preview": "RGB picture of the first three principal components of embeddings.",
    "evaluate": "Land-cover classifiers on embeddings vs. baselines, spatial CV.",
    "map": "Land-cover map from labels and embeddings (or baselines), with areas.",
    "weak": "Weakly supervised U-Nets (image-level, single-pixel, dense labels).",
    "segment": "Segment a whole scene with a trained U-Net to GeoTIFF.",
    "mosaic": "One VRT (or COG) over the outputs of a sharded embed / segment run.",
    "demo": "Run the pipeline on the bundled sample data.",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when the command is used."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(f"geoembed.cli.{module}"), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUMMARIES.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geoembed")
def cli() -> None:
    """geoembed: remote sensing with few labels.

    Tile2Vec embeddings of georeferenced rasters (tile, train, embed, evaluate) and
    weakly supervised U-Net segmentation (weak train, segment). Run
    `geoembed COMMAND --help` for the options of a command.
    """


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit with status 2."""
    try:
        cli.main(args=argv, prog_name="geoembed", standalone_mode=False)
    except GeoembedError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
