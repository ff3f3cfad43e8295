"""The verdict: every column's statistics, corrected across columns, judged against the floors.

A column is drifted when its test is significant after the multiple-testing correction *and*
the shift is large enough to matter (effect size or PSI above a floor), or when its
missing-value rate moved significantly and by a non-trivial amount.  Columns run on a thread
pool (numpy's sort and merge release the GIL).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from retrain.core.config import DriftConfig
from retrain.decide.drift.report import DriftReport
from retrain.decide.drift.sources import open_source, select_columns
from retrain.decide.drift.stats import Column, adjust, categorical_column, numeric_column
from retrain.pipeline.profiles import Profile


def _workers(cfg: DriftConfig, n_columns: int) -> int:
    if cfg.workers is not None:
        return max(1, min(cfg.workers, n_columns))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n_columns))


def _map_columns(fn: Callable[[str], Column], columns: list[str], workers: int) -> list[Column]:
    if workers <= 1:
        return [fn(c) for c in columns]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift")
    try:
        return list(pool.map(fn, columns))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def drift_report(
    reference: pd.DataFrame | str | Path | Profile,
    current: pd.DataFrame | str | Path | Profile,
    *,
    kinds: dict[str, Literal["numeric", "categorical"]] | None = None,
    config: DriftConfig | None = None,
) -> DriftReport:
    """Compare every column of ``current`` with ``reference`` and decide which drifted.

    Parameters
    ----------
    reference, current
        DataFrames, paths to CSV or Parquet files (Parquet is read column by column), or
        :class:`~retrain.pipeline.profiles.Profile` (batch profiles merged: exact, the same
        report as the rows they summarise).
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
    ref = open_source(reference, "reference")
    cur = open_source(current, "current")
    selected = select_columns(ref, cur, kinds, cfg)

    def one(column: str) -> Column:
        if selected[column] == "numeric":
            return numeric_column(
                column, ref.numeric_profile(column), cur.numeric_profile(column), cfg
            )
        return categorical_column(column, ref.level_counts(column), cur.level_counts(column), cfg)

    names = list(selected)
    cols = _map_columns(one, names, _workers(cfg, len(names)))
    return _verdict(cols, cfg)


def _verdict(cols: list[Column], cfg: DriftConfig) -> DriftReport:
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
        zip(slots, adjust(family, cfg.correction), strict=True)
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
