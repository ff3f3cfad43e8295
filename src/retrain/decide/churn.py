"""Harmful churn (the `churn` gate): which answers get worse for whoever consumes them?

A retrain that fixes production's mistakes changes many answers, and that is the retrain
working.  The harm is in the rows production got *right* that the candidate gets *wrong*:
the *negative flips* of the regression-free model update literature (positive-congruent
training, Yan et al., CVPR 2021; backward compatibility, Bansal et al., 2019).  On the same
frozen holdout rows:

- **classification**: the gate judges the *negative flip rate*, the share of rows where
  production's label equals the truth and the candidate's does not.  Positive flips (wrong
  → right), the total share of changed labels and the transition table ``production label
  -> candidate label -> rows`` are reported as information;
- **regression**: the gate judges the *worse share*, the share of rows whose absolute error
  grows by more than ``tolerance`` (in the target's units) from production to candidate;
  the share that improves by more than it and the share whose prediction moved at all are
  reported.

The interval is a paired bootstrap drawn exactly like
:func:`retrain.decide.gates.bootstrap_deltas` (same ``seed`` and ``n_resamples`` from
``gates.yaml: improvement``): resample ``b`` is ``rng.integers(0, n, size=n)`` from
``np.random.default_rng(seed)``, and the share is recomputed on the resampled rows.  The gate
judges the observed share against ``churn.max_negative_flip_rate`` (classification) or
``churn.max_worse_share`` (regression); the interval shows the reviewer how sure it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

_CELLS_PER_CHUNK = 2_000_000  # as in gates.bootstrap_deltas: ~16 MB of indices per chunk
_DIGITS = 6

Kind = Literal["negative_flips", "worse_share"]


def _r(x: float | None) -> float | None:
    if x is None or not np.isfinite(x):
        return None
    value = round(float(x), _DIGITS)
    return 0.0 if value == 0 else value


@dataclass
class Churn:
    """What changes from production's holdout predictions to the candidate's."""

    kind: Kind
    value: float | None  # the judged share: negative flips (worse rows) / rows
    lower: float | None
    upper: float | None
    confidence: float
    n_resamples: int
    seed: int
    rows: int
    negative: int  # production right -> candidate wrong (regression: error grew > tolerance)
    positive: int  # production wrong -> candidate right (regression: error shrank > tolerance)
    changed: int  # rows whose prediction differs at all (total churn)
    transitions: dict[str, dict[str, int]] = field(default_factory=dict)
    broken: dict[str, dict[str, int]] = field(default_factory=dict)  # the negative flips
    tolerance: float | None = None  # regression

    @property
    def changed_share(self) -> float | None:
        return self.changed / self.rows if self.rows else None

    @property
    def negative_pairs(self) -> list[tuple[str, str, int]]:
        """Negative flips as ``(true = production label, candidate label, rows)``, most first."""
        out = [(p, c, n) for p, row in self.broken.items() for c, n in row.items() if n > 0]
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
            "negative": self.negative,
            "positive": self.positive,
            "changed": self.changed,
            "changed_share": _r(self.changed_share),
        }
        if self.kind == "negative_flips":
            out["transitions"] = self.transitions
            out["negative_transitions"] = self.broken
        else:
            out["tolerance"] = self.tolerance
        return out


def _resampled_mean(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Mean of ``values`` on each paired-bootstrap resample of the rows."""
    n = len(values)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    out = []
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        out.append(values[idx].mean(axis=1))
    return np.concatenate(out) if out else np.empty(0)


def _table(rows: np.ndarray, cols: np.ndarray) -> dict[str, dict[str, int]]:
    """``row label -> column label -> count`` over the pairs, labels sorted."""
    table: dict[str, dict[str, int]] = {}
    for p in sorted(set(rows.tolist())):
        labels, counts = np.unique(cols[rows == p], return_counts=True)
        table[p] = {str(c): int(k) for c, k in zip(labels, counts, strict=True)}
    return table


def measure(
    task: Literal["classification", "regression"],
    y_true: np.ndarray,
    baseline_pred: np.ndarray,
    candidate_pred: np.ndarray,
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
    tolerance: float = 0.0,
) -> Churn:
    """Harmful churn from production's (``baseline_pred``) to the candidate's predictions.

    The three arrays hold one value per holdout row, in the same row order.  ``tolerance``
    (regression only, target units) is how much a row's absolute error may grow and still
    count as unchanged.  The interval is the ``(1 - confidence)`` and ``confidence``
    percentiles of the resampled share.
    """
    n = len(candidate_pred)
    if len(baseline_pred) != n or len(y_true) != n:
        raise ValueError(
            f"{len(baseline_pred)} production predictions and {len(y_true)} labels "
            f"for {n} candidate ones"
        )
    transitions: dict[str, dict[str, int]] = {}
    broken: dict[str, dict[str, int]] = {}
    kind: Kind
    if task == "classification":
        kind = "negative_flips"
        y = np.asarray(y_true).astype(str)
        base = np.asarray(baseline_pred).astype(str)
        cand = np.asarray(candidate_pred).astype(str)
        base_right, cand_right = base == y, cand == y
        worse = base_right & ~cand_right
        better = ~base_right & cand_right
        changed = int((base != cand).sum())
        transitions = _table(base, cand) if n else {}
        broken = _table(base[worse], cand[worse]) if worse.any() else {}
        tol = None
    else:
        kind = "worse_share"
        y = np.asarray(y_true, dtype=float)
        base_err = np.abs(np.asarray(baseline_pred, dtype=float) - y)
        cand_err = np.abs(np.asarray(candidate_pred, dtype=float) - y)
        growth = cand_err - base_err
        worse, better = growth > tolerance, growth < -tolerance
        changed = int((np.asarray(candidate_pred) != np.asarray(baseline_pred)).sum())
        tol = float(tolerance)
    per_row = worse.astype(float)
    value = float(per_row.mean()) if n else None
    boot = _resampled_mean(per_row, n_resamples, seed) if n else np.empty(0)
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
        negative=int(worse.sum()),
        positive=int(better.sum()),
        changed=changed,
        transitions=transitions,
        broken=broken,
        tolerance=tol,
    )


def describe(c: Churn) -> str:
    """One line for the reviewer: how many rows got worse, how many better, how many moved."""
    ci = f"{c.confidence:.0%} interval [{_fmt(c.lower)}, {_fmt(c.upper)}]"
    total = f"{c.changed} of {c.rows} predictions changed in all"
    if c.kind == "negative_flips":
        head = (
            f"{c.negative} of {c.rows} holdout rows production got right are wrong now "
            f"(negative flip rate {_fmt(c.value)}; {ci})"
        )
        pairs = c.negative_pairs[:3]
        if pairs:
            head += "; most: " + ", ".join(f"{p} → {q} ({k})" for p, q, k in pairs)
        return f"{head}; {c.positive} wrong → right; {total}"
    return (
        f"{c.negative} of {c.rows} holdout rows have an absolute error larger by more than "
        f"{c.tolerance:g} (worse share {_fmt(c.value)}; {ci}); {c.positive} improved by more "
        f"than it; {total}"
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
