"""``geoembed segment``: a whole scene through a trained weak U-Net, to GeoTIFF."""

from __future__ import annotations

import click
from geoembed.cli.options import (
    CommaList,
    allow_no_crs_option,
    device_option,
    handle_errors,
    overwrite_option,
    quiet_option,
)

from geoembed.inference.config import SegmentConfig


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
@click.argument("scene", type=click.Path(path_type=str))
@click.option("--out", "-o", required=True, type=click.Path(path_type=str),
              help="Class map GeoTIFF (uint8, value i = the checkpoint's class i, 255 = nodata).")
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
              help="Reference class raster on the scene's grid: write a JSON report of pixel "
                   "accuracy, per-class precision / recall / F1 / IoU.  [default: none, no report]")
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
@allow_no_crs_option
@overwrite_option
@quiet_option
@handle_errors
def segment_command(checkpoint: str, scene: str, out: str, reference_map: tuple | None,
                    no_amp: bool, **options: object) -> None:
    """Segment SCENE with a `geoembed weak train` CHECKPOINT.

    \b
    Example:
      geoembed segment runs/ucam/checkpoint.pt scene.tif --out crop.tif \\
          --reference landcover.tif --reference-positive 3,5
    """
    # the other options are SegmentConfig's fields, by name
    config = SegmentConfig(reference_map=dict(reference_map) if reference_map else None,
                           amp=not no_amp, **options)
    # imported here so that `geoembed segment --help` does not import torch and smp (~5 s)
    from geoembed.inference.segmentation import segment

    result = segment(checkpoint, scene, out, config)
    if config.quiet:
        return
    click.echo(f"{result.path}: classes {', '.join(result.class_names)} "
               f"({result.n_windows} windows, {result.seconds:.1f} s)")
    if result.probabilities is not None:
        click.echo(f"{result.probabilities}: per-class probabilities")
    if result.report is not None:
        rep = result.report
        per = ", ".join(f"{name} F1 {m['f1']:.3f} IoU {m['iou']:.3f}"
                        for name, m in rep["classes"].items())
        click.echo(f"{result.report_path}: accuracy {rep['accuracy']:.4f} over "
                   f"{rep['pixels']} px; {per}")
