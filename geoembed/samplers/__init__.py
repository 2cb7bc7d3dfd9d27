"""Where tiles go: Tile2Vec triplets and sliding-window grids.

Samplers decide pixel coordinates; the pixels themselves are read through ``geoembed.io``.
"""
