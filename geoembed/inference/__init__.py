"""Whole-scene inference: sliding windows through a model into a georeferenced raster."""
