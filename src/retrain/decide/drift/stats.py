"""The statistics of one column, compared between the reference and the current data.

Numeric columns: the exact two-sample KS statistic and p-value (scipy's numbers), the PSI over
quantile bins of the reference, the Wasserstein-1 distance, and a chi-squared test of the
missing-value rate.  Categorical columns: Pearson's chi-squared test over the union of levels,
the PSI over levels and the unseen levels.  Also the multiple-testing adjustment across
columns and the PSI of model outputs (the prediction-drift trigger).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrain.core.config import DriftConfig
from retrain.pipeline.profiles import (
    ColumnProfile,
    Kind,
    NumericProfile,
    ValueCounts,
    count_levels,
    level_key,
    of_outputs,
)

__all__ = ["Kind", "count_levels", "level_key"]  # re-exported: they moved to profiles

#: how a missing value is named where levels are listed (it is a level of its own)
MISSING_LEVEL = "<missing>"

#: scipy's ``ks_2samp(method="auto")`` computes the exact p-value up to this sample size
_KS_EXACT_MAX_N = 10_000
#: below this, a large-sample p-value is taken from the limiting distribution (see ks_pvalue)
_KS_TAIL_SHORTCUT = 1e-12
#: at most this many unseen level names are listed per column (the count is always given)
_MAX_UNSEEN_LISTED = 20


def proportion_psi(ref: np.ndarray, cur: np.ndarray, epsilon: float) -> float:
    """PSI between two vectors of proportions, each floored at ``epsilon`` (empty bins)."""
    r = np.maximum(ref, epsilon)
    c = np.maximum(cur, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_edges(ref: ValueCounts, bins: int) -> np.ndarray:
    """Right-closed bin edges from the reference's non-missing values (as value counts).

    When the reference holds at most ``bins`` distinct values every value gets its own bin;
    otherwise the edges are the reference's ``k/bins`` quantiles (linear interpolation, as
    ``np.quantile``), de-duplicated where a value carries more than one bin's mass.
    """
    n = ref.n
    if n == 0:
        return np.empty(0)
    if ref.distinct <= bins:
        return ref.values[:-1]  # every distinct value but the largest closes a bin
    pos = np.arange(1, bins) * ((n - 1) / bins)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    at_lo, at_hi = ref.at_rank(lo), ref.at_rank(hi)
    edges = at_lo + frac * (at_hi - at_lo)
    return np.unique(edges)


def binned(values: ValueCounts, edges: np.ndarray, missing: int) -> np.ndarray:
    """Counts per bin ``(-inf, e1], (e1, e2], ..., (ek, inf)`` plus a last bin of missing."""
    cuts = np.concatenate(([0], values.count_at_or_below(edges), [values.n]))
    return np.append(np.diff(cuts), missing)


def ks_merge(a: ValueCounts, b: ValueCounts) -> tuple[float, float]:
    """KS statistic and Wasserstein-1 distance of two non-empty samples (value counts).

    The two sorted runs of distinct values are merged by a stable argsort (timsort merges two
    runs in linear time); the empirical CDFs are evaluated at every distinct value of the
    union, with the same integer-count / size arithmetic as scipy, so the statistic is
    bit-for-bit ``ks_2samp``'s on the expanded samples.
    """
    n1, n2 = a.n, b.n
    k1 = a.values.size
    both = np.concatenate((a.values, b.values))
    order = np.argsort(both, kind="stable")
    merged = both[order]
    del both
    from_a = order < k1
    weights = np.concatenate((a.counts, b.counts))[order]
    cum_a = np.cumsum(np.where(from_a, weights, 0), dtype=np.int64)  # of a at or before here
    cum_b = np.cumsum(np.where(from_a, 0, weights), dtype=np.int64)
    del order, from_a, weights
    last = np.empty(merged.size, dtype=bool)
    np.not_equal(merged[:-1], merged[1:], out=last[:-1])
    last[-1] = True
    at = np.flatnonzero(last)
    del last
    values = merged[at]
    del merged
    diff = cum_a[at] / n1 - cum_b[at] / n2
    d = max(float(diff.max()), float(-diff.min()), 0.0)
    w = float(np.sum(np.abs(diff[:-1]) * np.diff(values))) if values.size > 1 else 0.0
    return d, w


def ks_pvalue(d: float, a: ValueCounts, b: ValueCounts) -> float:
    """Two-sided p-value as ``scipy.stats.ks_2samp(method="auto")`` computes it.

    Up to 10,000 rows per side scipy uses the exact distribution (falling back to the
    asymptotic one when that overflows); the call is cheap at that size, so it is made as is
    (on the samples rebuilt from their value counts).
    Above, scipy uses ``kstwo.sf(d, round(m*n/(m+n)))``, reproduced here, with one shortcut:
    where Massart's bound ``2 exp(-2 N d^2)`` on that tail is below ``1e-12``, scipy's exact
    series (about 0.4 s at a million rows) is replaced by the limiting Kolmogorov tail, which
    obeys the same bound, so the two differ by less than ``1e-12`` and no decision changes.
    """
    from scipy import stats  # lazy: keeps config loading and the CLI quick

    n1, n2 = a.n, b.n
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(stats.ks_2samp(a.expand(), b.expand(), method="auto").pvalue)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = float(np.round(m * n / (m + n)))
    if 2.0 * math.exp(-2.0 * en * d * d) < _KS_TAIL_SHORTCUT:
        p = stats.kstwobign.sf(d * math.sqrt(en))
    else:
        p = stats.kstwo.sf(d, en)
    return float(np.clip(p, 0.0, 1.0))


def chi2_test(table: np.ndarray) -> tuple[float, float, float]:
    """Pearson chi-squared (no continuity correction) of a 2xK table: statistic, p, Cramér's V."""
    from scipy import stats  # lazy: keeps config loading and the CLI quick

    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0
    res = stats.chi2_contingency(table, correction=False)
    chi2 = float(res.statistic)
    v = math.sqrt(chi2 / float(table.sum())) if chi2 > 0 else 0.0  # min(2, K) - 1 == 1
    return chi2, float(res.pvalue), min(v, 1.0)


