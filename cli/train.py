"""``geoembed train``: train a Tile2Vec encoder with the triplet loss."""

from __future__ import annotations

import os

import click
from geoembed.cli.options import (
    allow_no_crs_option,
    bands_option,
    device_option,
    handle_errors,
    overwrite_option,
    quiet_option,
    seed_option,
    stac_options,
)

from geoembed.errors import InputError
from geoembed.trainers.tile2vec_config import (  # torch-free: the defaults without torch
    DEFAULT_L2,
    DEFAULT_MARGIN,
    DEFAULT_TEMPERATURE,
    LOSSES,
    NORMALIZATIONS,
    POOLINGS,
    PRESETS,
    TrainConfig,
)

#: The library's defaults, shown by --help (one definition: TrainConfig).
D = TrainConfig()


def _by_preset(key: str) -> str:
    """``[default: cpu preset 64, paper 512]`` for --help."""
    return "  [default: " + ", ".join(f"{name} preset {values[key]}" if i == 0 else
                                      f"{name} {values[key]}"
                                      for i, (name, values) in enumerate(PRESETS.items())) + "]"


@click.command("train")
@click.argument("inputs", nargs=-1, required=True, metavar="STORE | --scenes SCENE...",
                type=click.Path(path_type=str))
@click.option("--out", "-o", required=True, type=click.Path(path_type=str),
              help="Run directory: checkpoint.pt, metrics.csv, loss.png.")
@click.option("--scenes", "on_the_fly", is_flag=True, default=False,
              help="The inputs are rasters: sample fresh triplets from them every epoch "
                   "instead of reading a triplet store.")
@click.option("--n-triplets", type=click.IntRange(min=1), default=None,
              help="Triplets per epoch with --scenes." + _by_preset("n_triplets"))
@click.option("--tile-size", type=click.IntRange(min=1), default=None,
              help="Tile side in pixels with --scenes." + _by_preset("tile_size"))
@click.option("--neighborhood", type=click.IntRange(min=0), default=None,
              help="Max anchor-neighbor centre offset in pixels with --scenes."
                   + _by_preset("neighborhood"))
@click.option("--max-nodata", type=click.FloatRange(0, 1), default=None,
              help="Largest nodata fraction of a sampled tile with --scenes.  [default: 0]")
@click.option("--distant-other-scene", type=click.FloatRange(0, 1), default=None,
              help="Probability that a distant tile comes from another scene, with --scenes."
                   "  [default: 0.5 with several scenes]")
@bands_option
@allow_no_crs_option
@click.option("--encoder", default=D.encoder, show_default=True,
              help="tilenet (the paper's) or any segmentation-models-pytorch encoder "
                   "(resnet18, resnet34, resnet50, efficientnet-b0, ...); random weights "
                   "unless --weights (nothing is downloaded).")
@click.option("--preset", type=click.Choice(["auto", *PRESETS]), default=D.preset,
              show_default=True,
              help="The values of --z-dim, --base-width, --epochs, --pooling and, with --scenes, "
                   "--n-triplets, --tile-size, --neighborhood when not given: paper (the "
                   "Tile2Vec paper's TileNet, for a GPU) or cpu (a TileNet that trains in about "
                   "15 minutes on 2 CPU cores); auto: paper on CUDA, else cpu. With --resume "
                   "they come from the checkpoint.")
@click.option("--z-dim", type=int, default=None,
              help="Embedding size; 0 (smp encoders): no projection, the pooled last-stage "
                   "features (512 for resnet18/34, 2048 for resnet50)." + _by_preset("z_dim"))
@click.option("--base-width", type=int, default=None,
              help="TileNet's first-stage width (64 is the paper's; 8-16 train fast on a CPU)."
                   + _by_preset("base_width"))
@click.option("--pooling", type=click.Choice(POOLINGS), default=None,
              help="What the embedding is made of: center: every stage's centre cell (the "
                   "centre pixel's surroundings at every scale; best on real imagery with "
                   "pixel labels, bench/results/real.md); last: the last stage averaged over "
                   "the tile (the paper's); stages: every stage averaged, concatenated."
                   + _by_preset("pooling"))
@click.option("--normalization", type=click.Choice(NORMALIZATIONS), default=D.normalization,
              show_default=True,
              help="meanstd: per-band standardisation with the scenes' statistics; "
                   "percentile: their 2-98 %% range mapped to [-1, 1], outliers clipped.")
@click.option("--epochs", type=int, default=None,
              help="Epochs (with --resume: train until this many); 0: write the initial "
                   "(e.g. pretrained) encoder as the checkpoint, untrained."
                   + _by_preset("epochs"))
@click.option("--batch-size", type=int, default=D.batch_size, show_default=True,
              help="Triplets per batch (per process under torchrun).")
@click.option("--lr", type=float, default=D.lr, show_default=True, help="Adam learning rate.")
@click.option("--beta1", type=float, default=D.beta1, show_default=True,
              help="Adam's first beta (the paper: betas 0.5, 0.999).")
@click.option("--loss", type=click.Choice(LOSSES), default=D.loss,
              show_default=True,
              help="triplet: the paper's margin loss; infonce: in-batch InfoNCE (every other "
                   "neighbor and distant tile of the batch is a negative).")
