"""Does the embedding beat the baselines on these labels? One honest line for the user.

A self-supervised embedding is only worth using when it beats what needs no training: band
values, tile statistics, PCA of the tile, random convolutional features and the untrained
encoder. :func:`embedding_verdict` compares, under one CV scheme and classifier, the best
feature set that uses an embedding source (alone or with bands) with the best baseline, by
macro-F1; :func:`verdict_line` says it in one sentence. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

MARGIN = 0.03
"""Macro-F1 gain over the best baseline counted as a real win (issue 14's target)."""


def is_embedding_feature(name: str, sources: Sequence[str]) -> bool:
    """Whether feature set ``name`` uses a *trained or given* embedding source.

    ``NAME`` and ``NAME+bands`` do; ``random-encoder`` / ``NAME:random-encoder`` (untrained)
    and the baselines do not.
    """
    if name.endswith("random-encoder"):
        return False
    return any(name in (s, f"{s}+bands") for s in sources)


def embedding_verdict(results: Sequence[dict], sources: Sequence[str], cv: str,
                      margin: float = MARGIN) -> dict | None:
    """Best embedding row vs best baseline row (macro-F1) under ``cv``, per classifier.

    Returns ``{"cv", "classifier", "embedding": {features, macro_f1, accuracy},
    "baseline": {...}, "difference", "margin", "beats"}`` for the classifier whose best row
    is highest, or None when the rows lack either an embedding or a baseline.
    """
    best: dict | None = None
    for clf in dict.fromkeys(r["classifier"] for r in results if r["cv"] == cv):
        rows = [r for r in results if r["cv"] == cv and r["classifier"] == clf]
        emb = [r for r in rows if is_embedding_feature(r["features"], sources)]
        base = [r for r in rows if not is_embedding_feature(r["features"], sources)
                and "+bands" not in r["features"]]
        if not emb or not base:
            continue
        e = max(emb, key=lambda r: r["macro_f1"])
        b = max(base, key=lambda r: r["macro_f1"])
        diff = float(e["macro_f1"] - b["macro_f1"])
        entry = {"cv": cv, "classifier": clf,
                 "embedding": {k: e[k] for k in ("features", "macro_f1", "accuracy")},
                 "baseline": {k: b[k] for k in ("features", "macro_f1", "accuracy")},
                 "difference": diff, "margin": margin, "beats": diff >= margin}
        if best is None or max(e["macro_f1"], b["macro_f1"]) > max(
                best["embedding"]["macro_f1"], best["baseline"]["macro_f1"]):
            best = entry
    return best


def verdict_line(verdict: dict | None) -> str | None:
    """The sentence shown to the user (None without a verdict)."""
    if verdict is None:
        return None
    e, b = verdict["embedding"], verdict["baseline"]
    figures = (f"{e['features']} macro-F1 {e['macro_f1']:.3f} vs {b['features']} "
               f"{b['macro_f1']:.3f} ({verdict['classifier']}, {verdict['cv']} CV)")
    if verdict["beats"]:
        return f"The embedding beats the best no-training baseline on these labels: {figures}."
    if verdict["difference"] > 0:
        return (f"The embedding is not clearly better than the best no-training baseline on "
                f"these labels (gain under {verdict['margin']:.2f} macro-F1): {figures}.")
    return (f"The embedding does NOT beat the best no-training baseline on these labels: "
            f"{figures}. Use {b['features']}, or train the encoder longer / on more data.")
