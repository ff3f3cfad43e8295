"""The trivial baseline: the model that ignores its inputs, learnt from the training target.

Classification predicts the most frequent class of the training window, with the window's
class shares as its probabilities (scikit-learn's ``DummyClassifier(strategy="prior")``);
regression predicts the window's mean (for ``rmse`` and ``r2``) or median (for ``mae``, the
constant that minimises it).  The train stage writes :func:`record` into ``training.json``;
the gates rebuild the predictions with :func:`predictions`, and the PR-time re-check computes
the same record from the batches, so both see the same constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def record(task: str, target: pd.Series) -> dict[str, Any]:
    """What the trivial model needs from the training target (plain JSON types).

    Classification: ``{"strategy": "most_frequent", "counts": {label: rows}}`` (labels
    sorted); regression: ``{"strategy": "mean_or_median", "mean": .., "median": ..}``.
    """
    if task == "classification":
        labels, counts = np.unique(target.astype(str).to_numpy(), return_counts=True)
        return {
            "strategy": "most_frequent",
            "counts": {str(k): int(v) for k, v in zip(labels, counts, strict=True)},
            "rows": int(counts.sum()),
        }
    y = target.astype(float).to_numpy()
    return {
        "strategy": "mean_or_median",
        "mean": float(np.mean(y)),
        "median": float(np.median(y)),
        "rows": len(y),
    }


def constant(rec: dict[str, Any], metric: str) -> Any:
    """The trivial model's one answer: the most frequent class (ties: the first label in
    sorted order, as scikit-learn breaks them), or the mean (median for ``mae``)."""
    if rec["strategy"] == "most_frequent":
        counts = rec["counts"]
        return max(sorted(counts), key=lambda k: counts[k])  # max keeps the first of ties
    return rec["median"] if metric == "mae" else rec["mean"]


def predictions(
    rec: dict[str, Any], metric: str, rows: int
) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """``(y_pred, proba, classes)`` of the trivial model for ``rows`` rows."""
    value = constant(rec, metric)
    if rec["strategy"] == "most_frequent":
        classes = sorted(rec["counts"])
        total = sum(rec["counts"].values())
        priors = np.array([rec["counts"][c] / total for c in classes], dtype=float)
        y_pred = np.full(rows, value, dtype=object)
        return y_pred, np.tile(priors, (rows, 1)), classes
    return np.full(rows, float(value)), None, None


def describe(rec: dict[str, Any], metric: str) -> str:
    """``always 'sun' (the most frequent class of the training window)`` and the like."""
    value = constant(rec, metric)
    if rec["strategy"] == "most_frequent":
        share = rec["counts"][value] / max(sum(rec["counts"].values()), 1)
        return f"always {value!r} (the training window's most frequent class, {share:.1%})"
    what = "median" if metric == "mae" else "mean"
    return f"always {value:.4g} (the training window's {what})"