@dataclass
class Column:
    """One column's statistics before the correction and the verdict."""

    name: str
    kind: Kind
    n_ref: int
    n_cur: int
    missing_ref: int
    missing_cur: int
    statistic: float | None
    p_value: float | None
    effect: float | None
    psi: float
    extra: dict[str, Any] = field(default_factory=dict)
    missing_p: float | None = None  # numeric: chi-squared test of the missing rate
    missing_effect: float = 0.0


def numeric_column(
    name: str, ref: np.ndarray | NumericProfile, cur: np.ndarray | NumericProfile, cfg: DriftConfig
) -> Column:
    """One numeric column's statistics, from the two float arrays (NaN missing) or from their
    profiles (:class:`~retrain.pipeline.profiles.NumericProfile`, exact value counts)."""
    r = ref if isinstance(ref, NumericProfile) else NumericProfile.of(ref)
    c = cur if isinstance(cur, NumericProfile) else NumericProfile.of(cur)
    a, b = r.counts, c.counts
    miss_r, miss_c = r.missing, c.missing
    n_ref, n_cur = r.rows, c.rows
    edges = psi_edges(a, cfg.psi_bins)
    psi = proportion_psi(
        binned(a, edges, miss_r) / n_ref,
        binned(b, edges, miss_c) / n_cur,
        cfg.psi_epsilon,
    )
    stat: float | None = None
    p: float | None = None
    wass: float | None = None
    if a.n and b.n:
        stat, wass = ks_merge(a, b)
        p = ks_pvalue(stat, a, b)
    col = Column(
        name,
        "numeric",
        n_ref,
        n_cur,
        miss_r,
        miss_c,
        statistic=stat,
        p_value=p,
        effect=stat,
        psi=psi,
        extra={"wasserstein": wass},
    )
    if miss_r or miss_c:
        table = np.array([[miss_r, n_ref - miss_r], [miss_c, n_cur - miss_c]])
        table = table[:, table.sum(axis=0) > 0]
        _, col.missing_p, col.missing_effect = chi2_test(table)
    return col


