"""Data drift: per-column two-sample tests, PSI and a dataset verdict (DESIGN.md §4, §11).

The reference is the production model's training data, the current sample the newest data.
Each column gets

- **numeric**: the exact two-sample Kolmogorov-Smirnov statistic and p-value (the numbers
  ``scipy.stats.ks_2samp(a, b, method="auto")`` gives), the PSI over quantile bins of the
  reference, the Wasserstein-1 distance, and a chi-squared test of the missing-value rate;
- **categorical**: Pearson's chi-squared test of homogeneity over the union of levels (missing
  values are a level of their own), the PSI over levels, and the levels the reference never
  saw, by name.

A column is drifted when its test is significant after a multiple-testing correction across
columns *and* the shift is large enough to matter (effect size or PSI above a floor), or when
its missing-value rate moved significantly and by a non-trivial amount.  The dataset is
drifted when the share of drifted columns exceeds ``DriftConfig.max_share``.  The reasoning
behind these rules is in ``docs/drift.md``.

Speed and memory: each numeric column is sorted once per side; the KS statistic, the PSI bin
counts and the Wasserstein distance all come from one merge of the two sorted arrays.  Columns
run on a thread pool (numpy's sort and merge release the GIL).  Parquet files are read one
column at a time, so a wide file never has to fit in memory all at once.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retrain.core.config import DriftConfig
from retrain.core.errors import DataError

Kind = Literal["numeric", "categorical"]

#: how a missing value is named where levels are listed (it is a level of its own)
MISSING_LEVEL = "<missing>"

#: scipy's ``ks_2samp(method="auto")`` computes the exact p-value up to this sample size
_KS_EXACT_MAX_N = 10_000
#: below this, a large-sample p-value is taken from the limiting distribution (see _ks_pvalue)
_KS_TAIL_SHORTCUT = 1e-12
#: at most this many unseen level names are listed per column (the count is always given)
_MAX_UNSEEN_LISTED = 20
_PARQUET_SUFFIXES = (".parquet", ".pq")


# --------------------------------------------------------------------------- report
@dataclass
class DriftReport:
    """The result of :func:`drift_report`; ``to_dict()`` is the ``drift --json`` shape."""

    drifted: bool
    share_drifted: float
    features: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_share: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        """``{"drifted", "share_drifted", "features": {column: {...}}}``, JSON-serialisable."""
        return {
            "drifted": bool(self.drifted),
            "share_drifted": float(self.share_drifted),
            "features": {c: dict(f) for c, f in self.features.items()},
        }

    def top(self, n: int = 5) -> list[tuple[str, dict[str, Any]]]:
        """The ``n`` most notable columns: drifted ones first, then by decreasing PSI."""
        return _ranked(self.features)[:n]


def _ranked(features: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(
        features.items(), key=lambda kv: (not kv[1].get("drifted"), -float(kv[1].get("psi") or 0))
    )


# --------------------------------------------------------------------------- statistics
def _proportion_psi(ref: np.ndarray, cur: np.ndarray, epsilon: float) -> float:
    """PSI between two vectors of proportions, each floored at ``epsilon`` (empty bins)."""
    r = np.maximum(ref, epsilon)
    c = np.maximum(cur, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def _psi_edges(ref_sorted: np.ndarray, bins: int) -> np.ndarray:
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


def _binned(sorted_values: np.ndarray, edges: np.ndarray, missing: int) -> np.ndarray:
    """Counts per bin ``(-inf, e1], (e1, e2], ..., (ek, inf)`` plus a last bin of missing."""
    cuts = np.concatenate(
        ([0], np.searchsorted(sorted_values, edges, side="right"), [sorted_values.size])
    )
    return np.append(np.diff(cuts), missing)


def _ks_merge(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
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


def _ks_pvalue(d: float, a: np.ndarray, b: np.ndarray) -> float:
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


def _chi2(table: np.ndarray) -> tuple[float, float, float]:
    """Pearson chi-squared (no continuity correction) of a 2xK table: statistic, p, Cramér's V."""
    from scipy import stats  # lazy: keeps config loading and the CLI quick

    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0
    res = stats.chi2_contingency(table, correction=False)
    chi2 = float(res.statistic)
    v = math.sqrt(chi2 / float(table.sum())) if chi2 > 0 else 0.0  # min(2, K) - 1 == 1
    return chi2, float(res.pvalue), min(v, 1.0)


