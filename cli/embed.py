"""`geoembed embed`: embed whole scenes into embedding GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import click
import rasterio
from geoembed.cli.options import (
    allow_no_crs_option,
    bands_option,
    device_option,
    handle_errors,
    overwrite_option,
    quiet_option,
    resolve_cli_shard,
    shard_options,
    stac_options,
)

from geoembed.inference.config import EmbedConfig
from geoembed.io.inputs import expand_inputs
from geoembed.io.stac import stac_expander


@click.command("embed")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("scenes", nargs=-1, required=True,
                type=click.Path(path_type=str))  # str: a Path would fold "https://" URLs
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Output GeoTIFF for one scene; a directory for several "
                   "(<scene stem>_embedding.tif each).")
@click.option("--stride", type=int, default=None,
              help="Window step in scene pixels, 1..tile.  [default: the checkpoint's tile size]")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Windows per forward pass.")
@click.option("--max-nodata", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Windows with a larger nodata fraction are nodata in the output.")
@click.option("--dtype", type=click.Choice(["float32", "int8"]), default="float32",
              show_default=True,
              help="float32: raw embeddings (nodata NaN); int8: unit vectors quantised like "
                   "Google's Satellite Embedding, dequantise with sign(q)*(q/127.5)**2 "
                   "(nodata -128).")
@bands_option
@device_option
@click.option("--amp/--no-amp", default=True, show_default=True,
              help="bf16 autocast on CUDA.")
@click.option("--prefetch", type=click.IntRange(min=1), default=2, show_default=True,
              help="Rows of windows read ahead in a background thread.")
@shard_options
@stac_options
@allow_no_crs_option
@overwrite_option
@quiet_option
@handle_errors
def embed_command(checkpoint: Path, scenes: tuple[str, ...], out: Path, shard: str | None,
                  shards: int | None, device: str, assets: tuple[str, ...] | None,
                  resampling: str | None, **options: object) -> None:
    """Embed SCENES with a trained CHECKPOINT into multi-band embedding GeoTIFFs.

    A window of the checkpoint's tile size slides over each scene with --stride; output
    pixel (i, j) holds the embedding of the window whose top-left corner is scene pixel
    (i*stride, j*stride), georeferenced so that the pixel's center is the window's center.
    Bands are named emb_000, emb_001...

    SCENES may include @list.txt files (one input a line) and STAC Items or ItemCollections
    (JSON files or URLs; each item a scene of its --assets, named by the item's id).
    Reruns skip outputs already written with the same checkpoint and options; --shard
    splits the inputs over processes (job arrays, torchrun), each appending to its own
    manifest-I-of-N.jsonl in --out.
    """
    inputs = expand_inputs(scenes, [stac_expander(assets, resampling)])
    chosen, device = resolve_cli_shard(shard, shards, device)
    config = EmbedConfig(device=device, **options)  # the options are EmbedConfig's fields
    # imported here so that `geoembed embed --help` does not import torch and smp (~5 s)
    from geoembed.inference.embedding import embed

    for path in embed(checkpoint, inputs, out, config, shard=chosen,
                      log=lambda m: click.echo(m, err=True)):
        with rasterio.open(path) as ds:
            click.echo(f"{path}: {ds.count} bands, {ds.width} x {ds.height} px, {ds.dtypes[0]}")
