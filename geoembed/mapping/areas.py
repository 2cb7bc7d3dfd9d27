"""Area estimates and accuracy from a stratified random reference sample (Olofsson et al. 2014).

Olofsson, Foody, Herold, Stehman, Woodcock, Wulder (2014), "Good practices for estimating area
and assessing accuracy of land change", Remote Sensing of Environment 148:42-57. The map
classes are the strata: ``counts[i, j]`` is the number of sample pixels mapped as class ``i``
whose reference class is ``j``, and ``mapped_area[i]`` the area (pixels, ha...) mapped as ``i``.

:func:`estimate_areas` gives the estimated area proportions, overall / user's / producer's
accuracy and the area of each class with standard errors and confidence intervals;
:class:`StratifiedSampler` draws the stratified random sample from a map fed block by block
(memory bounded), :func:`allocate` decides how many pixels each stratum gets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geoembed.errors import InputError
from geoembed.io.scenes import open_dataset

#: z for a two-sided 95 % confidence interval, as in the paper
Z95 = 1.96


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b``, NaN where ``b`` is 0."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return np.divide(a, b, out=np.full(a.shape, np.nan), where=b != 0)


def _var_div(num: np.ndarray, n_minus_1: np.ndarray) -> np.ndarray:
    """``num / (n - 1)``; 0 where ``n <= 1`` (the numerator is then 0: one sample, no spread)."""
    num, d = np.broadcast_arrays(np.asarray(num, dtype=np.float64),
                                 np.asarray(n_minus_1, dtype=np.float64))
    return np.divide(num, d, out=np.zeros(num.shape), where=d > 0)


@dataclass(frozen=True)
class AreaEstimate:
    """Stratified estimates (rows / strata = map classes, columns = reference classes).

    Arrays are indexed by class; areas are in the units of the ``mapped_area`` given.
    A ``*_se`` is a standard error; ``z * se`` is the half-width of the confidence interval.
    """

    class_names: list[str]
    counts: np.ndarray
    mapped_area: np.ndarray
    proportions: np.ndarray
    overall_accuracy: float
    overall_accuracy_se: float
    users_accuracy: np.ndarray
    users_accuracy_se: np.ndarray
    producers_accuracy: np.ndarray
    producers_accuracy_se: np.ndarray
    area_proportion: np.ndarray
    area_proportion_se: np.ndarray
    area: np.ndarray
    area_se: np.ndarray
    z: float = Z95
    units: str = "pixels"

    @property
    def area_ci(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of each class's area: ``area -/+ z * area_se``."""
        return self.area - self.z * self.area_se, self.area + self.z * self.area_se

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: overall accuracy and one row per class."""
        def f(v: Any) -> float | None:
            return None if not np.isfinite(v) else float(v)

        low, high = self.area_ci
        classes = {}
        for i, name in enumerate(self.class_names):
            classes[name] = {
                "sample": int(self.counts[i].sum()),
                "mapped_area": f(self.mapped_area[i]),
                "area": f(self.area[i]), "area_se": f(self.area_se[i]),
                "area_ci_low": f(low[i]), "area_ci_high": f(high[i]),
                "users_accuracy": f(self.users_accuracy[i]),
                "users_accuracy_ci": f(self.z * self.users_accuracy_se[i]),
                "producers_accuracy": f(self.producers_accuracy[i]),
                "producers_accuracy_ci": f(self.z * self.producers_accuracy_se[i]),
            }
        return {
            "method": "stratified estimator, map classes as strata (Olofsson et al. 2014)",
            "units": self.units, "z": self.z, "sample_size": int(self.counts.sum()),
            "overall_accuracy": f(self.overall_accuracy),
            "overall_accuracy_ci": f(self.z * self.overall_accuracy_se),
            "classes": classes,
            "error_matrix_counts": self.counts.astype(int).tolist(),
            "error_matrix_proportions": self.proportions.tolist(),
        }


def estimate_areas(counts: np.ndarray | Sequence[Sequence[int]],
                   mapped_area: np.ndarray | Sequence[float], *,
                   class_names: Sequence[str] | None = None, z: float = Z95,
                   units: str = "pixels") -> AreaEstimate:
    """Olofsson et al. (2014) stratified estimates from a sample error matrix.

    Args:
        counts: ``(K, K)`` sample counts, rows = map class (stratum), columns = reference class.
        mapped_area: ``(K,)`` area mapped as each class (pixels, ha, ...: areas come back in
            the same units).
        class_names: names of the K classes (default ``"0"..``).
        z: the normal quantile of the confidence intervals (1.96: 95 %).
        units: a label for the area units, kept in the result.

    Returns:
        :class:`AreaEstimate`. Eq. numbers refer to the paper: p_ij = W_i n_ij / n_i. (eq. 4),
        area A_j = A p_.j (eq. 9-10) with S(p_.j)^2 = sum_i W_i^2 (n_ij/n_i.)(1 - n_ij/n_i.) /
        (n_i. - 1) (eq. 10), overall / user's / producer's accuracy (eq. 1-3) and their
        variances (eq. 5-7). A ratio with a zero denominator (a class never mapped or never in
        the reference sample) is NaN; a stratum with one sample pixel adds no variance.

    Raises:
        InputError: shapes that do not match, negative values, a stratum with mapped area but
            no sample pixel, or no mapped area at all.
    """
    n = np.asarray(counts, dtype=np.float64)
    area_i = np.asarray(mapped_area, dtype=np.float64)
    k = len(area_i)
    if n.shape != (k, k):
        raise InputError(f"the error matrix is {n.shape}; expected ({k}, {k}) for {k} "
                         "mapped areas")
    if (n < 0).any() or (area_i < 0).any() or not np.isfinite(area_i).all():
        raise InputError("sample counts and mapped areas must be finite and non-negative")
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in
                                                                            range(k)]
    if len(names) != k:
        raise InputError(f"{len(names)} class names for {k} classes")
    total = area_i.sum()
    if total <= 0:
        raise InputError("the mapped areas sum to 0")
    n_i = n.sum(axis=1)
    empty = (n_i == 0) & (area_i > 0)
    if empty.any():
        raise InputError("no sample pixel in the mapped class(es) "
                         f"{', '.join(names[i] for i in np.flatnonzero(empty))}: every stratum "
                         "with a mapped area needs at least one")
    w = area_i / total
    frac = np.nan_to_num(_div(n, n_i[:, None]))      # n_ij / n_i. (0 for an empty stratum)
    p = w[:, None] * frac                             # eq. 4
    p_col = p.sum(axis=0)                             # p_.j: area proportions
    diag = np.diag(p)
    overall = float(diag.sum())
    users = _div(np.diag(n), n_i)                     # = p_ii / p_i.
    producers = _div(diag, p_col)
    users0 = np.nan_to_num(users)
    v_users = _var_div(users0 * (1 - users0), n_i - 1)
    v_overall = float((w ** 2 * v_users).sum())
    v_prop = (w[:, None] ** 2 * _var_div(frac * (1 - frac), (n_i - 1)[:, None])).sum(axis=0)
    # producer's accuracy variance (eq. 7): with proportions W_i in place of areas N_i.
    n_hat_j = p_col
    prod0 = np.nan_to_num(producers)
    term1 = w ** 2 * (1 - prod0) ** 2 * v_users
    offdiag = w[:, None] ** 2 * _var_div(frac * (1 - frac), (n_i - 1)[:, None])
    term2 = offdiag.sum(axis=0) - np.diag(offdiag)
    v_prod = _div(term1 + prod0 ** 2 * term2, n_hat_j ** 2)
    return AreaEstimate(
        class_names=names, counts=n, mapped_area=area_i, proportions=p,
        overall_accuracy=overall, overall_accuracy_se=float(np.sqrt(v_overall)),
        users_accuracy=users, users_accuracy_se=np.where(n_i > 0, np.sqrt(v_users), np.nan),
        producers_accuracy=producers, producers_accuracy_se=np.sqrt(v_prod),
        area_proportion=p_col, area_proportion_se=np.sqrt(v_prop),
        area=p_col * total, area_se=np.sqrt(v_prop) * total, z=z, units=units)


def allocate(pixel_counts: Sequence[int] | np.ndarray, n: int, *, proportional: bool = False,
             minimum: int = 0) -> np.ndarray:
    """Sample size of each stratum.

    Equal allocation (default): ``n`` per stratum. Proportional: a total of ``n`` shared in
    proportion to the strata's pixel counts (largest remainders), each at least ``minimum``
    (Olofsson et al. recommend e.g. 50 per class for rare classes). A stratum never gets more
    than its pixels.
    """
    counts = np.asarray(pixel_counts, dtype=np.int64)
    if n < 1 or minimum < 0:
        raise InputError(f"the sample size must be >= 1 (got {n}) and the minimum >= 0")
    if not proportional:
        return np.minimum(counts, n)
    total = counts.sum()
    if total == 0:
        return np.zeros_like(counts)
    exact = n * counts / total
    out = np.floor(exact).astype(np.int64)
    rest = n - out.sum()
    if rest > 0:
        out[np.argsort(-(exact - out), kind="stable")[:rest]] += 1
    return np.minimum(np.maximum(out, minimum), counts)


@dataclass
class StratifiedSample:
    """Sample pixels (``rows``, ``cols`` in the map's grid), their stratum (map class) and
    optional per-pixel ``labels`` (e.g. the reference class), with every stratum's pixel
    count."""

    rows: np.ndarray
    cols: np.ndarray
    strata: np.ndarray
    labels: np.ndarray | None
    pixel_counts: np.ndarray
    allocation: np.ndarray


@dataclass
class _Kept:
    keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    cols: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


class StratifiedSampler:
    """A stratified simple random sample (without replacement) drawn from blocks of a map.

    Every eligible pixel gets a uniform random key; each stratum keeps the pixels with the
    smallest keys, which is a simple random sample of the stratum whatever the block order.
    Memory: the kept pixels only (``n`` per stratum, or ``n`` in all when proportional).
    The same seed and the same blocks in the same order give the same sample.

    Example:
        >>> sampler = StratifiedSampler(n_strata=4, n=50, seed=0)
        >>> for window, codes, valid in blocks:
        ...     sampler.add(codes, valid, row_off=window.row_off, col_off=window.col_off)
        >>> sample = sampler.result()
    """

    def __init__(self, n_strata: int, n: int = 50, *, proportional: bool = False,
                 minimum: int = 0, seed: int = 0) -> None:
        if n < 1:
            raise InputError(f"the sample size must be >= 1 (got {n})")
        self.n_strata = n_strata
        self.n = n
        self.proportional = proportional
        self.minimum = minimum
        self.seed = seed
        # a stratum's sample is at most n (equal), or max(n, minimum) (proportional)
        self._keep = max(n, minimum) if proportional else n
        self._rng = np.random.default_rng(seed)
        self.pixel_counts = np.zeros(n_strata, dtype=np.int64)
        self._kept = [_Kept() for _ in range(n_strata)]

    def add(self, strata: np.ndarray, valid: np.ndarray | None = None, *, row_off: int = 0,
            col_off: int = 0, labels: np.ndarray | None = None) -> None:
        """Offer a block: ``strata`` (h, w) codes 0..n_strata-1 (others are skipped),
        eligible where ``valid``; ``labels`` (h, w) ints kept with each sampled pixel."""
        strata = np.asarray(strata)
        ok = (strata >= 0) & (strata < self.n_strata)
        if valid is not None:
            ok &= valid
        r, c = np.nonzero(ok)
        if r.size == 0:
            return
        s = strata[r, c].astype(np.int64)
        lab = labels[r, c].astype(np.int64) if labels is not None else np.zeros(r.size, np.int64)
        keys = self._rng.random(r.size)
        self.pixel_counts += np.bincount(s, minlength=self.n_strata)
        order = np.argsort(s, kind="stable")
        bounds = np.searchsorted(s[order], np.arange(self.n_strata + 1))
        for k in np.flatnonzero(np.diff(bounds)):
            idx = order[bounds[k]:bounds[k + 1]]
            kept = self._kept[k]
            all_keys = np.concatenate([kept.keys, keys[idx]])
            take = (np.argpartition(all_keys, self._keep - 1)[:self._keep]
                    if all_keys.size > self._keep else np.arange(all_keys.size))
            self._kept[k] = _Kept(
                keys=all_keys[take],
                rows=np.concatenate([kept.rows, r[idx] + row_off])[take],
                cols=np.concatenate([kept.cols, c[idx] + col_off])[take],
                labels=np.concatenate([kept.labels, lab[idx]])[take])

    def result(self) -> StratifiedSample:
        """The sample: per stratum, the allocated number of pixels with the smallest keys."""
        alloc = allocate(self.pixel_counts, self.n, proportional=self.proportional,
                         minimum=self.minimum)
        rows, cols, strata, labels = [], [], [], []
        for k, kept in enumerate(self._kept):
            pick = np.argsort(kept.keys, kind="stable")[:alloc[k]]
            pick = pick[np.lexsort((kept.cols[pick], kept.rows[pick]))]
            rows.append(kept.rows[pick])
            cols.append(kept.cols[pick])
            labels.append(kept.labels[pick])
            strata.append(np.full(pick.size, k, dtype=np.int64))
        return StratifiedSample(rows=np.concatenate(rows), cols=np.concatenate(cols),
                                strata=np.concatenate(strata), labels=np.concatenate(labels),
                                pixel_counts=self.pixel_counts.copy(), allocation=alloc)


def stratified_sample(path: str | os.PathLike, n: int = 50, *, n_strata: int | None = None,
                      proportional: bool = False, minimum: int = 0, seed: int = 0,
                      band: int = 1) -> StratifiedSample:
    """A stratified random sample of a class map's pixels, read block by block.

    Strata are the codes ``0..n_strata-1`` (default: every code of the data type, 256 for
    uint8, 65536 otherwise); nodata / masked pixels are never sampled. ``n`` per stratum, or
    ``n`` in all shared in proportion to the strata with at least ``minimum`` each.
    """
    with open_dataset(path) as ds:
        if n_strata is None:
            n_strata = 256 if ds.dtypes[band - 1] == "uint8" else 65536
        sampler = StratifiedSampler(n_strata, n, proportional=proportional, minimum=minimum,
                                    seed=seed)
        for _, window in ds.block_windows(band):
            codes = ds.read(band, window=window)
            valid = ds.read_masks(band, window=window) > 0
            sampler.add(codes, valid, row_off=int(window.row_off), col_off=int(window.col_off))
    return sampler.result()


__all__ = ["Z95", "AreaEstimate", "StratifiedSample", "StratifiedSampler", "allocate",
           "estimate_areas", "stratified_sample"]
