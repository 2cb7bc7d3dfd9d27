"""``geoembed map``: a land-cover map from labels and any embedding (or baseline features)."""

from __future__ import annotations

from pathlib import Path

import click
from geoembed.cli.options import (
    CommaList,
    allow_no_crs_option,
    bands_option,
    cv_groups_option,
    device_option,
    handle_errors,
    label_options,
    overwrite_option,
    quiet_option,
    resolve_cli_shard,
    seed_option,
    shard_options,
    stac_options,
)

from geoembed.io.inputs import expand_inputs
from geoembed.io.stac import stac_expander
from geoembed.mapping.config import (
    DEFAULT_RANDOM_FEATURES,
    MAP_CLASSIFIERS,
    MAP_FEATURES,
    MapConfig,
)

_PATH = click.Path(dir_okay=False, path_type=Path)
_OUT = click.Path(path_type=Path)  # a folder with several scenes
_RASTER = click.Path(dir_okay=False, path_type=str)  # str: a Path would fold "https://"
FEATURES = CommaList(choices=MAP_FEATURES, example="embedding,bands")


@click.command("map")
@click.argument("scenes", nargs=-1, required=True, type=_RASTER)
@label_options
@click.option("--out", required=True, type=_OUT,
              help="The class map (COG, colour table, class names, .qml); map.json is "
                   "written next to it. A folder for several scenes (<scene stem>_map.tif, "
                   "_map.json, _map.qml each).")
@click.option("--checkpoint", type=_PATH, default=None,
              help="tile2vec checkpoint: embeds the tile centred on each output pixel.  "
                   "[default: none]")
@click.option("--embeddings", type=_RASTER, multiple=True,
              help="Embedding raster (repeatable): any multi-band raster on any grid/CRS, "
                   "nearest pixel; int8 is dequantised, GDAL scale/offset applied, nodata "
                   "respected.")
@click.option("--features", type=FEATURES, default=None, metavar="NAMES",
              help="Comma-separated feature sets: embedding (every --checkpoint/--embeddings "
                   "source; implied when one is given), bands, tile-stats, random-features, "
                   "pca, embedding+bands.  [default: embedding, else bands]")
@click.option("--classifier", type=click.Choice(MAP_CLASSIFIERS), default="logreg",
              show_default=True,
              help="Logistic regression, random forest or histogram gradient boosting.")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Map every N-th scene pixel: an output pixel is an N x N block of the "
                   "scene, classified from its centre pixel.  [default: 1; with "
                   "window-based features (checkpoint, tile-stats, random-features, pca) on a "
                   "scene over 512 x 512 px: tile size // 5]")
@click.option("--resolution", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Output pixel size in CRS units, rounded to a whole --stride.  "
                   "[default: from --stride]")
@click.option("--tile-size", type=click.IntRange(min=1), default=None,
              help="Tile for window features without a checkpoint.  [default: the embedding "
                   "raster's tile_size tag, else 50]")
@click.option("--n-random-features", type=click.IntRange(min=2),
              default=DEFAULT_RANDOM_FEATURES, show_default=True,
              help="Random convolutional features (even).")
@click.option("--pca-tiles", type=click.IntRange(min=2), default=1000, show_default=True,
              help="Unlabelled random tiles the PCA / random features are fitted on.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Spatial cross-validation folds for the accuracy estimate.")
@click.option("--block-size", type=click.IntRange(min=1), default=None,
              help="Side of the spatial CV blocks in scene pixels.  [default: 4 tiles]")
@cv_groups_option
@click.option("--probabilities", type=_OUT, default=None,
              help="Also write one float32 probability band per class here (several "
                   "scenes: a folder, <scene stem>_map_probabilities.tif each).  "
                   "[default: none]")
@click.option("--confidence", type=_OUT, default=None,
              help="Also write the maximum class probability here (several scenes: a "
                   "folder, <scene stem>_map_confidence.tif each).  [default: none]")
@click.option("--reference", type=_RASTER, default=None,
              help="Reference land-cover raster to score the map against (any grid/CRS; "
                   "integer labels match its codes, others its class names).  "
                   "[default: none]")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Tiles per batch.")
@bands_option
@seed_option
@device_option
@shard_options
@stac_options
@allow_no_crs_option
@overwrite_option
@quiet_option
@handle_errors
def map_command(scenes: tuple[str, ...], labels: Path | None, label_column: str | None,
                labels_raster: str | None, max_labels: int | None, polygon_samples: int | None,
                out: Path, checkpoint: Path | None, embeddings: tuple[str, ...],
                features: tuple[str, ...] | None, classifier: str, stride: int | None,
                resolution: float | None, tile_size: int | None, n_random_features: int,
                pca_tiles: int, folds: int, block_size: int | None, cv_groups: str,
                probabilities: Path | None,
                confidence: Path | None, reference: str | None, batch_size: int,
                bands: tuple[int, ...] | None, seed: int, device: str, allow_no_crs: bool,
                overwrite: bool, quiet: bool, shard: str | None, shards: int | None,
                assets: tuple[str, ...] | None, resampling: str | None) -> None:
    """Classify SCENES into land-cover maps from labels, one classifier per scene.

    Features at every output pixel come from a checkpoint, embedding rasters and/or
    baselines; the classifier is fitted on the same features at the labels, its accuracy
    estimated by spatial cross-validation. Writes the map, map.json (CV accuracy, per-class
    F1, mapped area per class in hectares, the options and grid) and prints a summary. The
    fitted classifier is not saved.

    Window-based features cost one tile per output pixel, so on scenes over 512 x 512 px
    they map at stride tile // 5 unless --stride/--resolution is given; the estimated
    number of windows and time is printed before the map is computed.

    SCENES may include @list.txt files and STAC Items or ItemCollections (each item a scene
    of its --assets, named by the item's id). With several scenes each is mapped from the
    labels inside it; a scene whose labels make no map (none inside, one class...) is
    skipped with a warning and a failed manifest line (exit 2 only when no scene gets a
    map). Reruns skip maps already written with the same options; --shard splits the scenes
    over processes, each appending to its own manifest-I-of-N.jsonl in --out.

    \b
    Example:
      geoembed map scene.tif --labels points.gpkg --label-column class \\
          --embeddings emb.tif --features embedding,bands --out map.tif
    """
    from geoembed.mapping.many import run_maps  # sklearn: only when used

    inputs = expand_inputs(scenes, [stac_expander(assets, resampling)])
    chosen, device = resolve_cli_shard(shard, shards, device)
    config = MapConfig(
        labels=labels, label_column=label_column, labels_raster=labels_raster,
        max_labels=max_labels, polygon_samples=polygon_samples, checkpoint=checkpoint,
        embeddings=embeddings, features=features, classifier=classifier, stride=stride,
        resolution=resolution, tile_size=tile_size, bands=bands,
        n_random_features=n_random_features, pca_tiles=pca_tiles, folds=folds,
        block_size=block_size, cv_groups=cv_groups, batch_size=batch_size,
        probabilities=probabilities,
        confidence=confidence, reference=reference, seed=seed, device=device,
        allow_no_crs=allow_no_crs, overwrite=overwrite, quiet=quiet)
    for result in run_maps(inputs, out, config, shard=chosen,
                           log=lambda m: click.echo(m, err=True)):
        if result.status == "written":
            click.echo(result.summary())
            click.echo(f"written: {result.map_path}, {result.json_path}")
        elif result.status == "skipped":
            click.echo(f"{result.map_path}: complete (same options), skipped")