@click.option("--margin", type=float, default=DEFAULT_MARGIN, show_default=True,
              help="Triplet margin (the paper: 10-50).")
@click.option("--l2", type=float, default=DEFAULT_L2, show_default=True,
              help="Weight of the mean embedding norm penalty (triplet loss).")
@click.option("--temperature", type=float, default=DEFAULT_TEMPERATURE, show_default=True,
              help="InfoNCE temperature.")
@click.option("--no-augment", is_flag=True, default=False,
              help="No random flips and 90-degree rotations.")
@click.option("--jitter", type=click.FloatRange(0, 1, max_open=True), default=D.jitter,
              show_default=True,
              help="Radiometric jitter: each tile's brightness and contrast changed at random "
                   "by up to this fraction of the normalised scale, independently per tile "
                   "(0: none).")
@click.option("--workers", type=int, default=D.workers, show_default=True,
              help="DataLoader worker processes.")
@seed_option
@device_option
@click.option("--no-amp", is_flag=True, default=False,
              help="No bf16 mixed precision on CUDA.")
@click.option("--weights", type=click.Path(path_type=str), default=None,
              help="Local weights file to start from (loaded with weights_only=True): a "
                   "geoembed checkpoint, or for an smp encoder a torchvision / timm state "
                   "dict or a TorchGeo SSL4EO checkpoint; the first convolution is adapted "
                   "to the bands (matched by name, the rest get the mean filter).  "
                   "[default: none, random initialisation]")
@click.option("--weights-bands", default=None, metavar="rgb|s2|NAME,...",
              help="The weights' input bands, in order, to match the scene's band names: "
                   "rgb, s2 (Sentinel-2 L1C's 13, B01..B12 with B8A) or names (e.g. "
                   "B04,B03,B02 for ImageNet weights on Sentinel-2).  [default: rgb for "
                   "3-band weights, s2 for 13-band weights]")
@click.option("--resume", is_flag=True, default=False,
              help="Continue RUN/checkpoint.pt (weights, optimizer, epoch).")
@stac_options
@overwrite_option
@quiet_option
@handle_errors
def train_command(inputs: tuple[str, ...], out: str, on_the_fly: bool, n_triplets: int | None,
                  tile_size: int | None, neighborhood: int | None, max_nodata: float | None,
                  distant_other_scene: float | None, bands: tuple[int, ...] | None,
                  allow_no_crs: bool, preset: str, encoder: str, z_dim: int | None,
                  base_width: int | None, pooling: str | None, normalization: str,
                  epochs: int | None, batch_size: int, lr: float, beta1: float, loss: str,
                  margin: float, l2: float, temperature: float, no_augment: bool, jitter: float,
                  workers: int, seed: int, device: str, no_amp: bool, weights: str | None,
                  weights_bands: str | None, resume: bool, assets: tuple[str, ...] | None,
                  resampling: str | None, overwrite: bool, quiet: bool) -> None:
    """Train a Tile2Vec encoder on the triplets of STORE (from `geoembed tile`).

    With --scenes, the inputs are rasters and fresh triplets are sampled from them every
    epoch (for data too big to store); a SCENE may be a STAC Item or ItemCollection (JSON
    file or URL), each item a scene of its --assets. Under `torchrun --nproc_per_node N -m
    geoembed.cli train ...` it trains with DistributedDataParallel.
    """
    from geoembed.trainers.tile2vec import train  # torch: imported when the command runs

    if not on_the_fly and len(inputs) != 1:
        raise InputError(f"give one triplet STORE, not {len(inputs)} inputs (or --scenes "
                         "to sample from rasters)")
    config = TrainConfig(
        n_triplets=n_triplets, tile_size=tile_size, neighborhood=neighborhood, bands=bands,
        allow_no_crs=allow_no_crs, max_nodata=max_nodata,
        distant_other_scene=distant_other_scene, preset=preset, encoder=encoder, z_dim=z_dim,
        base_width=base_width, pooling=pooling, normalization=normalization, weights=weights,
        weights_bands=weights_bands, epochs=epochs, batch_size=batch_size, lr=lr, beta1=beta1,
        loss=loss, margin=margin, l2=l2, temperature=temperature, augment=not no_augment,
        jitter=jitter, workers=workers, seed=seed, device=device, amp=not no_amp,
        resume=resume, overwrite=overwrite, quiet=quiet)
    if not on_the_fly and (assets or resampling):
        raise InputError("--assets and --resampling apply to STAC items given with --scenes")
    from geoembed.io.stac import scene_inputs

    result = train(None if on_the_fly else inputs[0], out,
                   scenes=scene_inputs(inputs, assets, resampling) if on_the_fly else None,
                   config=config)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if result.history:
        last = result.history[-1]
        click.echo(
            f"epoch {int(last['epoch'])}: loss {last['loss']:.4f}, "
            f"d(a,n) {last['d_an']:.3f} vs d(a,d) {last['d_ad']:.3f}, "
            f"violated {100 * last['violated']:.1f}%, "
            f"{last['triplets_per_s']:.0f} triplets/s"
        )
    elif epochs == 0:
        click.echo("epochs 0: the initial encoder was saved untrained")
    click.echo(f"checkpoint: {result.checkpoint}")
