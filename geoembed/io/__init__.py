"""Reading and writing: scenes and windows, GeoTIFF/COG outputs, embedding rasters, labels,
checkpoints and the triplet store."""
