"""Prediction churn (the eighth gate): how much would the consumers' answers change?

A candidate can beat production on the holdout while flipping many of its answers, and
whoever consumes the predictions sees every flip.  On the same frozen holdout rows:

- **classification**: churn is the *share of rows whose predicted label changes* from
  production to candidate, with a transition table ``production label -> candidate label ->
  rows`` (the diagonal is the rows that kept their label);
- **regression**: churn is the *median absolute change of the prediction divided by the
  holdout target's interquartile range* (IQR, a robust scale that matches the median; the
  standard deviation when the IQR is 0).  0.1 means the typical prediction moved by a tenth
  of the target's typical spread.

The interval is a paired bootstrap drawn exactly like
:func:`retrain.decide.gates.bootstrap_deltas` (same ``seed`` and ``n_resamples`` from
``gates.yaml: improvement``): resample ``b`` is ``rng.integers(0, n, size=n)`` from
``np.random.default_rng(seed)``, and churn is recomputed on the resampled rows.  The
regression scale is the full holdout's, fixed across resamples.  The gate judges the
observed value against ``churn.max_share`` (classification) or ``churn.max_change``
(regression); the interval is reported so a reviewer sees how sure the number is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

_CELLS_PER_CHUNK = 2_000_000  # as in gates.bootstrap_deltas: ~16 MB of indices per chunk
_DIGITS = 6


def _r(x: float | None) -> float | None:
    if x is None or not np.isfinite(x):
        return None
    value = round(float(x), _DIGITS)
    return 0.0 if value == 0 else value


@dataclass
class Churn:
    """Churn of the candidate's holdout predictions against production's."""

    kind: Literal["share", "relative_change"]
    value: float | None
    lower: float | None
    upper: float | None
    confidence: float
    n_resamples: int
    seed: int
    rows: int
    changed: int  # rows whose prediction differs at all
    transitions: dict[str, dict[str, int]] = field(default_factory=dict)
    scale: dict[str, Any] | None = None  # regression: {"name": "iqr"|"std", "value": ...}

    @property
    def flips(self) -> list[tuple[str, str, int]]:
        """Off-diagonal transitions ``(production, candidate, rows)``, most rows first."""
        out = [
            (p, c, n)
            for p, row in self.transitions.items()
            for c, n in row.items()
            if p != c and n > 0
        ]
        return sorted(out, key=lambda t: (-t[2], t[0], t[1]))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "value": _r(self.value),
            "lower": _r(self.lower),
            "upper": _r(self.upper),
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "rows": self.rows,
            "changed": self.changed,
        }
        if self.kind == "share":
            out["transitions"] = self.transitions
        if self.scale is not None:
            out["scale"] = self.scale
        return out


def _resampled(values: np.ndarray, n_resamples: int, seed: int, median: bool) -> np.ndarray:
    """Mean (or median) of ``values`` on each paired-bootstrap resample of the rows."""
    n = len(values)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    out = []
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        picked = values[idx]
        out.append(np.median(picked, axis=1) if median else picked.mean(axis=1))
    return np.concatenate(out) if out else np.empty(0)


def _scale(y_true: np.ndarray) -> dict[str, Any]:
    y = np.asarray(y_true, dtype=float)
    q75, q25 = np.percentile(y, [75, 25]) if len(y) else (0.0, 0.0)
    iqr = float(q75 - q25)
    if iqr > 0:
        return {"name": "iqr", "value": _r(iqr)}
    std = float(np.std(y)) if len(y) else 0.0
    return {"name": "std", "value": _r(std)}


def measure(
    task: Literal["classification", "regression"],
    y_true: np.ndarray,
    baseline_pred: np.ndarray,
    candidate_pred: np.ndarray,
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> Churn:
    """Churn from production's (``baseline_pred``) to the candidate's predictions.

    Both arrays hold one prediction per holdout row, in the same row order.  The interval
    is the ``(1 - confidence)`` and ``confidence`` percentiles of the resampled churn.
    """
    n = len(candidate_pred)
    if len(baseline_pred) != n:
        raise ValueError(f"{len(baseline_pred)} production predictions for {n} candidate ones")
    scale = None
    if task == "classification":
        base = np.asarray(baseline_pred).astype(str)
        cand = np.asarray(candidate_pred).astype(str)
        per_row = (base != cand).astype(float)
        kind: Literal["share", "relative_change"] = "share"
        transitions: dict[str, dict[str, int]] = {}
        for p in sorted(set(base.tolist()) | set(cand.tolist())):
            mask = base == p
            if not mask.any():
                continue
            labels, counts = np.unique(cand[mask], return_counts=True)
            transitions[p] = {str(c): int(k) for c, k in zip(labels, counts, strict=True)}
        value = float(per_row.mean()) if n else None
        changed = int(per_row.sum())
        boot = _resampled(per_row, n_resamples, seed, median=False) if n else np.empty(0)
    else:
        kind = "relative_change"
        transitions = {}
        scale = _scale(y_true)
        diff = np.abs(np.asarray(candidate_pred, float) - np.asarray(baseline_pred, float))
        changed = int((diff > 0).sum())
        denom = scale["value"] or 0.0
        if n and denom > 0:
            rel = diff / denom
            value = float(np.median(rel))
            boot = _resampled(rel, n_resamples, seed, median=True)
        else:
            value, boot = None, np.empty(0)
    lower = float(np.percentile(boot, 100 * (1 - confidence))) if len(boot) else None
    upper = float(np.percentile(boot, 100 * confidence)) if len(boot) else None
    return Churn(
        kind=kind,
        value=value,
        lower=lower,
        upper=upper,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        rows=n,
        changed=changed,
        transitions=transitions,
        scale=scale,
    )


def describe(c: Churn) -> str:
    """One line for the reviewer: how many rows flip, and the largest flips."""
    ci = f"{c.confidence:.0%} interval [{_fmt(c.lower)}, {_fmt(c.upper)}]"
    if c.kind == "share":
        head = f"{c.changed} of {c.rows} holdout rows change label ({_fmt(c.value)}; {ci})"
        flips = c.flips[:3]
        if flips:
            head += "; most: " + ", ".join(f"{p} → {q} ({k})" for p, q, k in flips)
        return head
    scale = c.scale or {}
    return (
        f"median |Δprediction| / holdout target {scale.get('name')} ({_fmt(scale.get('value'))})"
        f" = {_fmt(c.value)} ({ci}); {c.changed} of {c.rows} predictions changed"
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