@dataclass
class _Column:
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


def _numeric_column(name: str, ref: np.ndarray, cur: np.ndarray, cfg: DriftConfig) -> _Column:
    miss_r = int(np.count_nonzero(np.isnan(ref)))
    miss_c = int(np.count_nonzero(np.isnan(cur)))
    # NaN sorts last: the non-missing values are a prefix of the sorted array
    a = np.sort(ref)[: ref.size - miss_r]
    b = np.sort(cur)[: cur.size - miss_c]
    edges = _psi_edges(a, cfg.psi_bins)
    psi = _proportion_psi(
        _binned(a, edges, miss_r) / ref.size,
        _binned(b, edges, miss_c) / cur.size,
        cfg.psi_epsilon,
    )
    stat: float | None = None
    p: float | None = None
    wass: float | None = None
    if a.size and b.size:
        stat, wass = _ks_merge(a, b)
        p = _ks_pvalue(stat, a, b)
    col = _Column(
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
        _, col.missing_p, col.missing_effect = _chi2(table)
    return col


def _categorical_column(
    name: str, ref: dict[str | None, int], cur: dict[str | None, int], cfg: DriftConfig
) -> _Column:
    levels = sorted(set(ref) | set(cur), key=lambda k: (k is None, k or ""))
    table = np.array(
        [[ref.get(k, 0) for k in levels], [cur.get(k, 0) for k in levels]], dtype=np.float64
    )
    n_ref, n_cur = table.sum(axis=1)
    chi2, p, v = _chi2(table)
    psi = _proportion_psi(table[0] / n_ref, table[1] / n_cur, cfg.psi_epsilon)
    unseen = sorted((k for k in cur if k is not None and k not in ref), key=lambda k: (-cur[k], k))
    return _Column(
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


def _adjust(p_values: Sequence[float], method: str) -> list[float]:
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


# --------------------------------------------------------------------------- reading
def _level_key(value: Any) -> str | None:
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


def _counts(values: Iterable[Any], counts: Iterable[Any]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for v, c in zip(values, counts, strict=True):
        if c:
            k = _level_key(v)
            out[k] = out.get(k, 0) + int(c)
    return out


class _Source:
    """One side of the comparison: its display name, columns, rows and column readers."""

    display: str
    columns: list[str]
    n_rows: int

    def looks_numeric(self, column: str) -> bool:
        raise NotImplementedError

    def numeric(self, column: str) -> np.ndarray:
        raise NotImplementedError

    def level_counts(self, column: str) -> dict[str | None, int]:
        raise NotImplementedError

    def _not_numeric(self, column: str, what: Any) -> DataError:
        return DataError(f"{self.display}: column {column!r} is declared numeric but holds {what}")


class _FrameSource(_Source):
    def __init__(self, frame: pd.DataFrame, display: str) -> None:
        dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        if dupes:
            raise DataError(f"{display}: duplicate columns {dupes}")
        if len(frame) == 0:
            raise DataError(f"{display}: has no rows")
        self.frame = frame
        self.display = display
        self.columns = [str(c) for c in frame.columns]
        self._by_name = {str(c): c for c in frame.columns}
        self.n_rows = len(frame)

    def _series(self, column: str) -> pd.Series:
        return self.frame[self._by_name[column]]

    def looks_numeric(self, column: str) -> bool:
        dt = self._series(column).dtype
        return bool(
            (pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt))
            or pd.api.types.is_datetime64_any_dtype(dt)
        )

    def numeric(self, column: str) -> np.ndarray:
        s = self._series(column)
        dt = s.dtype
        if isinstance(dt, np.dtype) and dt.kind in "fiub":
            return np.asarray(s.to_numpy(), dtype=np.float64)
        if pd.api.types.is_datetime64_any_dtype(dt):
            missing = s.isna().to_numpy()
            ns = s.dt.tz_convert(None) if getattr(dt, "tz", None) else s
            out = ns.to_numpy(dtype="datetime64[ns]").view(np.int64).astype(np.float64)
            out[missing] = np.nan
            return out
        if pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt):
            return np.asarray(s.to_numpy(dtype=np.float64, na_value=np.nan))
        converted = pd.to_numeric(s, errors="coerce")
        bad = converted.isna() & s.notna()
        if bad.any():
            raise self._not_numeric(column, f"{s[bad].iloc[0]!r} (row {int(bad.argmax()) + 1})")
        return np.asarray(converted.to_numpy(dtype=np.float64, na_value=np.nan))

    def level_counts(self, column: str) -> dict[str | None, int]:
        vc = self._series(column).value_counts(dropna=False, sort=False)
        return _counts(vc.index.tolist(), vc.to_numpy())


class _ParquetSource(_Source):
    """A Parquet file read one column at a time (``ParquetFile.read(columns=[c])``)."""

    def __init__(self, path: Path, display: str) -> None:
        self.path = path
        self.display = display
        try:
            with pq.ParquetFile(path) as pf:
                schema = pf.schema_arrow
                self.n_rows = int(pf.metadata.num_rows)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{display}: not a readable Parquet file ({_one_line(exc)})") from None
        index_cols = {
            c
            for c in ((schema.pandas_metadata or {}).get("index_columns") or [])
            if isinstance(c, str)
        }
        self.types = {f.name: f.type for f in schema if f.name not in index_cols}
        self.columns = list(self.types)
        if self.n_rows == 0:
            raise DataError(f"{display}: has no rows")

    def _read(self, column: str) -> pa.ChunkedArray:
        try:
            with pq.ParquetFile(self.path) as pf:
                arr = pf.read(columns=[column], use_threads=False).column(0)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"{self.display}: column {column!r} cannot be read ({_one_line(exc)})"
            ) from None
        if pa.types.is_dictionary(arr.type):
            arr = pc.cast(arr, arr.type.value_type)
        return arr

    def looks_numeric(self, column: str) -> bool:
        t = self.types[column]
        if pa.types.is_dictionary(t):
            t = t.value_type
        return bool(
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_decimal(t)
            or pa.types.is_timestamp(t)
            or pa.types.is_date(t)
        )

    def numeric(self, column: str) -> np.ndarray:
        arr = self._read(column)
        t = arr.type
        try:
            if pa.types.is_timestamp(t) or pa.types.is_date(t):
                arr = pc.cast(pc.cast(arr, pa.timestamp("ns")), pa.int64())
            elif pa.types.is_string(t) or pa.types.is_large_string(t):
                arr = pc.cast(arr, pa.float64())
            elif not (
                pa.types.is_integer(t)
                or pa.types.is_floating(t)
                or pa.types.is_decimal(t)
                or pa.types.is_boolean(t)
            ):
                raise self._not_numeric(column, f"{t} values")
            arr = pc.cast(arr, pa.float64(), safe=False)  # large integers round, as in numpy
        except pa.ArrowInvalid as exc:
            raise self._not_numeric(column, f"non-numbers ({_one_line(exc)})") from None
        return np.asarray(arr.to_numpy(), dtype=np.float64)  # nulls become NaN

    def level_counts(self, column: str) -> dict[str | None, int]:
        vc = pc.value_counts(self._read(column))
        return _counts(vc.field("values").to_pylist(), vc.field("counts").to_numpy())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _source(data: pd.DataFrame | str | Path, side: str) -> _Source:
    if isinstance(data, pd.DataFrame):
        return _FrameSource(data, side)
    if not isinstance(data, str | Path):
        raise TypeError(f"{side}: expected a pandas DataFrame or a path, got {type(data).__name__}")
    path = Path(data)
    display = str(data)
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        if not path.is_file():
            raise DataError(f"{display}: file not found")
        return _ParquetSource(path, display)
    from retrain.pipeline.dataset import read_table  # CSV: read whole, with the project's messages

    frame = read_table(path, display)
    return _FrameSource(frame, display)


