"""Open a map's inputs and get its feature extractor ready (encoder, rasters, PCA, filters).

:func:`open_scene_and_model` opens the scene (with the checkpoint's bands when a checkpoint is
given) and the encoder; :func:`build_features` opens the embedding rasters and fits what the
window features need on unlabelled random tiles of the scene (the same sample and the same
fits as ``evaluate``: :func:`geoembed.evaluation.features.random_tile_sample`,
:func:`~geoembed.evaluation.features.fit_tile_pca`,
:func:`~geoembed.evaluation.random_features.fit_on_tile_sample`).
"""

from __future__ import annotations

import os
from typing import Any

from geoembed.evaluation.features import fit_tile_pca, random_tile_sample
from geoembed.evaluation.inputs import tile_from_tags
from geoembed.io.scenes import Scene, band_statistics, open_dataset, open_scene
from geoembed.mapping.config import DEFAULT_TILE, MapConfig
from geoembed.mapping.features import PixelFeatures
from geoembed.mapping.sources import RasterSource

PCA_MAX_COMPONENTS = 64


def open_scene_and_model(scene_path: str | os.PathLike, cfg: MapConfig) -> tuple[Scene, Any]:
    """The scene and the checkpoint's :class:`~geoembed.inference.embedding.EmbeddingModel`
    (None without a checkpoint)."""
    if cfg.checkpoint is None:
        return open_scene(scene_path, cfg.bands, allow_no_crs=cfg.allow_no_crs), None
    # torch only when a checkpoint is used: the baselines alone run without it
    from geoembed.inference.embedding import load_embedding_model, open_scene_for

    em = load_embedding_model(cfg.checkpoint)
    return open_scene_for(em, scene_path, cfg.bands, allow_no_crs=cfg.allow_no_crs), em


def open_sources(scene: Scene, cfg: MapConfig) -> list[RasterSource]:
    """The embedding rasters (each checked: CRS, overlap with the scene)."""
    sources: list[RasterSource] = []
    try:
        for path in cfg.embeddings:
            sources.append(RasterSource(path, scene))
    except BaseException:
        for s in sources:
            s.close()
        raise
    return sources


def tile_size(cfg: MapConfig, em: Any) -> int:
    """The checkpoint's tile, else ``--tile-size``, else the first raster's tag, else 50."""
    if em is not None:
        return int(em.tile)
    if cfg.tile_size is not None:
        return int(cfg.tile_size)
    for path in cfg.embeddings:
        with open_dataset(path) as ds:
            tile = tile_from_tags(ds.tags())
        if tile:
            return tile
    return DEFAULT_TILE


def build_features(scene: Scene, em: Any, sources: list[RasterSource], cfg: MapConfig,
                   tile: int) -> PixelFeatures:
    """A :class:`PixelFeatures` with everything fitted for ``cfg.feature_names()``."""
    names = cfg.feature_names()
    need = set(names)
    window = need & {"tile-stats", "pca", "random-features"}
    stats = em.band_stats if em is not None else (
        band_statistics([scene], seed=cfg.seed) if window else None)
    pf = PixelFeatures(scene=scene, names=names, tile=tile, stats=stats, sources=sources,
                       batch_size=cfg.batch_size)
    if em is not None and "embedding" in need:
        from geoembed.devices import resolve_device

        pf.device = resolve_device(cfg.device)
        pf.encoder = em.model.to(pf.device).eval()
        pf.encoder_dim = int(em.z_dim)
    unlabelled = None
    if need & {"pca", "random-features"}:
        unlabelled = random_tile_sample(scene, tile, cfg.pca_tiles, stats, seed=cfg.seed)
    if "pca" in need:
        z = em.z_dim if em is not None else (sources[0].count if sources else
                                             PCA_MAX_COMPONENTS)
        pf.pca = fit_tile_pca(unlabelled, n_components=min(z, PCA_MAX_COMPONENTS),
                              seed=cfg.seed)
    if "random-features" in need:
        from geoembed.evaluation.random_features import fit_on_tile_sample

        pf.random_features = fit_on_tile_sample(unlabelled, scene.count, tile,
                                                n_features=cfg.n_random_features,
                                                seed=cfg.seed)
    pf.dims = {
        "embedding": pf.encoder_dim + sum(s.count for s in sources),
        "bands": scene.count, "tile-stats": 2 * scene.count,
        "random-features": cfg.n_random_features,
        "pca": int(pf.pca.n_components_) if pf.pca is not None else 0,
    }
    pf.dims = {n: pf.dims[n] for n in names}
    return pf


__all__ = ["build_features", "open_scene_and_model", "open_sources", "tile_size"]
