"""Live metrics per version, where a prediction log is reachable.

The log is the one ``retrain serve`` writes (``configs/serve.yaml`` ``log_url``;
``RETRAIN_LOG_URL`` overrides it, as for ``retrain monitor``).  Each version and role gets
the statistics the rollout judges use (:class:`retrain.rollout.logsql.SqlView`: requests,
errors, p95 latency, labelled rows, the live primary metric, aggregated in the database) and
a bootstrap interval of the live metric on its labelled rows.  A log that is not there (a SQLite file never written) or
not reachable is said on the page; the site never creates one and never fails for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from retrain.core.config import Config, load_serve_config
from retrain.core.errors import RetrainError


@dataclass
class LiveRow:
    version: str
    role: str
    requests: int
    rows: int
    errors: int
    error_rate: float | None
    p95_latency_ms: float | None
    labels: int
    value: float | None
    lower: float | None
    upper: float | None
    first: str
    last: str


@dataclass
class LiveSection:
    source: str  # the log, password hidden
    metric: str
    confidence: float
    rows: list[LiveRow] = field(default_factory=list)
    note: str = ""


def _when(stamp: Any) -> str:
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def live_metrics(cfg: Config, since: str | None = None) -> LiveSection:
    from retrain.rollout import analysis
    from retrain.serve import predlog

    metric, task = cfg.gates.primary_metric, cfg.dataset.task
    a = cfg.release.rollout.analysis
    url = os.environ.get("RETRAIN_LOG_URL") or load_serve_config(cfg.root).log_url
    try:
        log = predlog.open_log(url, cfg.root)
    except RetrainError as exc:
        return LiveSection("prediction log", metric, a.confidence, note=str(exc))
    # A SQLite URL as configured (repository-relative, no machine path); a server's URL
    # without its password.
    section = LiveSection(url if url.startswith("sqlite:") else log.display, metric, a.confidence)
    from retrain.rollout.logsql import SqlView

    # Aggregated in the database (per request, the labelled rows sampled past
    # max_labelled_rows): the page costs the same memory whatever the log holds.
    view = SqlView(log, since, None, max_labelled=a.max_labelled_rows, seed=a.seed)
    try:
        if not log.exists():
            section.note = f"no prediction log at {section.source} (`retrain serve` writes it)"
            return section
        keys = view.slices()
        if not keys:
            section.note = f"the prediction log {section.source} has no served rows yet"
            return section
        for version, role in keys:
            piece = view.slice(version, role, metric, task)
            s = piece.stats
            lower, upper = analysis.one_sample_interval(
                piece.labelled, metric, task, a.confidence, a.n_resamples, a.seed
            )
            first, last = view.span(version, role)
            section.rows.append(
                LiveRow(
                    version=s.version,
                    role=s.role,
                    requests=s.requests,
                    rows=s.rows,
                    errors=s.errors,
                    error_rate=s.error_rate,
                    p95_latency_ms=s.p95_latency_ms,
                    labels=s.labels,
                    value=s.value,
                    lower=analysis.rounded(lower),
                    upper=analysis.rounded(upper),
                    first=_when(first),
                    last=_when(last),
                )
            )
    except predlog.LogUnavailable as exc:
        section.note = f"the prediction log {section.source} is unreachable: {exc}"
        return section
    finally:
        log.close()
    return section
