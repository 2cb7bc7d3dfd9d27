"""Training: one fit loop (device, AMP, DDP, checkpoint, resume, metrics) and the Tile2Vec
and weak-label tasks built on it."""
