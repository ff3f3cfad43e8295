"""What the judges read of the prediction log, whatever holds it.

A judge needs, per version in a role (a *slice*): its per-request counts (requests, failed
requests, rows, the p95 of request latencies), how many of its rows are labelled, and the
labelled rows themselves for the live metric and its bootstrap, at most
``analysis.max_labelled_rows`` of them (a seeded sample beyond that,
:func:`retrain.rollout.analysis.sample_positions`); and, for a shadow, its rows paired with
production's answers to the same requests.

Two views give the same answers for the same rows:

- :class:`FrameView`: a frame shaped like the log (an export given to ``retrain monitor
  --log``, or the tests' synthetic frames), computed with pandas;
- :class:`retrain.rollout.logsql.SqlView`: the live log, aggregated in the database, so the
  monitor's memory does not grow with the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from retrain.rollout.analysis import (
    VersionStats,
    labelled_rows,
    live_metric,
    ordered_keys,
    p95_ms,
    per_request,
    rounded,
    sampled,
    stats,
)

BINS = 12  # time bins of the evidence plot
MIN_BIN_LABELS = 5  # labelled rows a bin needs for its live metric to be drawn
PAIR_COLUMNS = ["request_id", "row", "prediction", "proba", "error", "label"]


@dataclass
class Slice:
    """One version in one role: its statistics and the labelled rows its metric used."""

    stats: VersionStats
    labelled: pd.DataFrame  # prediction, proba, label, at (+ error False): maybe a sample


@dataclass
class Pairs:
    """A shadow's rows joined with production's answer to the same request row."""

    agreement: float | None  # share of the pairs neither failed that answered alike
    labelled: int  # pairs neither failed with a label (all of them, counted)
    rows: pd.DataFrame = field(repr=False)  # those pairs (maybe a sample): label_p, *_s, *_p
    used: int | None = None  # how many pairs ``rows`` holds, when sampled


class LogView(Protocol):
    """What :mod:`retrain.rollout.judges` and the evidence read."""

    @property
    def rows(self) -> int:
        """Every row since the start, whoever served it."""

    def slices(self) -> list[tuple[str, str]]: ...

    def slice(self, version: str, role: str, metric: str, task: str) -> Slice: ...

    def pairs(self, production: str, shadow: str) -> Pairs: ...

    def series(self, metric: str, task: str) -> dict[str, Any]: ...

    def span(self, version: str, role: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]: ...


class FrameView:
    """A checked frame (:func:`retrain.rollout.analysis.check_frame`) as a :class:`LogView`."""

    def __init__(self, frame: pd.DataFrame, *, max_labelled: int | None = None, seed: int = 0):
        self.frame = frame
        self.max_labelled = max_labelled
        self.seed = seed
        self.rows = len(frame)

    def _rows(self, version: str, role: str) -> pd.DataFrame:
        f = self.frame
        return f[(f["version"] == version) & (f["role"] == role)]

    def slices(self) -> list[tuple[str, str]]:
        f = self.frame
        return ordered_keys(
            {(str(v), str(r)) for v, r in zip(f["version"], f["role"], strict=True)}
        )

    def slice(self, version: str, role: str, metric: str, task: str) -> Slice:
        rows = self._rows(version, role)
        st = stats(
            rows, version, role, metric, task, max_labelled=self.max_labelled, seed=self.seed
        )
        used, _ = sampled(labelled_rows(rows), self.max_labelled, self.seed)
        return Slice(st, used)

    def pairs(self, production: str, shadow: str) -> Pairs:
        prod, sh = self._rows(production, "production"), self._rows(shadow, "shadow")
        joined = sh[PAIR_COLUMNS].merge(
            prod[PAIR_COLUMNS], on=["request_id", "row"], suffixes=("_s", "_p"), how="inner"
        )
        ok = joined[~joined["error_s"] & ~joined["error_p"]]
        agreement = None
        if len(ok):
            same = ok["prediction_s"].astype(str) == ok["prediction_p"].astype(str)
            agreement = rounded(float(same.mean()))
        labelled = ok[ok["label_p"].notna()]
        used, n_used = sampled(labelled, self.max_labelled, self.seed)
        return Pairs(agreement, len(labelled), used, n_used)

    def series(self, metric: str, task: str) -> dict[str, Any]:
        frame = self.frame
        if frame.empty:
            return {}
        edges = bin_edges(frame["at"].min(), frame["at"].max())
        out: dict[str, Any] = {}
        for (version, role), rows in frame.groupby(["version", "role"], sort=True):
            xs, m, lat = [], [], []
            for lo, hi in zip(edges, edges[1:], strict=False):
                part = rows[(rows["at"] >= lo) & ((rows["at"] < hi) | (hi == edges[-1]))]
                if part.empty:
                    continue
                xs.append(lo + (hi - lo) / 2)
                enough = len(labelled_rows(part)) >= MIN_BIN_LABELS
                value = live_metric(part, metric, task) if enough else None
                m.append(np.nan if value is None else value)
                p95 = p95_ms(per_request(part)["latency_ms"])  # per request, as judged
                lat.append(np.nan if p95 is None else p95)
            out[f"{version} ({role})"] = (xs, m, lat)
        return out

    def span(self, version: str, role: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        rows = self._rows(version, role)
        if rows.empty:
            return None, None
        return rows["at"].min(), rows["at"].max()


def bin_edges(start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    """``BINS + 1`` equal edges from ``start`` to ``end`` (one second at least)."""
    span = max((end - start).total_seconds(), 1.0)
    return [start + pd.Timedelta(seconds=span * i / BINS) for i in range(BINS + 1)]


def view_of(frame: pd.DataFrame | LogView, analysis: Any) -> LogView:
    """``frame`` as a view sampling as ``analysis`` (``rollout.analysis``) says; a view as is."""
    if isinstance(frame, pd.DataFrame):
        return FrameView(frame, max_labelled=analysis.max_labelled_rows, seed=analysis.seed)
    return frame
