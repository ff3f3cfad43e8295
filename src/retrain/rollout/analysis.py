"""Live analysis: the statistics behind the rollout judges, computed from the prediction log.

The input is a pandas frame shaped like the prediction log, one row per served row:

``request_id, row, at, version, role, prediction, proba, latency_ms, label`` (and optionally
``error``).  ``role`` is ``production``, ``canary`` or ``shadow``; ``label`` is the true
outcome posted to ``/feedback`` (missing when none came); a row counts as an *error* when its
``error`` column is truthy or, without that column, when it has no prediction.  ``proba`` (a
``{class: probability}`` mapping) is only needed for probability metrics.

**Errors and latency are judged per request, the metric per row.**  The server logs every
row of a request with the whole request's latency, so a p95 over rows is decided by the
largest requests (one 10,000-row request outweighs 9,999 one-row ones) and an error rate over
rows by how many rows the failed requests carried.  :func:`per_request` folds the rows of one
request (same ``request_id`` and ``at``) into one: its latency, and whether it failed.  The
live metric stays a per-row statistic: each labelled row is one answer to judge.

This module holds the per-version statistics (:func:`stats`, :func:`table`), the bootstrap
intervals and the :class:`Check`/:class:`Verdict` records; :mod:`retrain.rollout.judges`
turns them into a verdict per strategy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from retrain.decide.gates import ModelScores
from retrain.pipeline import metrics

Action = Literal[
    "advance", "promote", "hold", "rollback", "promote_challenger", "keep", "healthy", "none"
]
CheckVerdict = Literal["pass", "fail", "wait", "n/a"]

LOG_COLUMNS = ("request_id", "row", "at", "version", "role", "prediction", "latency_ms")
_DIGITS = 6


@dataclass
class Check:
    name: str
    verdict: CheckVerdict
    value: float | None
    threshold: float | None
    detail: str


@dataclass
class VersionStats:
    """One version in one role over the analysed rows.

    ``errors`` counts failed *requests* and ``error_rate`` is their share of ``requests``;
    ``p95_latency_ms`` is over requests too (see :func:`per_request`).  ``error_rows`` counts
    the rows those failed requests carried.
    """

    version: str
    role: str
    requests: int
    rows: int
    errors: int
    error_rate: float | None
    p95_latency_ms: float | None
    labels: int
    metric: str
    value: float | None
    delta: float | None = None  # oriented difference with production (higher is better)
    lower: float | None = None
    upper: float | None = None
    agreement: float | None = None  # shadows: share of rows answered like production
    error_rows: int = 0  # rows of the failed requests
    # Labelled rows the live metric and its interval were computed on, when ``labels`` is
    # more than ``analysis.max_labelled_rows`` (a seeded sample, see :func:`sample_positions`);
    # None when every labelled row was used.
    labels_used: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    action: Action
    version: str | None
    summary: str
    checks: list[Check] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)
    next_weight: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- frames
def check_frame(frame: pd.DataFrame, where: str = "prediction log") -> pd.DataFrame:
    """The frame with ``label``/``error``/``proba`` present and ``at`` as UTC timestamps."""
    missing = [c for c in LOG_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; expected {list(LOG_COLUMNS)}")
    out = frame.copy()
    if "label" not in out.columns:
        out["label"] = None
    if "proba" not in out.columns:
        out["proba"] = None
    if "error" not in out.columns:
        out["error"] = out["prediction"].isna()
    out["error"] = out["error"].fillna(False).astype(bool)
    out["at"] = pd.to_datetime(out["at"], utc=True)
    out["version"] = out["version"].astype(str)
    out["latency_ms"] = pd.to_numeric(out["latency_ms"], errors="coerce")
    return out


def rounded(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    v = round(float(x), _DIGITS)
    return 0.0 if v == 0 else v


def labelled_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["label"].notna() & ~rows["error"]]


def targets(values: pd.Series, task: str) -> np.ndarray:
    if task == "regression":
        return values.astype(float).to_numpy()
    return values.astype(str).to_numpy()


def _proba(rows: pd.DataFrame) -> tuple[np.ndarray | None, list[Any] | None]:
    maps = rows["proba"].tolist()
    if not maps or any(not isinstance(m, dict) for m in maps):
        return None, None
    classes = sorted({str(k) for m in maps for k in m})
    matrix = np.array([[float(m.get(c, m.get(c, 0.0))) for c in classes] for m in maps])
    return matrix, classes


def scores(rows: pd.DataFrame, metric: str, task: str) -> ModelScores | None:
    y_pred = targets(rows["prediction"], task)
    proba, classes = _proba(rows) if metrics.needs_proba(metric) else (None, None)
    if metrics.needs_proba(metric) and proba is None:
        return None
    return ModelScores(
        y_pred=y_pred, proba=proba, classes=classes, latency={}, size_bytes=0, train_seconds=None
    )


def live_metric(rows: pd.DataFrame, metric: str, task: str) -> float | None:
    lab = labelled_rows(rows)
    if lab.empty:
        return None
    s = scores(lab, metric, task)
    if s is None:
        return None
    try:
        return metrics.score(metric, targets(lab["label"], task), s.y_pred, s.proba, s.classes)
    except ValueError:
        return None


def per_request(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per request of ``rows`` (a checked frame): ``latency_ms`` (the request's, which
    every one of its rows carries; the largest is taken), ``error`` (any of its rows failed)
    and ``rows`` (how many it carried).

    A request is its ``request_id`` served at its ``at`` (every row of a request is logged with
    the same time), so a client that reuses an id for requests at different times still counts
    them apart.
    """
    if rows.empty:
        return pd.DataFrame({"latency_ms": [], "error": [], "rows": []})
    keys = ["request_id", "at"] if "at" in rows.columns else ["request_id"]
    g = rows.groupby(keys, sort=False, dropna=False)
    return pd.DataFrame(
        {"latency_ms": g["latency_ms"].max(), "error": g["error"].any(), "rows": g.size()}
    ).reset_index(drop=True)


