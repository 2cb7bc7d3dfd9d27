"""The demo's sizes (:class:`DemoSettings`: :data:`FULL` for ``make demo``, :data:`QUICK` for
``--quick``) and the sample data's class facts it relies on."""

from __future__ import annotations

from dataclasses import dataclass

#: Marker file that identifies a demo output directory (so ``overwrite`` may delete it).
MARKER = ".geoembed-demo"
#: The texture-only classes of the sample data (same per-pixel spectra within each pair).
TEXTURE_CLASSES = ("cropland", "grassland", "orchard", "shrubland")
#: The class of the similarity search's reference points (cropland's texture twin).
SIMILAR_CLASS = "grassland"
#: Land-cover ids of the crop classes (cropland, orchard) in ``landcover.tif``.
CROP_IDS = ("3", "5")
#: Label files of the weak-label modes, and what they hold (for the step lines).
WEAK_LABELS = {"pixel": "weak_points.gpkg", "image": "weak_tiles.gpkg"}
WEAK_WHAT = {"pixel": "one labelled pixel per tile", "image": "one label per tile (CAM)"}


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run (see :data:`FULL` and :data:`QUICK`)."""

    n_triplets: int
    tile_size: int
    neighborhood: int
    base_width: int
    z_dim: int
    pooling: str
    epochs: int
    batch_size: int
    embed_stride: int
    eval_classifier: str
    eval_cv: str
    eval_sizes: str
    eval_repeats: int
    eval_pca_tiles: int
    eval_max_labels: int | None
    weak_modes: tuple[str, ...]
    weak_epochs: dict[str, int]
    weak_tile: dict[str, int]
    weak_max_labels: int | None
    unet_decoder: tuple[int, ...]
    segment_tile: int
    segment_stride: int
    similarity_points: int
    preview_size: int


#: The demo of ``make demo``: a few minutes on 2 CPU cores, large enough to show that the
#: embedding separates the texture-only classes that per-pixel values and tile statistics
#: cannot.
FULL = DemoSettings(
    n_triplets=3000, tile_size=32, neighborhood=32, base_width=8, z_dim=64, pooling="center",
    epochs=5, batch_size=50, embed_stride=8, eval_classifier="logreg", eval_cv="both",
    eval_sizes="10,20,50,100,200,all", eval_repeats=3, eval_pca_tiles=500,
    eval_max_labels=None, weak_modes=("pixel", "image"),
    weak_epochs={"pixel": 20, "image": 8}, weak_tile={"pixel": 32, "image": 50},
    weak_max_labels=None, unet_decoder=(32, 16, 8), segment_tile=256, segment_stride=192,
    similarity_points=10, preview_size=512,
)
#: ``--quick``: tiny sizes that exercise every step in well under a minute (for tests).
QUICK = DemoSettings(
    n_triplets=200, tile_size=32, neighborhood=32, base_width=4, z_dim=8, pooling="center",
    epochs=1, batch_size=50, embed_stride=32, eval_classifier="logreg", eval_cv="both",
    eval_sizes="20,all", eval_repeats=1, eval_pca_tiles=64, eval_max_labels=200,
    weak_modes=("pixel",), weak_epochs={"pixel": 1, "image": 1},
    weak_tile={"pixel": 32, "image": 50}, weak_max_labels=64, unet_decoder=(8, 8, 8),
    segment_tile=256, segment_stride=256, similarity_points=3, preview_size=256,
)


def segmentation_key(mode: str) -> str:
    """The outputs key (and file stem) of a weak-label mode's crop map."""
    return "segmentation" if mode == "pixel" else f"segmentation_{mode}"


def plural(n: int, word: str) -> str:
    """``"1 epoch"``, ``"5 epochs"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
