"""Whole-scene inference: sliding windows through a model into a georeferenced raster.

``config`` (options, torch-free) -> ``strips`` (the window grid read row by row in a
background thread) -> ``engine`` (batches across rows, the model) -> ``stitch`` (one pixel
per window, or blended per-pixel outputs) -> a GeoTIFF. ``embedding`` (``geoembed embed``)
and ``segmentation`` (``geoembed segment``, scored by ``reference``) are built on them.
"""