def _select(
    ref: _Source, cur: _Source, kinds: dict[str, Kind] | None, cfg: DriftConfig
) -> dict[str, Kind]:
    """The columns to compare and their kinds; columns on one side only are a DataError."""
    if kinds is not None:
        wanted = [c for c in kinds if not cfg.ignored(c)]
        for c in wanted:
            if kinds[c] not in ("numeric", "categorical"):
                raise ValueError(
                    f"kinds[{c!r}]: expected 'numeric' or 'categorical', got {kinds[c]!r}"
                )
        for side in (ref, cur):
            have = set(side.columns)
            missing = [c for c in wanted if c not in have]
            if missing:
                raise DataError(f"{side.display}: missing columns {missing}; expected {wanted}")
        return {c: kinds[c] for c in wanted}
    ref_cols = [c for c in ref.columns if not cfg.ignored(c)]
    cur_cols = [c for c in cur.columns if not cfg.ignored(c)]
    only_ref = [c for c in ref_cols if c not in set(cur_cols)]
    if only_ref:
        raise DataError(f"{cur.display}: missing columns {only_ref} present in the reference")
    only_cur = [c for c in cur_cols if c not in set(ref_cols)]
    if only_cur:
        raise DataError(f"{ref.display}: missing columns {only_cur} present in the current data")
    return {
        c: "numeric" if ref.looks_numeric(c) and cur.looks_numeric(c) else "categorical"
        for c in ref_cols
    }


