"""``geoembed weak``: weakly supervised U-Nets (``geoembed weak train``)."""

from __future__ import annotations

import click
from geoembed.cli.options import (
    CommaList,
    allow_no_crs_option,
    bands_option,
    device_option,
    handle_errors,
    overwrite_option,
    quiet_option,
    seed_option,
)

from geoembed.errors import InputError
from geoembed.models.unet_options import LABEL_TYPES
from geoembed.trainers.weak_config import DEFAULT_EPOCHS, WeakTrainConfig

DEFAULTS = WeakTrainConfig()
DECODER_WIDTHS = CommaList(int, minimum=1, example="64,32,16,8",
                           below_minimum="decoder widths must be positive")


@click.group("weak")
def weak_group() -> None:
    """Weakly supervised U-Nets (Wang et al. 2020): train from image-level labels (class
    activation maps), single labelled pixels, or dense label rasters; then run
    `geoembed segment`."""


@weak_group.command("train")
@click.argument("scenes", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--labels", "labels", required=True, multiple=True, type=click.Path(path_type=str),
              help="image / pixel: a vector file (any format, any CRS); dense: a label raster "
                   "on the scene's grid (repeat once per scene).")
@click.option("--label-type", type=click.Choice(LABEL_TYPES), default=DEFAULTS.label_type,
              show_default=True,
              help="image: one class per polygon (tile), trained through a CAM; pixel: one "
                   "class per point, masked loss; dense: a full label raster.")
@click.option("--label-column", default=None,
              help="Vector column holding the class.  [required with image / pixel labels]")
@click.option("--positive", type=CommaList(str, example="1,2"), default=None,
              metavar="VALUE[,VALUE...]",
              help="Label value(s) of the positive class: a binary one-vs-rest model.  "
                   "[default: one class per distinct value]")
@click.option("--out", "-o", required=True, type=click.Path(path_type=str),
              help="Run directory: checkpoint.pt, metrics.csv, loss.png.")
@bands_option
@allow_no_crs_option
@click.option("--tile-size", type=int, default=DEFAULTS.tile_size, show_default=True,
              help="Training tile side in pixels (the paper's 50).")
@click.option("--encoder", default=DEFAULTS.encoder, show_default=True,
              help="Any segmentation-models-pytorch encoder, without pretrained weights.")
@click.option("--encoder-depth", type=click.IntRange(3, 5), default=DEFAULTS.encoder_depth,
              show_default=True,
              help="Encoder stages (the paper's U-Net had 4 levels).")
@click.option("--decoder-channels", type=DECODER_WIDTHS, default=None, metavar="W1,W2,...",
              help="One width per decoder stage.  [default: 256,128,64,32,16 halved from "
                   "the top, one per stage]")
@click.option("--epochs", type=int, default=None,
              help="Epochs (with --resume: train until this many).  [default: "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPOCHS.items())
                   + "; the paper: image 200, pixel 50 on a GPU]")
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size, show_default=True,
              help="Tiles per batch.")
@click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True,
              help="Adam learning rate.")
@click.option("--max-labels", type=int, default=None,
              help="Use a random (seeded) subset of N labelled tiles / points / label cells "
                   "(learning curves).  [default: all]")
@click.option("--workers", type=int, default=DEFAULTS.workers, show_default=True,
              help="DataLoader worker processes.")
@seed_option
@device_option
@click.option("--no-amp", is_flag=True, default=False, help="No bf16 mixed precision on CUDA.")
@click.option("--resume", is_flag=True, default=False,
              help="Continue RUN/checkpoint.pt (weights, optimizer, epoch).")
@overwrite_option
@quiet_option
@handle_errors
def train_command(scenes: tuple[str, ...], labels: tuple[str, ...], label_type: str,
                  label_column: str | None, positive: tuple[str, ...] | None, out: str,
                  bands: tuple[int, ...] | None, allow_no_crs: bool, tile_size: int,
                  encoder: str, encoder_depth: int, decoder_channels: tuple[int, ...] | None,
                  epochs: int | None, batch_size: int, lr: float, max_labels: int | None,
                  workers: int, seed: int, device: str, no_amp: bool, resume: bool,
                  overwrite: bool, quiet: bool) -> None:
    """Train a U-Net segmenter on SCENE... from weak labels.

    \b
    Examples:
      geoembed weak train scene.tif --labels tiles.gpkg --label-column crop \\
          --label-type image --out runs/ucam
      geoembed weak train scene.tif --labels points.gpkg --label-column crop \\
          --label-type pixel --out runs/pixel
    """
    # the trainer imports torch and smp (seconds): only when a run starts, not for --help
    from geoembed.trainers.weak import weak_train

    if label_type != "dense" and len(labels) != 1:
        raise InputError(f"--label-type {label_type} takes one --labels vector file")
    config = WeakTrainConfig(
        label_type=label_type, label_column=label_column,
        positive=list(positive) if positive else None, tile_size=tile_size, encoder=encoder,
        encoder_depth=encoder_depth, decoder_channels=decoder_channels, epochs=epochs,
        batch_size=batch_size, lr=lr, max_labels=max_labels, seed=seed, device=device,
        amp=not no_amp, workers=workers, resume=resume, overwrite=overwrite, quiet=quiet,
        bands=bands, allow_no_crs=allow_no_crs)
    result = weak_train(list(scenes), labels[0] if label_type != "dense" else list(labels), out,
                        config)
    if quiet:
        return
    last = result.history[-1] if result.history else {}
    dropped = (f" ({result.n_outside} outside the scene, {result.n_nodata} on nodata, "
               f"{result.n_unused} not used)"
               if result.n_outside or result.n_nodata or result.n_unused else "")
    click.echo(f"{label_type} labels: {result.n_labels} training items from "
               f"{result.n_input}{dropped}; classes: {', '.join(result.class_names)}")
    if result.extra.get("n_resampled"):
        click.echo(f"{result.extra['n_resampled']} label windows differ from the tile size "
                   f"and were resampled to {tile_size} px (use --tile-size to match them)")
    if last:
        click.echo(f"epoch {int(last['epoch'])}: loss {last['loss']:.4f}, "
                   f"accuracy {last.get('accuracy', float('nan')):.3f}")
    if result.threshold is not None:
        click.echo(f"CAM threshold {result.threshold:.4g} (training image accuracy "
                   f"{result.threshold_accuracy:.3f})")
    click.echo(f"checkpoint: {result.checkpoint}")