def categorical_column(
    name: str, ref: dict[str | None, int], cur: dict[str | None, int], cfg: DriftConfig
) -> Column:
    levels = sorted(set(ref) | set(cur), key=lambda k: (k is None, k or ""))
    table = np.array(
        [[ref.get(k, 0) for k in levels], [cur.get(k, 0) for k in levels]], dtype=np.float64
    )
    n_ref, n_cur = table.sum(axis=1)
    chi2, p, v = chi2_test(table)
    psi = proportion_psi(table[0] / n_ref, table[1] / n_cur, cfg.psi_epsilon)
    unseen = sorted((k for k in cur if k is not None and k not in ref), key=lambda k: (-cur[k], k))
    return Column(
        name,
        "categorical",
        int(n_ref),
        int(n_cur),
        ref.get(None, 0),
        cur.get(None, 0),
        statistic=chi2,
        p_value=p,
        effect=v,
        psi=psi,
        extra={
            "levels_reference": sum(1 for k in ref if k is not None),
            "levels_current": sum(1 for k in cur if k is not None),
            "unseen_levels": unseen[:_MAX_UNSEEN_LISTED],
            "unseen_count": len(unseen),
            "unseen_share": float(sum(cur[k] for k in unseen) / n_cur),
        },
    )


def adjust(p_values: Sequence[float], method: str) -> list[float]:
    """Adjusted p-values (Holm, Bonferroni, Benjamini-Hochberg or none) across one family."""
    from scipy import stats  # lazy: keeps config loading and the CLI quick

    m = len(p_values)
    if m == 0 or method == "none":
        return [float(p) for p in p_values]
    p = np.asarray(p_values, dtype=np.float64)
    if method == "bonferroni":
        adj = np.minimum(1.0, p * m)
    elif method == "bh":
        adj = stats.false_discovery_control(p, method="bh")
    else:  # Holm's step-down
        order = np.argsort(p, kind="stable")
        steps = np.maximum.accumulate(p[order] * (m - np.arange(m)))
        adj = np.empty(m)
        adj[order] = np.minimum(1.0, steps)
    return [float(x) for x in adj]


# --------------------------------------------------------------------------- predictions
def prediction_psi(reference: Any, current: Any, *, bins: int = 10, epsilon: float = 1e-4) -> float:
    """PSI between two 1-D arrays of model outputs (the prediction-drift trigger).

    Labels (strings, booleans, objects) and numbers with at most ``bins`` distinct values are
    compared level by level; other numbers over ``bins`` quantile bins of the reference.
    Missing values are a level (or bin) of their own.  Proportions are floored at
    ``epsilon``.  Either side may also be given as its profile
    (:func:`retrain.pipeline.profiles.of_outputs`, merged over chunks of rows).
    """
    ref = reference if isinstance(reference, ColumnProfile) else of_outputs(reference)
    cur = current if isinstance(current, ColumnProfile) else of_outputs(current)
    if ref.rows == 0 or cur.rows == 0:
        raise ValueError("prediction_psi: both prediction arrays must be non-empty")
    if isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile):
        a, b = ref.counts, cur.counts
        distinct = np.unique(np.concatenate((a.values, b.values)))
        # a handful of distinct values (classes coded as numbers): one bin each, new ones too
        edges = distinct[:-1] if distinct.size <= bins else psi_edges(a, bins)
        return proportion_psi(
            binned(a, edges, ref.missing) / ref.rows,
            binned(b, edges, cur.missing) / cur.rows,
            epsilon,
        )
    rc, cc = ref.as_levels(), cur.as_levels()
    levels = sorted(set(rc) | set(cc), key=lambda k: (k is None, k or ""))
    rv = np.array([rc.get(k, 0) for k in levels], dtype=np.float64)
    cv = np.array([cc.get(k, 0) for k in levels], dtype=np.float64)
    return proportion_psi(rv / rv.sum(), cv / cv.sum(), epsilon)
