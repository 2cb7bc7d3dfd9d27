"""``geoembed evaluate``: classifiers on embeddings vs. baselines, spatial cross-validation."""

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
    seed_option,
)

from geoembed.errors import InputError
from geoembed.evaluation.config import (
    BOTH_CLASSIFIERS,
    CLASSIFIERS,
    CV_SCHEMES,
    FEATURE_SETS,
    EvaluateConfig,
    check_size,
)
from geoembed.evaluation.verdict import verdict_line

_RASTER = click.Path(dir_okay=False, path_type=str)  # str: a Path would fold "https://"


def _size(text: str) -> int | str:
    """One learning-curve size (a usage error, not a ValueError, keeps its own message)."""
    try:
        return check_size(text)
    except InputError as exc:
        raise click.BadParameter(str(exc)) from None


FEATURES = CommaList(choices=FEATURE_SETS, example="embedding,bands")
SIZES = CommaList(_size, example="10,20,all", aliases={"none": ()})


@click.command("evaluate")
@click.option("--scene", required=True, type=_RASTER,
              help="The raster the labels are on (the scene the encoder embeds).")
@label_options
@click.option("--checkpoint", multiple=True, metavar="[NAME=]PATH",
              help="Trained tile2vec checkpoint: embeds the tile centered on each label.  "
                   "Repeatable; each source is its own feature set, named NAME (default: "
                   "'embedding' for a single source, else the file stem).  [default: none; "
                   "with neither --checkpoint nor --embeddings only the baselines run]")
@click.option("--embeddings", multiple=True, metavar="[NAME=]PATH",
              help="Embedding raster (geoembed embed, or any multi-band GeoTIFF in any CRS) "
                   "sampled at the labels.  Repeatable, like --checkpoint; every source is "
                   "evaluated on the same labels and folds, and ranked.  [default: none]")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (report.json, predictions.csv, plots).")
@click.option("--features", type=FEATURES, default=None, metavar="NAMES",
              help="Comma-separated feature sets: embedding (every --checkpoint/--embeddings "
                   "source, each by its name), bands, tile-stats, random-encoder "
                   "(needs --checkpoint), pca, embedding+bands, random-features (MOSAIKS "
                   "random convolutional features).  [default: all available but "
                   "random-features]")
@click.option("--classifier", type=click.Choice([*CLASSIFIERS, "both"]), default="logreg",
              show_default=True,
              help="Logistic regression (linear probe), random forest, histogram gradient "
                   "boosting, or both (logreg and rf).")
@click.option("--cv", type=click.Choice(["spatial", "random", "both"]), default="spatial",
              show_default=True,
              help="Cross-validation: spatial blocks (honest), random (leaky), or both.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Number of cross-validation folds.")
@click.option("--block-size", type=click.IntRange(min=1), default=None,
              help="Side of the spatial CV blocks in pixels.  [default: 4 tiles]")
@cv_groups_option
@click.option("--learning-curve", "learning_curve", type=SIZES,
              default="10,20,50,100,200,500,all",
              show_default=True, metavar="SIZES",
              help="Training-label counts for the learning curve ('none' to skip).")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True,
              help="Random training subsets per learning-curve size.")
@click.option("--tile-size", type=click.IntRange(min=1), default=None,
              help="Tile for tile-stats/pca without a checkpoint.  [default: the embedding "
                   "raster's tile_size tag, else 50]")
@click.option("--pca-tiles", type=click.IntRange(min=2), default=1000, show_default=True,
              help="Unlabelled random tiles the PCA baseline is fitted on.")
@click.option("--n-random-features", type=click.IntRange(min=2), default=1024,
              show_default=True,
              help="Number of random-features columns (even; half as many random filters).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Labels per encoder batch.")
@bands_option
@seed_option
@device_option
@allow_no_crs_option
@overwrite_option
@quiet_option
@handle_errors
def evaluate_command(scene: str, labels: Path | None, label_column: str | None,
                     labels_raster: str | None, max_labels: int | None,
                     polygon_samples: int | None, checkpoint: tuple[str, ...],
                     embeddings: tuple[str, ...], out: Path, features: tuple[str, ...] | None,
                     classifier: str, cv: str, folds: int, block_size: int | None,
                     cv_groups: str,
                     learning_curve: tuple[int | str, ...] | None,
                     repeats: int, tile_size: int | None, pca_tiles: int,
                     n_random_features: int, batch_size: int,
                     bands: tuple[int, ...] | None, seed: int, device: str, allow_no_crs: bool,
                     overwrite: bool, quiet: bool) -> None:
    """Cross-validate land-cover classifiers on embeddings and on baselines.

    For each labelled pixel: the embedding, the band values, tile mean/std, an untrained
    encoder's embedding, PCA of the tile and (when asked for) random convolutional features;
    each with logistic regression, a random forest and/or gradient boosting, under spatially
    blocked (and/or random) cross-validation. Writes report.json,
    predictions.csv, learning_curve.png and confusion.png to --out and prints a table.
    Several --embeddings / --checkpoint sources are compared on the same labels and the
    same folds, and ranked with their fold-to-fold spread and paired differences.

    \b
    Example:
      geoembed evaluate --scene scene.tif --labels points.gpkg --label-column class \\
          --checkpoint run/checkpoint.pt --out eval --cv both
      geoembed evaluate --scene scene.tif --labels points.gpkg --label-column class \\
          --embeddings mine=emb.tif --embeddings alphaearth=ae.tif --out compare
    """
    from geoembed.evaluation.evaluate import run_evaluation  # sklearn: only when used

    config = EvaluateConfig(
        labels=labels, label_column=label_column, labels_raster=labels_raster,
        max_labels=max_labels, polygon_samples=polygon_samples, checkpoint=checkpoint or None,
        embeddings=embeddings or None, features=features,
        classifier=BOTH_CLASSIFIERS if classifier == "both" else (classifier,),
        cv=CV_SCHEMES if cv == "both" else (cv,), folds=folds, block_size=block_size,
        cv_groups=cv_groups,
        learning_curve_sizes=learning_curve or (), repeats=repeats, tile_size=tile_size,
        bands=bands, pca_tiles=pca_tiles, n_random_features=n_random_features,
        batch_size=batch_size, seed=seed, device=device,
        allow_no_crs=allow_no_crs, overwrite=overwrite, quiet=quiet)
    result = run_evaluation(scene, out, config)
    rep = result.report
    for note in result.warnings:
        click.echo(f"Warning: {note}", err=True)
    click.echo(f"{rep['n_labels']} labels ({rep['n_dropped']} dropped: "
               f"{rep['dropped']['outside']} outside, {rep['dropped']['nodata']} on nodata, "
               f"{rep['dropped']['no_embedding']} without embedding), "
               f"{len(rep['classes']) - len(rep['excluded_classes'])} classes, folds "
               + ", ".join(f"{k}={v}" for k, v in rep["folds"].items())
               + (f" (spatial groups: {rep['cv_groups']['by']}, "
                  f"{rep['cv_groups']['n_groups']})" if rep["cv_groups"] else ""))
    click.echo(result.table())
    if rep["ranking"]:
        click.echo("\n" + result.ranking_table())
    line = verdict_line(rep["verdict"])
    if line:
        click.echo(line)
    best = rep["best"]
    click.echo(f"best: {best['features']} / {best['classifier']} / {best['cv']} "
               f"(macro-F1 {best['macro_f1']:.3f}); report in {result.out_dir}")
