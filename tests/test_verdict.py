"""The one-line verdict of evaluate: best embedding feature set vs best no-training baseline."""

from __future__ import annotations

import pytest

from geoembed.evaluation.verdict import (
    embedding_verdict,
    is_embedding_feature,
    verdict_line,
)


def row(features: str, f1: float, clf: str = "logreg", cv: str = "spatial") -> dict:
    return {"features": features, "classifier": clf, "cv": cv, "macro_f1": f1,
            "accuracy": f1 + 0.1}


def test_embedding_features_are_sources_and_their_bands_not_the_untrained_encoder():
    srcs = ["embedding", "alpha"]
    assert is_embedding_feature("embedding", srcs)
    assert is_embedding_feature("alpha+bands", srcs)
    assert not is_embedding_feature("random-encoder", srcs)
    assert not is_embedding_feature("alpha:random-encoder", srcs)
    assert not is_embedding_feature("tile-stats", srcs)
    assert not is_embedding_feature("beta", srcs)


def test_verdict_compares_best_embedding_with_best_baseline_per_classifier():
    rows = [row("embedding", 0.60), row("embedding+bands", 0.70), row("bands", 0.66),
            row("tile-stats", 0.68), row("random-encoder", 0.69),
            # rf: higher rows overall, the embedding loses there
            row("embedding", 0.71, "rf"), row("tile-stats", 0.75, "rf"),
            # another CV scheme is ignored
            row("embedding", 0.99, cv="random"), row("bands", 0.10, cv="random")]
    v = embedding_verdict(rows, ["embedding"], "spatial")
    assert v["classifier"] == "rf"  # the classifier with the best row
    assert v["embedding"]["features"] == "embedding" and v["baseline"]["features"] == "tile-stats"
    assert v["difference"] == pytest.approx(-0.04) and not v["beats"]
    line = verdict_line(v)
    assert "does NOT beat" in line and "0.710" in line and "tile-stats 0.750" in line
    lr = embedding_verdict(rows[:5], ["embedding"], "spatial")
    assert lr["embedding"]["features"] == "embedding+bands"
    assert lr["baseline"]["features"] == "random-encoder"  # untrained: a baseline
    assert lr["difference"] == pytest.approx(0.01) and not lr["beats"]
    assert "not clearly better" in verdict_line(lr)


def test_verdict_beats_at_the_margin_and_none_without_both_kinds():
    v = embedding_verdict([row("a", 0.73), row("bands", 0.70)], ["a"], "spatial")
    assert v["beats"] and verdict_line(v).startswith("The embedding beats")
    assert embedding_verdict([row("bands", 0.7), row("pca", 0.6)], [], "spatial") is None
    assert embedding_verdict([row("a", 0.7)], ["a"], "spatial") is None
    assert verdict_line(None) is None
