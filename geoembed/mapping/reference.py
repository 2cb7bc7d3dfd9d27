"""Scoring a class map against a reference land-cover raster on any grid / CRS.

The reference is read onto the map's grid (a rasterio ``WarpedVRT``, nearest neighbour,
nodata respected) strip by strip, so memory stays bounded. Reference classes are matched to
map classes by name (the reference's names given, or its ``CLASS_<code>`` tags, or its codes
as text) or by code; only classes in both are scored and the others are reported in
``notes``. The result holds the wall-to-wall scores (:mod:`geoembed.metrics`) and the
Olofsson et al. (2014) estimates from a stratified random sample of the reference at map
pixels (:mod:`geoembed.mapping.areas`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.coords import disjoint_bounds
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geoembed.errors import CRSError, InputError, RasterError
from geoembed.evaluation.plots import plot_confusion
from geoembed.io.classmap import read_class_names
from geoembed.io.labels import value_key
from geoembed.io.outputs import check_output, replace_path, temporary_sibling
from geoembed.io.scenes import open_dataset
from geoembed.mapping.areas import AreaEstimate, StratifiedSampler, estimate_areas
from geoembed.metrics import ConfusionAccumulator

#: pixels read per strip (map and reference together stay well under 100 MB)
STRIP_PIXELS = 4_000_000


@dataclass
class ReferenceScore:
    """Wall-to-wall scores over the shared classes, and the sample-based area estimates.

    ``confusion_matrix`` rows are reference classes, columns map classes, both in
    ``class_order``. ``mapped_area`` / ``reference_area`` are the areas of each shared class
    in the map and in the reference over the scored pixels (``units``); ``areas`` the
    Olofsson estimates from the sample (None when nothing could be scored).
    """

    class_order: list[str]
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float | int]]
    confusion_matrix: list[list[int]]
    pixels: int
    mapped_area: list[float]
    reference_area: list[float]
    units: str
    areas: AreaEstimate | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "class_order": self.class_order, "accuracy": self.accuracy,
            "macro_f1": self.macro_f1, "per_class": self.per_class,
            "confusion_matrix": self.confusion_matrix, "pixels": self.pixels,
            "units": self.units,
            "mapped_area": dict(zip(self.class_order, self.mapped_area, strict=True)),
            "reference_area": dict(zip(self.class_order, self.reference_area, strict=True)),
            "area_estimates": self.areas.to_dict() if self.areas is not None else None,
            "notes": self.notes,
        }


def _norm(name: Any) -> str:
    return str(name).strip().casefold()


def reference_class_names(ds: Any) -> dict[int, str]:
    """``{code: name}`` from a raster's ``CLASS_<code>`` tags (empty when it has none)."""
    return {int(k[6:]): v for k, v in ds.tags().items()
            if k.startswith("CLASS_") and k[6:].isdigit()}


def pixel_area(crs: Any, transform: Any) -> tuple[float, str]:
    """The area of one pixel in hectares for a projected CRS, else 1 pixel."""
    if crs is not None and crs.is_projected:
        try:
            factor = float(crs.linear_units_factor[1])
        except Exception:  # a CRS without linear units: count pixels
            return 1.0, "pixels"
        return abs(transform.a * transform.e - transform.b * transform.d) * factor ** 2 / 1e4, \
            "ha"
    return 1.0, "pixels"


