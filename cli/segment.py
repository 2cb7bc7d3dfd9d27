"""``geoembed segment``: whole scenes through a trained weak U-Net, to GeoTIFFs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from geoembed.cli.options import (
    CommaList,
    allow_no_crs_option,
    device_option,
    handle_errors,
    overwrite_option,
    quiet_option,
    resolve_cli_shard,
    shard_options,
    stac_options,
)

from geoembed.inference.config import SegmentConfig
from geoembed.io.inputs import expand_inputs
from geoembed.io.stac import stac_expander

if TYPE_CHECKING:  # torch: only when the command runs
    from geoembed.inference.segmentation import SegmentResult


def _pair(text: str) -> tuple[str, str]:
    """``"3=1"`` -> ``("3", "1")``."""
    key, sep, cls = text.partition("=")
    if not sep or not key.strip() or not cls.strip():
        raise ValueError(text)
    return key.strip(), cls.strip()


REFERENCE_VALUES = CommaList(str, example="3,5")
REFERENCE_MAP = CommaList(_pair, example="3=1,4=0 (REFERENCE_VALUE=CLASS)")


@click.command("segment")
@click.argument("checkpoint", type=click.Path(path_type=str))
@click.argument("scenes", nargs=-1, required=True,
                type=click.Path(path_type=str))  # str: a Path would fold "https://" URLs
@click.option("--out", "-o", required=True, type=click.Path(path_type=str),
              help="Class map GeoTIFF (uint8, value i = the checkpoint's class i, 255 = "
                   "nodata) for one scene; a directory for several (<scene stem>"
                   "_segmentation.tif each).")
@click.option("--stride", type=int, default=None,
              help="Window step in pixels; overlaps are blended.  [default: half the window]")
@click.option("--tile", type=int, default=None,
              help="Window size; the U-Net is fully convolutional, larger windows are faster.  "
                   "[default: the training tile size]")
@click.option("--batch-size", type=int, default=32, show_default=True,
              help="Windows per forward pass.")
@click.option("--probabilities", is_flag=True, default=False,
              help="Also write NAME_probabilities.tif next to NAME.tif (--out): float32, one "
                   "band per class.")
@click.option("--reference", type=click.Path(path_type=str), default=None,
              help="Reference class raster on the scene's grid (one scene only): write a JSON "
                   "report of pixel accuracy, per-class precision / recall / F1 / IoU.  "
                   "[default: none, no report]")
@click.option("--reference-positive", type=REFERENCE_VALUES, default=None,
              metavar="VALUE[,VALUE...]",
              help="Binary models: reference values that count as the positive class (e.g. the "
                   "crop class ids); every other valid value is negative.  [default: the "
                   "checkpoint's positive values, else values equal to the label values]")
@click.option("--reference-map", type=REFERENCE_MAP, default=None, metavar="VALUE=CLASS,...",
              help="Reference value -> model class (name or 0-based code); other values are "
                   "not scored.  [default: reference values equal to the label values]")
@click.option("--report", type=click.Path(path_type=str), default=None,
              help="JSON report path.  [default: NAME_report.json next to NAME.tif]")
@device_option
@click.option("--no-amp", is_flag=True, default=False, help="No bf16 mixed precision on CUDA.")
@shard_options
@stac_options
@allow_no_crs_option
@overwrite_option
@quiet_option
@handle_errors
def segment_command(checkpoint: str, scenes: tuple[str, ...], out: str,
                    reference_map: tuple | None, no_amp: bool, shard: str | None,
                    shards: int | None, device: str, assets: tuple[str, ...] | None,
                    resampling: str | None, **options: object) -> None:
    """Segment SCENES with a `geoembed weak train` CHECKPOINT.

    SCENES may include @list.txt files (one input a line) and STAC Items or ItemCollections
    (JSON files or URLs; each item a scene of its --assets, named by the item's id). With
    several scenes, reruns skip maps already written with the same checkpoint and options;
    --shard splits the scenes over processes (job arrays, torchrun), each appending to its
    own manifest-I-of-N.jsonl in --out.

    \b
    Example:
      geoembed segment runs/ucam/checkpoint.pt scene.tif --out crop.tif \\
          --reference landcover.tif --reference-positive 3,5
    """
    inputs = expand_inputs(scenes, [stac_expander(assets, resampling)])
    chosen, device = resolve_cli_shard(shard, shards, device)
    # the other options are SegmentConfig's fields, by name
    config = SegmentConfig(reference_map=dict(reference_map) if reference_map else None,
                           amp=not no_amp, device=device, **options)
    # imported here so that `geoembed segment --help` does not import torch and smp (~5 s)
    from geoembed.inference.segmentation import segment

    results = segment(checkpoint, inputs, out, config, shard=chosen,
                      log=lambda m: click.echo(m, err=True))
    if config.quiet:
        return
    for result in results or []:  # a list: inputs is a list
        _print_result(result)


def _print_result(result: SegmentResult) -> None:
    """What a scene's segmentation wrote (or found complete), and its scores."""
    how = ("complete, skipped" if result.status == "skipped"
           else f"{result.n_windows} windows, {result.seconds:.1f} s")
    click.echo(f"{result.path}: classes {', '.join(result.class_names)} ({how})")
    if result.probabilities is not None:
        click.echo(f"{result.probabilities}: per-class probabilities")
    if result.report is not None:
        rep = result.report
        per = ", ".join(f"{name} F1 {m['f1']:.3f} IoU {m['iou']:.3f}"
                        for name, m in rep["classes"].items())
        click.echo(f"{result.report_path}: accuracy {rep['accuracy']:.4f} over "
                   f"{rep['pixels']} px; {per}")