def _workers(cfg: DriftConfig, n_columns: int) -> int:
    if cfg.workers is not None:
        return max(1, min(cfg.workers, n_columns))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n_columns))


def _map_columns(fn: Callable[[str], _Column], columns: list[str], workers: int) -> list[_Column]:
    if workers <= 1:
        return [fn(c) for c in columns]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift")
    try:
        return list(pool.map(fn, columns))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- public API
def drift_report(
    reference: pd.DataFrame | str | Path,
    current: pd.DataFrame | str | Path,
    *,
    kinds: dict[str, Literal["numeric", "categorical"]] | None = None,
    config: DriftConfig | None = None,
) -> DriftReport:
    """Compare every column of ``current`` with ``reference`` and decide which drifted.

    Parameters
    ----------
    reference, current
        DataFrames, or paths to CSV or Parquet files (Parquet is read column by column).
    kinds
        ``{column: "numeric" | "categorical"}``: the columns to compare.  Other columns are
        ignored; a listed column absent from either side is a :class:`DataError`.  When
        ``None`` every column is compared (they must be the same on both sides) and the kind
        is inferred: numeric when both sides hold numbers (or datetimes), else categorical.
    config
        Thresholds; defaults to ``DriftConfig()``.

    Raises
    ------
    DataError
        A file is missing, empty or unreadable, a column is on one side only, or a column
        declared numeric holds something else.  One line naming the file and the column.
    """
    cfg = config or DriftConfig()
    ref = _source(reference, "reference")
    cur = _source(current, "current")
    selected = _select(ref, cur, kinds, cfg)

    def one(column: str) -> _Column:
        if selected[column] == "numeric":
            return _numeric_column(column, ref.numeric(column), cur.numeric(column), cfg)
        return _categorical_column(column, ref.level_counts(column), cur.level_counts(column), cfg)

    names = list(selected)
    cols = _map_columns(one, names, _workers(cfg, len(names)))
    return _verdict(cols, cfg)


