"""``geoembed demo``: the whole pipeline on the sample data, small enough for a CPU.

:func:`run_demo` runs, with the library's Python API, on the sample data (a synthetic
1024 x 1024 px, 4-band scene whose true land cover is known, see ``sample_data/README.md``;
an installed geoembed generates it once into a cache folder, see :func:`sample_data_dir`):

1. ``tile``: Tile2Vec triplets from ``scene.tif`` -> ``out/triplets/``;
2. ``train``: a small TileNet with the triplet loss -> ``out/run/`` (``checkpoint.pt``,
   ``metrics.csv``, ``loss.png``);
3. ``embed``: the whole scene -> ``out/embeddings.tif`` (one embedding per output pixel);
4. ``preview``: ``out/preview.png`` (first three principal components as RGB) and
   ``similar``: ``out/similarity.tif`` (cosine similarity to a few grassland points:
   grassland has the same per-pixel spectra as cropland, only its texture differs);
5. ``evaluate``: land-cover classifiers on the embedding against baselines (band values,
   tile mean/std, an untrained encoder, PCA of the tile), spatial and random CV ->
   ``out/evaluation/``;
6. ``weak train``: U-Nets from one labelled pixel per tile (``out/weak/pixel/``) and, in the
   full demo, from one label per tile through class activation maps (``out/weak/image/``);
7. ``segment``: crop maps of the scene scored against the true land cover ->
   ``out/segmentation*.tif`` and ``out/segmentation*_report.json``;
8. ``out/overview.png`` (a picture of it all), ``out/summary.md`` and ``out/demo.json``
   (what was measured, the settings, the seconds per step and where every file is).

The scores are measured on the scene the models were trained on (its labels are sparse:
596 points, one pixel or one label per 50 x 50 tile); ``bench/`` measures held-out scenes.
Each step writes its outputs atomically; a demo that fails part way leaves the steps that
finished. ``overwrite`` replaces a previous demo directory (and refuses to delete a directory
that is not one).

Modules: ``settings`` (sizes), ``data`` (where the sample data is), ``run`` (the steps),
``measure`` (what is measured), ``summary`` (the tables), ``figures`` (the pictures).
"""

from geoembed.demo.data import sample_data_cache, sample_data_dir
from geoembed.demo.figures import (
    class_colors,
    crop_comparison_rgb,
    landcover_rgb,
    plot_overview,
    scene_rgb,
)
from geoembed.demo.measure import evaluation_metrics, reference_points, similarity_by_class
from geoembed.demo.run import DemoResult, run_demo
from geoembed.demo.settings import (
    CROP_IDS,
    FULL,
    MARKER,
    QUICK,
    SIMILAR_CLASS,
    TEXTURE_CLASSES,
    DemoSettings,
)
from geoembed.demo.summary import format_summary

__all__ = [
    "CROP_IDS", "FULL", "MARKER", "QUICK", "SIMILAR_CLASS", "TEXTURE_CLASSES", "DemoResult",
    "DemoSettings", "class_colors", "crop_comparison_rgb", "evaluation_metrics",
    "format_summary", "landcover_rgb", "plot_overview", "reference_points", "run_demo",
    "sample_data_cache", "sample_data_dir", "scene_rgb", "similarity_by_class",
]
