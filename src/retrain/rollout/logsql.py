"""The live prediction log as a :class:`~retrain.rollout.logview.LogView`, aggregated in the
database (the same SQL on SQLite and PostgreSQL).

What is read, per judged slice (a version in a role, since a time):

1. **One row per request**, not per served row: ``GROUP BY request_id, at`` in SQL gives each
   request's latency (the largest of its rows'), whether it failed (any row with prediction
   null) and its row count; they are streamed into numpy arrays (about 18 bytes a request)
   and counted there, and the p95 is ``numpy.percentile`` of the request latencies, exactly
   as :func:`retrain.rollout.analysis.stats` computes it from a frame: no approximation.
2. **The labelled rows' ids**: served rows joined with their latest authenticated label
   (only labels a token wrote; the latest by id, as :meth:`PredictionLog.labelled` has it),
   driven from the labels posted since the start (less an hour for clocks that disagree):
   two integers a row, ordered by time.  Their count is exact; when there are more than
   ``max_labelled`` the ids are sampled (:func:`retrain.rollout.analysis.sample_positions`,
   seeded) and only those rows are fetched, so the bootstrap's memory is bounded.
3. For a shadow, the same for its rows paired with production's answer to the same request
   row, and the agreement counted in SQL (the stored JSON texts compared: the same answer
   as comparing the values as text, except that the string ``"1"`` and the number ``1``
   differ here).

Nothing else is read: the monitor's memory is that of the requests' arrays and the samples,
whatever the log holds.  Indexes used: ``ix_predictions_version_at`` for a slice's rows,
``ix_predictions_request`` for the label and pair joins, ``ix_labels_at`` for the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from retrain.rollout.analysis import (
    labelled_rows,
    live_metric,
    ordered_keys,
    p95_ms,
    request_stats,
    rounded,
    sample_positions,
)
from retrain.rollout.logview import MIN_BIN_LABELS, Pairs, Slice, bin_edges
from retrain.serve import predlog
from retrain.serve.predlog import PredictionLog, labels, predictions

FAILED = ("null", "NaN")  # the JSON text of a prediction that failed (None) or is NaN
CHUNK = 65_536  # rows fetched at a time
IDS_PER_QUERY = 500  # ids per IN list when fetching the sampled rows
LABEL_CLOCK_SLACK = timedelta(hours=1)  # labels posted this long before the start still count


@dataclass
class _Requests:
    latency: np.ndarray  # float64, NaN when no row had one
    failed: np.ndarray  # bool
    rows: np.ndarray  # int64
    bins: np.ndarray  # int8, the evidence plot's time bin (-1: none)


def _not_failed(column: Any) -> Any:
    return column.not_in(FAILED)


def _unindexed(column: Any) -> Any:
    """``column || ''``: the same value, but SQLite's planner will not pick an index on it
    (the label join is driven from the labels and their request index instead)."""
    return column.concat("")


class SqlView:
    """The judged slices of the log at ``log`` since ``since`` (stored UTC text; None: all).

    ``keys`` are the (version, role) pairs to judge; None judges every pair found.
    """

    def __init__(
        self,
        log: PredictionLog,
        since: str | None,
        keys: list[tuple[str, str]] | None = None,
        *,
        max_labelled: int | None = None,
        seed: int = 0,
    ) -> None:
        self.log = log
        self.since = None if since is None else predlog.utc_text(since)
        self._keys = None if keys is None else ordered_keys(set(keys))
        self.max_labelled = max_labelled
        self.seed = seed
        self._rows: int | None = None
        self._requests: dict[tuple[str, str], _Requests] = {}
        self._slices: dict[tuple[str, str], Slice] = {}
        self._edges: list[pd.Timestamp] | None = None

    # ------------------------------------------------------------------ plumbing
    def _run(self, fn: Any, empty: Any) -> Any:
        return self.log._run(fn, empty=empty)

    def _since(self, column: Any) -> Any:
        return sa.true() if self.since is None else column >= self.since

    def _label_since(self) -> str | None:
        if self.since is None:
            return None
        start = pd.Timestamp(self.since).to_pydatetime() - LABEL_CLOCK_SLACK
        return predlog.utc_text(start)

    # ------------------------------------------------------------------ what is judged
    @property
    def rows(self) -> int:
        """Every row served since the start, whoever served it."""
        if self._rows is None:
            query = sa.select(sa.func.count()).select_from(predictions)
            query = query.where(self._since(predictions.c.at))

            def go() -> int:
                with self.log.engine.connect() as conn:
                    return int(conn.execute(query).scalar_one())

            self._rows = int(self._run(go, 0))
        return self._rows

    def slices(self) -> list[tuple[str, str]]:
        if self._keys is None:
            query = sa.select(predictions.c.version, predictions.c.role).distinct()
            query = query.where(self._since(predictions.c.at))

            def go() -> list[tuple[str, str]]:
                with self.log.engine.connect() as conn:
                    return [(str(v), str(r)) for v, r in conn.execute(query)]

            self._keys = ordered_keys(set(self._run(go, [])))
        return self._keys

    # ------------------------------------------------------------------ per request
    def edges(self) -> list[pd.Timestamp] | None:
        """The evidence plot's time bins, from the first to the last row of the judged
        versions (two index lookups per version: no pass over the rows)."""
        if self._edges is None:
            p = predictions.c
            found: list[str] = []
            for version in sorted({v for v, _ in self.slices()}):
                for fn in (sa.func.min, sa.func.max):
                    query = sa.select(fn(p.at)).where(p.version == version, self._since(p.at))

                    def go(query: Any = query) -> str | None:
                        with self.log.engine.connect() as conn:
                            value: str | None = conn.execute(query).scalar()
                            return value

                    at = self._run(go, "")
                    if at:
                        found.append(at)
            if not found:
                return None
            self._edges = bin_edges(pd.Timestamp(min(found)), pd.Timestamp(max(found)))
        return self._edges

    def _per_request(self, version: str, role: str) -> _Requests:
        key = (version, role)
        if key in self._requests:
            return self._requests[key]
        p = predictions.c
        failed = sa.case((p.prediction.in_(FAILED), 1), else_=0)
        edges = self.edges()
        if edges:
            texts = [predlog.utc_text(e.floor("us").to_pydatetime()) for e in edges[1:-1]]
            whens = [(p.at < t, i) for i, t in enumerate(texts)]
            bin_of: Any = sa.case(*whens, else_=len(texts))
        else:
            bin_of = sa.literal(-1)
        query = (
            sa.select(sa.func.max(p.latency_ms), sa.func.max(failed), sa.func.count(), bin_of)
            .where(p.version == version, p.role == role, self._since(p.at))
            .group_by(p.request_id, p.at)
        )

        def go() -> np.ndarray:
            parts = []
            with self.log.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
                for chunk in result.partitions(CHUNK):
                    parts.append(np.array(list(map(tuple, chunk)), dtype=float).reshape(-1, 4))
            return np.concatenate(parts) if parts else np.empty((0, 4))

        a = self._run(go, np.empty((0, 4)))
        found = _Requests(
            latency=a[:, 0],
            failed=a[:, 1] > 0,
            rows=a[:, 2].astype(np.int64),
            bins=a[:, 3].astype(np.int8),
        )
        self._requests[key] = found
        return found

    # ------------------------------------------------------------------ labelled rows
    def _latest_labels(self) -> Any:
        """Each labelled row's latest label a token wrote, posted since the start."""
        lab = labels.c
        query = sa.select(lab.request_id, lab.row, sa.func.max(lab.id).label("lid")).where(
            lab.token.is_not(None)
        )
        label_since = self._label_since()
        if label_since is not None:
            query = query.where(lab.at >= label_since)
        return query.group_by(lab.request_id, lab.row).subquery("latest")

    def _labelled_ids(self, version: str, role: str) -> np.ndarray:
        """``(prediction id, label id)`` of the slice's labelled rows, oldest first."""
        latest = self._latest_labels()
        p = predictions.c
        query = (
            sa.select(p.id, latest.c.lid)
            .select_from(
                latest.join(
                    predictions,
                    sa.and_(p.request_id == latest.c.request_id, p.row == latest.c.row),
                )
            )
            .where(
                _unindexed(p.version) == version,
                p.role == role,
                _not_failed(p.prediction),
            )
            .order_by(p.at, p.id)
        )
        if self.since is not None:
            query = query.where(_unindexed(p.at) >= self.since)
        return self._id_array(query, 2)

    def _id_array(self, query: Any, width: int) -> np.ndarray:
        def go() -> np.ndarray:
            parts = []
            with self.log.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
                for chunk in result.partitions(CHUNK):
                    rows = list(map(tuple, chunk))  # numpy reads tuples 40x faster than Rows
                    parts.append(np.array(rows, dtype=np.int64).reshape(-1, width))
            return np.concatenate(parts) if parts else np.empty((0, width), dtype=np.int64)

        result: np.ndarray = self._run(go, np.empty((0, width), dtype=np.int64))
        return result

    def _fetch(self, table: sa.Table, ids: np.ndarray, columns: list[str]) -> dict[int, Any]:
        """``{id: row}`` of ``table`` for ``ids`` (a few hundred at a time)."""
        cols = [table.c.id, *[table.c[c] for c in columns]]
        wanted = sorted({int(i) for i in ids})

        def go() -> dict[int, Any]:
            out: dict[int, Any] = {}
            with self.log.engine.connect() as conn:
                for start in range(0, len(wanted), IDS_PER_QUERY):
                    part = wanted[start : start + IDS_PER_QUERY]
                    for row in conn.execute(sa.select(*cols).where(table.c.id.in_(part))):
                        out[int(row[0])] = row
            return out

        result: dict[int, Any] = self._run(go, {})
        return result

    def _labelled_frame(self, ids: np.ndarray) -> pd.DataFrame:
        """The labelled rows of ``(prediction id, label id)`` pairs, in that order."""
        rows = self._fetch(
            predictions, ids[:, 0], ["request_id", "row", "at", "prediction", "proba"]
        )
        labs = self._fetch(labels, ids[:, 1], ["label", "token"])
        records = []
        for pid, lid in ids.tolist():
            r, lab = rows[pid], labs[lid]
            records.append(
                {
                    "request_id": r.request_id,
                    "row": r.row,
                    "at": r.at,
                    "prediction": predlog._load(r.prediction),
                    "proba": predlog._load(r.proba),
                    "label": predlog._load(lab.label),
                    "label_by": lab.token,
                }
            )
        frame = pd.DataFrame(
            records,
            columns=["request_id", "row", "at", "prediction", "proba", "label", "label_by"],
        )
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        frame["error"] = frame["prediction"].isna()
        return labelled_rows(frame)

    def _sample(self, ids: np.ndarray) -> tuple[np.ndarray, int | None]:
        positions = sample_positions(len(ids), self.max_labelled, self.seed)
        return (ids, None) if positions is None else (ids[positions], len(positions))

    # ------------------------------------------------------------------ the view
    def slice(self, version: str, role: str, metric: str, task: str) -> Slice:
        key = (version, role)
        if key in self._slices:
            return self._slices[key]
        reqs = self._per_request(version, role)
        ids = self._labelled_ids(version, role)
        used_ids, n_used = self._sample(ids)
        labelled = self._labelled_frame(used_ids)
        latency = reqs.latency[~np.isnan(reqs.latency)]
        st = request_stats(
            version,
            role,
            metric,
            requests=len(reqs.rows),
            rows=int(reqs.rows.sum()),
            errors=int(reqs.failed.sum()),
            error_rows=int(reqs.rows[reqs.failed].sum()),
            p95=p95_ms(pd.Series(latency)),
            labels=len(ids),
            value=live_metric(labelled, metric, task),
            labels_used=n_used,
        )
        self._slices[key] = Slice(st, labelled)
        return self._slices[key]

    def pairs(self, production: str, shadow: str) -> Pairs:
        s, q = predictions.alias("s"), predictions.alias("p")
        # Production's row is found by its request index (never by scanning its version).
        on = sa.and_(
            q.c.request_id == s.c.request_id,
            q.c.row == s.c.row,
            _unindexed(q.c.version) == production,
            q.c.role == "production",
            sa.true() if self.since is None else _unindexed(q.c.at) >= self.since,
        )

        def ok(driven_by_labels: bool) -> Any:
            wrap = _unindexed if driven_by_labels else (lambda c: c)
            return sa.and_(
                wrap(s.c.version) == shadow,
                s.c.role == "shadow",
                sa.true() if self.since is None else wrap(s.c.at) >= self.since,
                _not_failed(s.c.prediction),
                _not_failed(q.c.prediction),
            )

        same = sa.func.sum(sa.case((s.c.prediction == q.c.prediction, 1), else_=0))
        agree_q = sa.select(sa.func.count(), same).select_from(s.join(q, on)).where(ok(False))

        def go() -> tuple[int, int]:
            with self.log.engine.connect() as conn:
                n, alike = conn.execute(agree_q).one()
                return int(n or 0), int(alike or 0)

        n, alike = self._run(go, (0, 0))
        latest = self._latest_labels()
        ids_q = (
            sa.select(s.c.id, q.c.id, latest.c.lid)
            .select_from(
                s.join(q, on).join(
                    latest,
                    sa.and_(latest.c.request_id == s.c.request_id, latest.c.row == s.c.row),
                )
            )
            .where(ok(True))
            .order_by(s.c.at, s.c.id, q.c.id)
        )
        ids = self._id_array(ids_q, 3)
        used_ids, n_used = self._sample(ids)
        sh = self._fetch(predictions, used_ids[:, 0], ["prediction", "proba"])
        pr = self._fetch(predictions, used_ids[:, 1], ["prediction", "proba"])
        labs = self._fetch(labels, used_ids[:, 2], ["label"])
        records = [
            {
                "prediction_s": predlog._load(sh[a].prediction),
                "proba_s": predlog._load(sh[a].proba),
                "prediction_p": predlog._load(pr[b].prediction),
                "proba_p": predlog._load(pr[b].proba),
                "label_p": predlog._load(labs[c].label),
            }
            for a, b, c in used_ids.tolist()
        ]
        frame = pd.DataFrame(
            records, columns=["prediction_s", "proba_s", "prediction_p", "proba_p", "label_p"]
        )
        agreement = rounded(alike / n) if n else None
        return Pairs(agreement, len(ids), frame, n_used)

    def series(self, metric: str, task: str) -> dict[str, Any]:
        edges = self.edges()
        if not edges:
            return {}
        out: dict[str, Any] = {}
        for version, role in sorted(self.slices()):
            reqs = self._per_request(version, role)
            labelled = self.slice(version, role, metric, task).labelled
            lab_bins = np.clip(
                np.searchsorted(
                    np.array([e.value for e in edges[1:-1]]),
                    labelled["at"].astype("int64").to_numpy(),
                    side="right",
                ),
                0,
                len(edges) - 2,
            )
            xs, m, lat = [], [], []
            for b, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False)):
                here = reqs.bins == b
                if not here.any():
                    continue
                xs.append(lo + (hi - lo) / 2)
                part = labelled[lab_bins == b]
                value = live_metric(part, metric, task) if len(part) >= MIN_BIN_LABELS else None
                m.append(np.nan if value is None else value)
                p95 = p95_ms(pd.Series(reqs.latency[here]))
                lat.append(np.nan if p95 is None else p95)
            out[f"{version} ({role})"] = (xs, m, lat)
        return out

    def span(self, version: str, role: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        p = predictions.c
        query = sa.select(sa.func.min(p.at), sa.func.max(p.at)).where(
            p.version == version, p.role == role, self._since(p.at)
        )

        def go() -> tuple[str | None, str | None]:
            with self.log.engine.connect() as conn:
                lo, hi = conn.execute(query).one()
                return lo, hi

        lo, hi = self._run(go, (None, None))
        if lo is None or hi is None:
            return None, None
        return pd.Timestamp(lo), pd.Timestamp(hi)