class _Matcher:
    """Reference value -> index into the shared classes (-1: not scored), with counts of
    reference values that match no map class."""

    def __init__(self, map_names: list[str], ref_names: Mapping[int, str], by_code: bool) -> None:
        self.map_names = map_names
        self.ref_names = dict(ref_names)
        self.by_code = by_code
        self.table: dict[str, int] = {}         # value key -> map code (or -1)
        self.unmatched: dict[str, int] = {}     # reference class label -> pixels
        self.matched_map_codes: set[int] = set()
        self._lookup = {_norm(n): i for i, n in enumerate(map_names)}

    def label(self, v: Any) -> str:
        key = value_key(v)
        try:
            return self.ref_names.get(int(float(key)), key)
        except ValueError:
            return key

    def map_code(self, v: Any) -> int:
        key = value_key(v)
        if key not in self.table:
            if self.by_code:
                try:
                    code = int(key)
                except ValueError:
                    code = -1
                code = code if 0 <= code < len(self.map_names) else -1
            else:
                code = self._lookup.get(_norm(self.label(v)), -1)
            self.table[key] = code
        return self.table[key]

    def codes(self, raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Map codes of a block of reference values (-1 where invalid or unmatched)."""
        out = np.full(raw.shape, -1, dtype=np.int64)
        values, inverse, counts = np.unique(raw[valid], return_inverse=True, return_counts=True)
        if values.size == 0:
            return out
        lut = np.array([self.map_code(v) for v in values], dtype=np.int64)
        out[valid] = lut[inverse.ravel()]
        for v, code, n in zip(values, lut, counts, strict=True):
            if code < 0:
                label = self.label(v)
                self.unmatched[label] = self.unmatched.get(label, 0) + int(n)
            else:
                self.matched_map_codes.add(int(code))
        return out


def _open_reference_on(ref: Any, dst: Any) -> WarpedVRT:
    """The reference on ``dst``'s grid, nearest neighbour; outside its extent is masked."""
    if ref.crs is None:
        raise CRSError(f"{ref.name}: the reference raster has no CRS")
    left, bottom, right, top = transform_bounds(ref.crs, dst.crs, *ref.bounds, densify_pts=21)
    if disjoint_bounds((left, bottom, right, top), tuple(dst.bounds)):
        raise RasterError(f"{ref.name}: the reference raster does not overlap the map")
    opts: dict[str, Any] = {"crs": dst.crs, "transform": dst.transform, "width": dst.width,
                            "height": dst.height, "resampling": Resampling.nearest}
    if ref.nodata is None:
        opts["add_alpha"] = True   # the mask then says where the reference has no data
    return WarpedVRT(ref, **opts)


def score_map(map_path: str | os.PathLike, reference_path: str | os.PathLike, *,
              class_names: Sequence[str] | None = None,
              reference_names: Mapping[int, str] | None = None, by_code: bool = False,
              n_per_class: int = 50, seed: int = 0,
              confusion_png: str | os.PathLike | None = None,
              overwrite: bool = False) -> ReferenceScore:
    """Score a class map (codes 0..K-1, nodata) against a reference raster.

    Args:
        map_path: the class map (e.g. written by :class:`geoembed.io.classmap.ClassMapWriter`).
        reference_path: a reference land-cover raster, any grid / CRS, band 1.
        class_names: the map's class names (default: its tags).
        reference_names: ``{reference code: name}`` (default: the reference's ``CLASS_<code>``
            tags, else the codes themselves as text). Names match case-insensitively.
        by_code: match reference code ``c`` with map code ``c`` instead of by name.
        n_per_class: sample pixels per map class for the area estimates.
        seed: the sample's seed.
        confusion_png: where to draw the confusion matrix (written atomically).
        overwrite: replace an existing ``confusion_png``.

    Raises:
        InputError: no class names, or no class in both the map and the reference.
        CRSError / RasterError: a reference without CRS or one that does not overlap.
    """
    if confusion_png is not None:
        check_output(confusion_png, overwrite)
    with open_dataset(map_path) as mds:
        names = list(class_names) if class_names is not None else read_class_names(map_path)
        if not names:
            raise InputError(f"{map_path}: the map has no class names in its tags; "
                             "pass class_names")
        names = [str(n) for n in names]
        k = len(names)
        if mds.crs is None:
            raise CRSError(f"{map_path}: the map has no CRS")
        with open_dataset(reference_path) as rds:
            ref_names = (dict(reference_names) if reference_names is not None
                         else reference_class_names(rds))
            matcher = _Matcher(names, ref_names, by_code)
            with _open_reference_on(rds, mds) as vrt:
                full, sampler, map_counts = _scan(mds, vrt, matcher, k, n_per_class, seed)
        px_area, units = pixel_area(mds.crs, mds.transform)
    return _report(names, matcher, full, sampler, map_counts, px_area, units, confusion_png,
                   map_path, reference_path)


def _scan(mds: Any, vrt: Any, matcher: _Matcher, k: int, n_per_class: int,
          seed: int) -> tuple[ConfusionAccumulator, StratifiedSampler, np.ndarray]:
    """One pass over the map in strips: the full confusion (reference rows, map columns, in
    map codes), the sample, and the valid map pixels of each class."""
    full = ConfusionAccumulator(k)
    sampler = StratifiedSampler(k, n_per_class, seed=seed)
    map_counts = np.zeros(k, dtype=np.int64)
    block_h = mds.block_shapes[0][0]
    rows = max(block_h, (STRIP_PIXELS // max(1, mds.width)) // block_h * block_h)
    for row_off in range(0, mds.height, rows):
        window = Window(0, row_off, mds.width, min(rows, mds.height - row_off))
        codes = mds.read(1, window=window).astype(np.int64)
        mvalid = (mds.read_masks(1, window=window) > 0) & (codes >= 0) & (codes < k)
        raw = vrt.read(1, window=window)
        rvalid = vrt.read_masks(1, window=window) > 0
        truth = matcher.codes(raw, rvalid)
        map_counts += np.bincount(codes[mvalid], minlength=k)
        scored = mvalid & (truth >= 0)
        full.add(truth[scored], codes[scored])
        sampler.add(np.where(scored, codes, -1), scored, row_off=row_off, labels=truth)
    return full, sampler, map_counts


def _report(names: list[str], matcher: _Matcher, full: ConfusionAccumulator,
            sampler: StratifiedSampler, map_counts: np.ndarray, px_area: float, units: str,
            confusion_png: str | os.PathLike | None, map_path: Any,
            reference_path: Any) -> ReferenceScore:
    # a map class in the reference is scored even where the map never predicts it (its
    # reference pixels are errors, not left out)
    shared = sorted(matcher.matched_map_codes)
    notes = []
    if not shared:
        raise InputError(f"{reference_path}: no class of the reference is a class of the map "
                         f"(map classes: {', '.join(names)}; reference classes: "
                         f"{', '.join(sorted(matcher.unmatched)) or 'none on the map'})")
    only_map = [names[i] for i in range(len(names)) if i not in shared and map_counts[i] > 0]
    if only_map:
        n_px = int(sum(map_counts[names.index(n)] for n in only_map))
        notes.append(f"map classes not in the reference, not scored: {', '.join(only_map)} "
                     f"({n_px} pixels)")
    if matcher.unmatched:
        listed = ", ".join(f"{k} ({v} pixels)" for k, v in sorted(matcher.unmatched.items()))
        notes.append(f"reference classes not in the map, not scored: {listed}")
    # restrict to the shared classes (the scored pixels are all shared-by-shared already)
    sub = full.matrix[np.ix_(shared, shared)]
    acc = ConfusionAccumulator(len(shared))
    acc.matrix = sub
    shared_names = [names[i] for i in shared]
    rep = acc.report(shared_names)
    # the population of the estimates: pixels scored with both classes shared; the sample
    # units outside it (a reference class the map never predicts) are left out
    sample = sampler.result()
    index = np.full(len(names), -1, dtype=np.int64)
    index[shared] = np.arange(len(shared))
    s_idx, t_idx = index[sample.strata], index[sample.labels]
    keep = (s_idx >= 0) & (t_idx >= 0)
    counts = np.zeros((len(shared), len(shared)), dtype=np.int64)
    np.add.at(counts, (s_idx[keep], t_idx[keep]), 1)
    mapped = sub.sum(axis=0) * px_area
    areas = estimate_areas(counts, mapped, class_names=shared_names, units=units)
    notes.append(f"area estimates from a stratified random sample of {int(counts.sum())} "
                 f"reference pixels (up to {sampler.n} per map class, seed {sampler.seed})")
    if confusion_png is not None:
        _plot(confusion_png, rep, shared_names, map_path)
    return ReferenceScore(
        class_order=shared_names, accuracy=rep["accuracy"], macro_f1=rep["macro_f1"],
        per_class=rep["classes"], confusion_matrix=rep["confusion_matrix"],
        pixels=rep["pixels"], mapped_area=(sub.sum(axis=0) * px_area).tolist(),
        reference_area=(sub.sum(axis=1) * px_area).tolist(), units=units, areas=areas,
        notes=notes)


def _plot(path: str | os.PathLike, rep: dict, names: list[str], map_path: Any) -> None:
    """The confusion matrix PNG, written under a temporary name and renamed into place."""
    final = Path(path)
    tmp = temporary_sibling(final).with_suffix(final.suffix or ".png")
    row = {"confusion_matrix": rep["confusion_matrix"], "class_order": names}
    title = (f"{Path(map_path).name} vs reference: accuracy {rep['accuracy']:.3f}, "
             f"macro-F1 {rep['macro_f1']:.3f} (rows: reference, columns: map)")
    try:
        plot_confusion(tmp, row, title=title)
        replace_path(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["ReferenceScore", "pixel_area", "reference_class_names", "score_map"]
