"""What ``retrain init`` infers from a labelled file, and how it cuts it into batches.

The task from the target; each column's type, range and missing values; identifier-like
columns to ignore; a subgroup for the gates; batches and a frozen holdout (by time when
there is a time column, else a seeded random share).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

MAX_CLASSES = 20  # an integer target with at most this many values is a class label
SEED = 0


def _times(col: pd.Series) -> pd.Series:
    """Timestamps (NaT where a value is not one), without pandas' format-guessing warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pd.to_datetime(col, errors="coerce", utc=True)


def infer_task(target: pd.Series) -> str:
    """Classification for text, booleans and integers with few values; else regression."""
    values = target.dropna()
    if values.dtype == bool or not pd.api.types.is_numeric_dtype(values):
        return "classification"
    as_float = values.astype("float64")
    integral = bool(np.all(np.isclose(as_float, np.round(as_float))))
    return "classification" if integral and values.nunique() <= MAX_CLASSES else "regression"


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    """The observed range widened by half its span each side, rounded to a round step;
    a column that was never negative stays non-negative."""
    span = hi - lo
    pad = 0.5 * span if span > 0 else max(abs(hi), 1.0)
    step = 10.0 ** math.floor(math.log10(pad))
    low = math.floor((lo - pad) / step) * step
    high = math.ceil((hi + pad) / step) * step
    if lo >= 0:
        low = max(low, 0.0)
    return float(f"{low:.6g}"), float(f"{high:.6g}")


MAX_LEVELS = 50  # categorical columns with at most this many levels get them written down


def _identifier_like(col: pd.Series) -> bool:
    values = col.dropna()
    if pd.api.types.is_numeric_dtype(values) or values.dtype == bool or len(values) < 50:
        return False
    return bool(values.nunique() > 0.5 * len(values))


def infer_features(
    frame: pd.DataFrame, target: str, time_column: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Feature specs (as ``dataset.yaml`` writes them) and the ignored columns."""
    features: list[dict[str, Any]] = []
    ignored: list[str] = []
    for name in frame.columns:
        if name in (target, time_column):
            continue
        col = frame[name]
        if col.isna().all() or _identifier_like(col):
            ignored.append(str(name))
            continue
        spec: dict[str, Any] = {"name": str(name)}
        if pd.api.types.is_numeric_dtype(col) and col.dtype != bool:
            lo, hi = _nice_range(float(col.min()), float(col.max()))
            spec.update({"type": "numeric", "min": lo, "max": hi})
        else:
            spec["type"] = "categorical"
            levels = sorted({str(v) for v in col.dropna().unique()})
            # The levels seen become the column's contract (validate and serve refuse any
            # other); a column with more than MAX_LEVELS is left open.
            if len(levels) <= MAX_LEVELS:
                spec["levels"] = levels
        if col.isna().any():
            spec["allow_missing"] = True
        features.append(spec)
    return features, ignored


def _pick_subgroup(frame: pd.DataFrame, features: list[dict[str, Any]]) -> list[str]:
    """A categorical feature with 2–8 levels (the first such), judged per level by the gates."""
    for f in features:
        if f["type"] == "categorical" and 2 <= frame[f["name"]].nunique() <= 8:
            return [f["name"]]
    return []


# --------------------------------------------------------------------------- splitting
def split(
    frame: pd.DataFrame,
    time_column: str | None,
    holdout_share: float,
    n_batches: int | None,
) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Batches (oldest first) and the holdout: the newest share by time, else seeded random."""
    n = len(frame)
    n_hold = max(1, round(n * holdout_share))
    if time_column:
        times = _times(frame[time_column])
        order = np.argsort(times.to_numpy(), kind="stable")
        ordered = frame.iloc[order]
        rest, holdout = ordered.iloc[: n - n_hold], ordered.iloc[n - n_hold :]
    else:
        rng = np.random.default_rng(SEED)
        picked = np.zeros(n, dtype=bool)
        picked[rng.choice(n, size=n_hold, replace=False)] = True
        rest, holdout = frame[~picked], frame[picked]
    k = n_batches or max(2, min(6, len(rest) // 150))
    k = max(1, min(k, len(rest)))
    bounds = np.linspace(0, len(rest), k + 1).round().astype(int)
    batches = [rest.iloc[bounds[i] : bounds[i + 1]] for i in range(k)]
    return batches, holdout
