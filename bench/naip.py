"""The real NAIP arrays in ../shared/real/naip as GeoTIFFs, shared by the benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_naip_scenes(src: Path, out_dir: Path) -> list[Path] | None:
    """Write each ``naip*.npy`` (H, W, 5) array's image channels as a 4-band uint8 GeoTIFF.

    The arrays have no georeference: a made-up one is used (0.6 m pixels, scenes 1 km apart
    in UTM 10N, the Central Valley). Returns None when the arrays are absent.
    """
    from rasterio.transform import from_origin

    from geoembed.io.geotiff import write_geotiff

    files = sorted(src.glob("naip*.npy"))
    if not files:
        return None
    out = []
    for k, f in enumerate(files):
        path = out_dir / f"{f.stem}.tif"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            arr = np.load(f)[:, :, :4].transpose(2, 0, 1).copy()  # (4, H, W) R, G, B, NIR
            transform = from_origin(700_000.0 + 1000.0 * k, 4_100_000.0, 0.6, 0.6)
            write_geotiff(path, arr, crs="EPSG:32610", transform=transform,
                          descriptions=["red", "green", "blue", "nir"])
        out.append(path)
    return out
