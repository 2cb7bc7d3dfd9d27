"""Sanity check of sample_data/: what spectra alone can and cannot separate.

A random forest on per-pixel band values (balanced sample per class) and on per-tile band
mean / std (50 x 50 tiles that are >= 90 % one class) should separate water, forest and urban
well but be near chance (balanced accuracy 0.5) on each texture-only pair (cropland /
grassland, orchard / shrubland). Prints a markdown table.
Run: ``.venv/bin/python bench/sample_data_check.py [SAMPLE_DIR]`` (about 45 s on 2 cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix
from sklearn.model_selection import GroupKFold, cross_val_predict

SAMPLE = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "sample_data"
NAMES = ["water", "forest", "urban", "cropland", "grassland", "orchard", "shrubland"]
PAIRS = [(3, 4), (5, 6)]


def rf() -> RandomForestClassifier:
    return RandomForestClassifier(100, min_samples_leaf=5, n_jobs=1, random_state=0)


def _autocorrelation(tile: np.ndarray, max_lag: int = 12) -> np.ndarray:
    """Autocorrelation of a 2-D tile at lags 1..max_lag along x and along y."""
    t = tile - tile.mean()
    var = (t * t).mean()
    out = [(t[:, :-k] * t[:, k:]).mean() / var for k in range(1, max_lag + 1)]
    out += [(t[:-k] * t[k:]).mean() / var for k in range(1, max_lag + 1)]
    return np.asarray(out)


Row = tuple[str, float, "np.ndarray | None"]


def pixel_rows(img: np.ndarray, lc: np.ndarray, rng: np.random.Generator) -> list[Row]:
    """Per-pixel band values, 6000 pixels per class: a random 50/50 split (7 classes and each
    texture pair) and spatial 4-fold CV over 128 px blocks (each texture pair)."""
    w = lc.shape[1]
    flat_lc = lc.ravel()
    X = img.reshape(4, -1).T
    idx = np.concatenate([rng.permutation(np.flatnonzero(flat_lc == c))[:6000]
                          for c in range(7)])
    y = flat_lc[idx]
    rows, cols = np.divmod(idx, w)
    block = (rows // 128) * 100 + cols // 128
    half = rng.random(len(idx)) < 0.5
    pred = rf().fit(X[idx][half], y[half]).predict(X[idx][~half])
    per_class = confusion_matrix(y[~half], pred, normalize="true").diagonal()
    out: list[Row] = [("pixels, random split, 7 classes", accuracy_score(y[~half], pred),
                       per_class)]
    for a, b in PAIRS:
        m = np.isin(y, [a, b])
        p = rf().fit(X[idx][half & m], y[half & m]).predict(X[idx][~half & m])
        out.append((f"pixels, random split, {NAMES[a]} vs {NAMES[b]}",
                    balanced_accuracy_score(y[~half & m], p), None))
        p = cross_val_predict(rf(), X[idx][m], y[m], groups=block[m], cv=GroupKFold(4))
        out.append((f"pixels, spatial 4-fold CV, {NAMES[a]} vs {NAMES[b]}",
                    balanced_accuracy_score(y[m], p), None))
    return out


def tile_features(img: np.ndarray, lc: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean+std, mean+std+NIR autocorrelation, class)`` of the 50 x 50 tiles (stride 25)
    that are >= 90 % one class."""
    h, w = lc.shape
    feats, texture, labels = [], [], []
    for r0 in range(0, h - 50 + 1, 25):
        for c0 in range(0, w - 50 + 1, 25):
            t = lc[r0:r0 + 50, c0:c0 + 50]
            if (t == 255).any():
                continue
            counts = np.bincount(t.ravel(), minlength=7)
            if counts.max() < 0.9 * t.size:
                continue
            v = img[:, r0:r0 + 50, c0:c0 + 50].reshape(4, -1)
            feats.append(np.concatenate([v.mean(1), v.std(1)]))
            texture.append(_autocorrelation(img[3, r0:r0 + 50, c0:c0 + 50]))
            labels.append(int(counts.argmax()))
    F = np.asarray(feats)
    return F, np.concatenate([F, np.asarray(texture)], axis=1), np.asarray(labels)


def tile_rows(img: np.ndarray, lc: np.ndarray) -> list[Row]:
    """Tile mean / std per band, and with NIR autocorrelation (the control), per pair."""
    F, T, L = tile_features(img, lc)
    out: list[Row] = []
    for a, b in PAIRS:
        m = np.isin(L, [a, b])
        p = cross_val_predict(rf(), F[m], L[m], cv=5)
        out.append((f"tile mean+std (5-fold, n={m.sum()}), {NAMES[a]} vs {NAMES[b]}",
                    balanced_accuracy_score(L[m], p), None))
        p = cross_val_predict(rf(), T[m], L[m], cv=5)
        out.append((f"tile mean+std+NIR autocorrelation (control), {NAMES[a]} vs "
                    f"{NAMES[b]}", balanced_accuracy_score(L[m], p), None))
    return out


def main() -> None:
    with rasterio.open(SAMPLE / "scene.tif") as ds:
        img = ds.read().astype(np.float32)
    with rasterio.open(SAMPLE / "landcover.tif") as ds:
        lc = ds.read(1)
    rows_out = pixel_rows(img, lc, np.random.default_rng(0)) + tile_rows(img, lc)
    print("| random forest on | balanced accuracy | per-class recall (water..shrubland) |")
    print("|---|---|---|")
    for name, acc, pc in rows_out:
        extra = " ".join(f"{v:.2f}" for v in pc) if pc is not None else ""
        print(f"| {name} | {acc:.3f} | {extra} |")


if __name__ == "__main__":
    main()