def _verdict(cols: list[_Column], cfg: DriftConfig) -> DriftReport:
    # one family: every column's test, plus the missing-rate test of numeric columns with
    # missing values; corrected together so the family-wise error rate is p_value overall
    family: list[float] = []
    slots: list[tuple[int, str]] = []
    for i, c in enumerate(cols):
        if c.p_value is not None:
            family.append(c.p_value)
            slots.append((i, "test"))
        if c.missing_p is not None:
            family.append(c.missing_p)
            slots.append((i, "missing"))
    adjusted: dict[tuple[int, str], float] = dict(
        zip(slots, _adjust(family, cfg.correction), strict=True)
    )

    features: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(cols):
        psi_thr, alpha, min_effect = cfg.thresholds(c.name)
        p_adj = adjusted.get((i, "test"))
        reasons: list[str] = []
        effect_name = "KS statistic" if c.kind == "numeric" else "Cramér's V"
        if p_adj is not None and p_adj < alpha:
            if c.effect is not None and c.effect >= min_effect:
                reasons.append(f"{effect_name} {c.effect:.3g} >= {min_effect:g}")
            if c.psi >= psi_thr:
                reasons.append(f"PSI {c.psi:.3g} >= {psi_thr:g}")
        miss_adj = adjusted.get((i, "missing"))
        if miss_adj is not None and miss_adj < alpha and c.missing_effect >= min_effect:
            reasons.append(
                f"missing {c.missing_ref / c.n_ref:.1%} -> {c.missing_cur / c.n_cur:.1%}"
            )
        if c.p_value is None and c.psi >= psi_thr and not reasons:
            # nothing to test (a side is entirely missing): the PSI alone decides
            reasons.append(f"PSI {c.psi:.3g} >= {psi_thr:g} (no values to test)")
        f: dict[str, Any] = {
            "kind": c.kind,
            "test": "ks" if c.kind == "numeric" else "chi2",
            "statistic": _num(c.statistic),
            "p_value": _num(c.p_value),
            "p_value_adjusted": _num(p_adj),
            "effect_size": _num(c.effect),
            "psi": float(c.psi),
            "drifted": bool(reasons),
            "reasons": reasons,
            "n_reference": c.n_ref,
            "n_current": c.n_cur,
            "missing_reference": c.missing_ref / c.n_ref,
            "missing_current": c.missing_cur / c.n_cur,
        }
        if c.kind == "numeric":
            f["missing_p_value"] = _num(c.missing_p)
            f["missing_p_value_adjusted"] = _num(miss_adj)
        f.update({k: _num(v) if isinstance(v, float) else v for k, v in c.extra.items()})
        features[c.name] = f

    n_drifted = sum(1 for f in features.values() if f["drifted"])
    share = n_drifted / len(features) if features else 0.0
    return DriftReport(
        drifted=share > cfg.max_share,
        share_drifted=share,
        features=features,
        max_share=cfg.max_share,
    )


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


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
        edges = distinct[:-1] if distinct.size <= bins else _psi_edges(a, bins)
        return _proportion_psi(
            _binned(a, edges, miss_r) / r.size, _binned(b, edges, miss_c) / c.size, epsilon
        )
    rs = pd.Series(ref, dtype=object).value_counts(dropna=False, sort=False)
    cs = pd.Series(cur, dtype=object).value_counts(dropna=False, sort=False)
    rc = _counts(rs.index.tolist(), rs.to_numpy())
    cc = _counts(cs.index.tolist(), cs.to_numpy())
    levels = sorted(set(rc) | set(cc), key=lambda k: (k is None, k or ""))
    rv = np.array([rc.get(k, 0) for k in levels], dtype=np.float64)
    cv = np.array([cc.get(k, 0) for k in levels], dtype=np.float64)
    return _proportion_psi(rv / rv.sum(), cv / cv.sum(), epsilon)


def _fmt(x: Any, spec: str) -> str:
    return "–" if x is None else format(float(x), spec)


def format_table(report: DriftReport) -> str:
    """A short text table, drifted columns first, then by decreasing PSI, and the verdict."""
    header = ["column", "kind", "test", "statistic", "p", "p adj", "psi", "drifted"]
    rows = [
        [
            name,
            f["kind"],
            f["test"],
            _fmt(f.get("statistic"), ".4g"),
            _fmt(f.get("p_value"), ".2g"),
            _fmt(f.get("p_value_adjusted"), ".2g"),
            _fmt(f.get("psi"), ".4f"),
            "yes" if f.get("drifted") else "no",
        ]
        for name, f in _ranked(report.features)
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    right = {3, 4, 5, 6}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    n = len(report.features)
    n_drifted = sum(1 for f in report.features.values() if f.get("drifted"))
    verdict = "drifted" if report.drifted else "not drifted"
    out.append("")
    out.append(
        f"{n_drifted} of {n} columns drifted ({report.share_drifted:.1%}; "
        f"threshold {report.max_share:.0%}): dataset {verdict}"
    )
    return "\n".join(out)