def p95_ms(latencies: pd.Series) -> float | None:
    lat = pd.to_numeric(latencies, errors="coerce").dropna()
    return float(np.percentile(lat, 95)) if len(lat) else None


def sample_positions(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Which of ``n`` labelled rows the live metric and its bootstrap use when there are more
    than ``limit``: ``limit`` positions drawn without replacement by a generator seeded with
    ``seed``, in their original order; None (all of them) otherwise.

    A uniform sample of the labelled rows is itself a random sample of the labelled traffic,
    so the interval keeps its coverage; it is wider, by about ``sqrt(n / limit)``, and the
    point value moves by a sampling error of the same order.  What it bounds is the
    bootstrap's memory, about 32 bytes x ``n_resamples`` x rows.
    """
    if limit is None or n <= limit:
        return None
    picked = np.random.default_rng(seed).choice(n, size=limit, replace=False)
    return np.sort(picked)


def sampled(
    labelled: pd.DataFrame, limit: int | None, seed: int
) -> tuple[pd.DataFrame, int | None]:
    """``(labelled rows to use, how many when sampled, else None)``."""
    positions = sample_positions(len(labelled), limit, seed)
    if positions is None:
        return labelled, None
    return labelled.iloc[positions], len(positions)


def request_stats(
    version: str,
    role: str,
    metric: str,
    *,
    requests: int,
    rows: int,
    errors: int,
    error_rows: int,
    p95: float | None,
    labels: int,
    value: float | None,
    labels_used: int | None,
) -> VersionStats:
    """A :class:`VersionStats` from its counts (per request) and live metric value."""
    return VersionStats(
        version=version,
        role=role,
        requests=requests,
        rows=rows,
        errors=errors,
        error_rate=rounded(errors / requests) if requests else None,
        p95_latency_ms=rounded(p95),
        labels=labels,
        metric=metric,
        value=rounded(value),
        error_rows=error_rows,
        labels_used=labels_used,
    )


def stats(
    rows: pd.DataFrame,
    version: str,
    role: str,
    metric: str,
    task: str,
    *,
    max_labelled: int | None = None,
    seed: int = 0,
) -> VersionStats:
    """Requests, errors and p95 latency per request; the live metric per labelled row (on a
    seeded sample of ``max_labelled`` of them when there are more, :func:`sample_positions`)."""
    reqs = per_request(rows)
    failed = reqs["error"].astype(bool)
    labelled = labelled_rows(rows)
    used, n_used = sampled(labelled, max_labelled, seed)
    return request_stats(
        version,
        role,
        metric,
        requests=len(reqs),
        rows=len(rows),
        errors=int(failed.sum()),
        error_rows=int(reqs.loc[failed, "rows"].sum()),
        p95=p95_ms(reqs["latency_ms"]),
        labels=len(labelled),
        value=live_metric(used, metric, task),
        labels_used=n_used,
    )


ROLE_ORDER = {"production": 0, "canary": 1, "shadow": 2}


def ordered_keys(keys: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """(version, role) pairs, production first, then canary, shadows, others."""
    return sorted(keys, key=lambda k: (ROLE_ORDER.get(k[1], 9), k[0]))


def table(
    frame: pd.DataFrame,
    metric: str,
    task: str,
    *,
    max_labelled: int | None = None,
    seed: int = 0,
) -> list[VersionStats]:
    """Stats per (version, role), production first."""
    keys = ordered_keys(
        {(str(v), str(r)) for v, r in zip(frame["version"], frame["role"], strict=True)}
    )
    return [
        stats(
            frame[(frame["version"] == v) & (frame["role"] == r)],
            v,
            r,
            metric,
            task,
            max_labelled=max_labelled,
            seed=seed,
        )
        for v, r in keys
    ]


# --------------------------------------------------------------------------- bootstrap
def _counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    idx = rng.integers(0, n, size=(b, n))
    flat = (idx + (np.arange(b) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n)


def unpaired_deltas(
    metric: str,
    task: str,
    candidate: pd.DataFrame,
    baseline: pd.DataFrame,
    *,
    n_resamples: int,
    seed: int,
) -> np.ndarray:
    """Bootstrap of ``sign * (metric(candidate) - metric(baseline))`` over labelled rows,
    each side resampled on its own (the two versions answered different requests)."""
    c_lab, b_lab = labelled_rows(candidate), labelled_rows(baseline)
    cs, bs = scores(c_lab, metric, task), scores(b_lab, metric, task)
    if cs is None or bs is None or c_lab.empty or b_lab.empty:
        return np.empty(0)
    sign = 1.0 if metrics.greater_is_better(metric) else -1.0
    rng = np.random.default_rng(seed)
    yc, yb = targets(c_lab["label"], task), targets(b_lab["label"], task)
    c = metrics.resampled(
        metric, _counts(rng, len(yc), n_resamples), yc, cs.y_pred, cs.proba, cs.classes
    )
    b = metrics.resampled(
        metric, _counts(rng, len(yb), n_resamples), yb, bs.y_pred, bs.proba, bs.classes
    )
    return np.asarray(sign * (c - b))


def one_sample_interval(
    rows: pd.DataFrame, metric: str, task: str, confidence: float, n_resamples: int, seed: int = 0
) -> tuple[float | None, float | None]:
    lab = labelled_rows(rows)
    sc = scores(lab, metric, task)
    if sc is None or lab.empty:
        return None, None
    rng = np.random.default_rng(seed)
    y = targets(lab["label"], task)
    vals = metrics.resampled(
        metric, _counts(rng, len(y), n_resamples), y, sc.y_pred, sc.proba, sc.classes
    )
    return interval(np.asarray(vals), confidence)


def interval(deltas: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    finite = deltas[np.isfinite(deltas)]
    if not len(finite):
        return None, None
    return (
        float(np.percentile(finite, 100 * (1 - confidence))),
        float(np.percentile(finite, 100 * confidence)),
    )


def oriented(metric: str, a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return (1.0 if metrics.greater_is_better(metric) else -1.0) * (a - b)


def fmt(x: float | None, digits: int = 4, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
