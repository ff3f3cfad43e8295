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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from retrain.core.config import DriftConfig

Kind = Literal["numeric", "categorical"]

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


def psi_edges(ref_sorted: np.ndarray, bins: int) -> np.ndarray:
    """Right-closed bin edges from the sorted, non-missing reference values.

    When the reference holds at most ``bins`` distinct values every value gets its own bin;
    otherwise the edges are the reference's ``k/bins`` quantiles (linear interpolation, as
    ``np.quantile``), de-duplicated where a value carries more than one bin's mass.
    """
    n = ref_sorted.size
    if n == 0:
        return np.empty(0)
    change = np.flatnonzero(ref_sorted[1:] != ref_sorted[:-1])
    if change.size + 1 <= bins:
        return ref_sorted[change]  # every distinct value but the largest closes a bin
    pos = np.arange(1, bins) * ((n - 1) / bins)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    edges = ref_sorted[lo] + frac * (ref_sorted[hi] - ref_sorted[lo])
    return np.unique(edges)


def binned(sorted_values: np.ndarray, edges: np.ndarray, missing: int) -> np.ndarray:
    """Counts per bin ``(-inf, e1], (e1, e2], ..., (ek, inf)`` plus a last bin of missing."""
    cuts = np.concatenate(
        ([0], np.searchsorted(sorted_values, edges, side="right"), [sorted_values.size])
    )
    return np.append(np.diff(cuts), missing)


def ks_merge(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """KS statistic and Wasserstein-1 distance of two sorted, non-empty, NaN-free samples.

    The two sorted runs are merged by a stable argsort (timsort merges two runs in linear
    time); the empirical CDFs are evaluated at the last occurrence of every distinct value,
    with the same integer-count / size arithmetic as scipy, so the statistic is bit-for-bit
    ``ks_2samp``'s.
    """
    n1, n2 = a.size, b.size
    both = np.concatenate((a, b))
    order = np.argsort(both, kind="stable")
    merged = both[order]
    del both
    cum_b = np.cumsum(order >= n1, dtype=np.int64)  # how many of b are at or before here
    del order
    last = np.empty(n1 + n2, dtype=bool)
    np.not_equal(merged[:-1], merged[1:], out=last[:-1])
    last[-1] = True
    at = np.flatnonzero(last)
    del last
    values = merged[at]
    del merged
    c2 = cum_b[at]
    del cum_b
    diff = ((at + 1) - c2) / n1 - c2 / n2
    d = max(float(diff.max()), float(-diff.min()), 0.0)
    w = float(np.sum(np.abs(diff[:-1]) * np.diff(values))) if values.size > 1 else 0.0
    return d, w


def ks_pvalue(d: float, a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value as ``scipy.stats.ks_2samp(method="auto")`` computes it.

    Up to 10,000 rows per side scipy uses the exact distribution (falling back to the
    asymptotic one when that overflows); the call is cheap at that size, so it is made as is.
    Above, scipy uses ``kstwo.sf(d, round(m*n/(m+n)))``, reproduced here, with one shortcut:
    where Massart's bound ``2 exp(-2 N d^2)`` on that tail is below ``1e-12``, scipy's exact
    series (about 0.4 s at a million rows) is replaced by the limiting Kolmogorov tail, which
    obeys the same bound, so the two differ by less than ``1e-12`` and no decision changes.
    """
    from scipy import stats  # lazy: keeps config loading and the CLI quick

    n1, n2 = a.size, b.size
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(stats.ks_2samp(a, b, method="auto").pvalue)
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


def numeric_column(name: str, ref: np.ndarray, cur: np.ndarray, cfg: DriftConfig) -> Column:
    miss_r = int(np.count_nonzero(np.isnan(ref)))
    miss_c = int(np.count_nonzero(np.isnan(cur)))
    # NaN sorts last: the non-missing values are a prefix of the sorted array
    a = np.sort(ref)[: ref.size - miss_r]
    b = np.sort(cur)[: cur.size - miss_c]
    edges = psi_edges(a, cfg.psi_bins)
    psi = proportion_psi(
        binned(a, edges, miss_r) / ref.size,
        binned(b, edges, miss_c) / cur.size,
        cfg.psi_epsilon,
    )
    stat: float | None = None
    p: float | None = None
    wass: float | None = None
    if a.size and b.size:
        stat, wass = ks_merge(a, b)
        p = ks_pvalue(stat, a, b)
    col = Column(
        name,
        "numeric",
        ref.size,
        cur.size,
        miss_r,
        miss_c,
        statistic=stat,
        p_value=p,
        effect=stat,
        psi=psi,
        extra={"wasserstein": wass},
    )
    if miss_r or miss_c:
        table = np.array([[miss_r, ref.size - miss_r], [miss_c, cur.size - miss_c]])
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


# --------------------------------------------------------------------------- levels
def level_key(value: Any) -> str | None:
    """A level's name; missing values (None, NaN, NA, NaT) are ``None``.

    Integral floats are named like integers so that ``1`` and ``1.0`` (an integer column that
    gained a missing value in one file) are the same level.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value)


def count_levels(values: Iterable[Any], counts: Iterable[Any]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for v, c in zip(values, counts, strict=True):
        if c:
            k = level_key(v)
            out[k] = out.get(k, 0) + int(c)
    return out


# --------------------------------------------------------------------------- predictions
def prediction_psi(reference: Any, current: Any, *, bins: int = 10, epsilon: float = 1e-4) -> float:
    """PSI between two 1-D arrays of model outputs (the prediction-drift trigger).

    Labels (strings, booleans, objects) and numbers with at most ``bins`` distinct values are
    compared level by level; other numbers over ``bins`` quantile bins of the reference.
    Missing values are a level (or bin) of their own.  Proportions are floored at
    ``epsilon``.
    """
    ref = np.asarray(reference).ravel()
    cur = np.asarray(current).ravel()
    if ref.size == 0 or cur.size == 0:
        raise ValueError("prediction_psi: both prediction arrays must be non-empty")
    if ref.dtype.kind in "iuf" and cur.dtype.kind in "iuf":
        r = ref.astype(np.float64)
        c = cur.astype(np.float64)
        miss_r = int(np.count_nonzero(np.isnan(r)))
        miss_c = int(np.count_nonzero(np.isnan(c)))
        a = np.sort(r)[: r.size - miss_r]
        b = np.sort(c)[: c.size - miss_c]
        distinct = np.unique(np.concatenate((a, b)))
        # a handful of distinct values (classes coded as numbers): one bin each, new ones too
        edges = distinct[:-1] if distinct.size <= bins else psi_edges(a, bins)
        return proportion_psi(
            binned(a, edges, miss_r) / r.size, binned(b, edges, miss_c) / c.size, epsilon
        )
    rs = pd.Series(ref, dtype=object).value_counts(dropna=False, sort=False)
    cs = pd.Series(cur, dtype=object).value_counts(dropna=False, sort=False)
    rc = count_levels(rs.index.tolist(), rs.to_numpy())
    cc = count_levels(cs.index.tolist(), cs.to_numpy())
    levels = sorted(set(rc) | set(cc), key=lambda k: (k is None, k or ""))
    rv = np.array([rc.get(k, 0) for k in levels], dtype=np.float64)
    cv = np.array([cc.get(k, 0) for k in levels], dtype=np.float64)
    return proportion_psi(rv / rv.sum(), cv / cv.sum(), epsilon)
