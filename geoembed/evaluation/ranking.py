"""Scores per fold and the ranking of embedding sources, with differences paired by fold.

Every source is cross-validated on the same labels and the same folds, so fold ``k`` of one
source and fold ``k`` of another are scored on the same test labels by models fitted on the
same training labels. The difference to the best source is therefore taken fold by fold:
its mean says how far behind a source is, its standard deviation and the number of folds
the best one wins say whether the gap is real or within the fold-to-fold noise.
Standard deviations are sample ones (``ddof=1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix

from geoembed.metrics import class_metrics

METRICS = ("accuracy", "macro_f1")


def fold_scores(y: np.ndarray, pred: np.ndarray, fold: np.ndarray, n_classes: int
                ) -> dict[str, list]:
    """Accuracy and macro-F1 (over the classes present in the test fold) of every fold.

    Returns ``{"fold": [k...], "n_test": [...], "accuracy": [...], "macro_f1": [...]}``.
    """
    out: dict[str, list] = {"fold": [], "n_test": [], "accuracy": [], "macro_f1": []}
    for k in np.unique(fold):
        test = fold == k
        met = class_metrics(confusion_matrix(y[test], pred[test], labels=range(n_classes)))
        out["fold"].append(int(k))
        out["n_test"].append(int(test.sum()))
        out["accuracy"].append(met.accuracy)
        out["macro_f1"].append(met.macro_f1)
    return out


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def rank_sources(per_fold: Mapping[str, Mapping[str, Sequence[float]]],
                 metric: str = "macro_f1") -> list[dict]:
    """Sources ranked by their mean per-fold ``metric``, each paired with the best by fold.

    Args:
        per_fold: ``{source: {"accuracy": [...], "macro_f1": [...]}}``, one value per fold,
            the same folds in the same order for every source.
        metric: what ranks them (ties: the other metric, then the given order).

    Returns:
        One dict per source, best first: ``source``, ``rank``, ``n_folds``,
        ``<metric>_mean`` / ``<metric>_std`` for both metrics, and ``vs_best``:
        ``{metric: {"mean_diff", "std_diff", "best_wins"}}`` with ``diff = source - best``
        per fold (0 for the best itself) and ``best_wins`` the folds where the best scores
        strictly higher.
    """
    table = {s: {m: np.asarray(v[m], dtype=np.float64) for m in METRICS}
             for s, v in per_fold.items()}
    lengths = {len(v[m]) for v in table.values() for m in METRICS}
    if len(lengths) > 1:
        raise ValueError(f"sources scored on different numbers of folds: {sorted(lengths)}")
    other = next(m for m in METRICS if m != metric)
    order = sorted(table, key=lambda s: (-table[s][metric].mean(), -table[s][other].mean(),
                                         list(table).index(s)))
    best = table[order[0]] if order else {}
    out = []
    for rank, s in enumerate(order, 1):
        row: dict = {"source": s, "rank": rank, "n_folds": len(table[s][metric])}
        for m in METRICS:
            row[f"{m}_mean"] = float(table[s][m].mean())
            row[f"{m}_std"] = _std(table[s][m])
        row["vs_best"] = {m: {"mean_diff": float((table[s][m] - best[m]).mean()),
                              "std_diff": _std(table[s][m] - best[m]),
                              "best_wins": int((best[m] > table[s][m]).sum())}
                          for m in METRICS}
        out.append(row)
    return out


def source_rankings(results: Sequence[dict], sources: Sequence[str]) -> list[dict]:
    """The ranking of ``sources`` per CV scheme x classifier, from result rows that hold
    ``per_fold`` scores; empty with fewer than two sources."""
    if len(sources) < 2:
        return []
    out = []
    combos = dict.fromkeys((r["cv"], r["classifier"]) for r in results)
    for cv, clf in combos:
        rows = {r["features"]: r for r in results
                if r["cv"] == cv and r["classifier"] == clf and r["features"] in sources}
        if len(rows) < 2:
            continue
        out.append({"cv": cv, "classifier": clf, "metric": "macro_f1",
                    "sources": rank_sources({s: rows[s]["per_fold"] for s in sources
                                             if s in rows})})
    return out


__all__ = ["METRICS", "fold_scores", "rank_sources", "source_rankings"]
