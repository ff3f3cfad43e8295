"""``retrain log prune``: the prediction log keeps ``log_retention`` (``configs/serve.yaml``).

Served rows older than the retention are deleted, with the labels posted for them, in
batches of ``batch`` rows, each its own short transaction (the servers keep writing between
two), on SQLite and PostgreSQL alike:

    DELETE FROM predictions WHERE id IN (SELECT id FROM predictions WHERE at < :cutoff ... LIMIT :batch)

**What the monitor still needs is kept**, whatever its age: while a canary or a shadow is
declared, or a direct promotion is inside its watch window, ``retrain monitor`` judges the
rows its versions served since ``registry.yaml`` last changed (the step's start), so those
rows stay until the step ends.  Labels go when they are older than the oldest row kept could
be (a label is always posted after its row; an hour of slack for replicas' clocks), so a
kept row never loses its label.

The time index (``ix_predictions_at``, ``ix_labels_at``) finds the old rows; nothing is read
into memory.  A SQLite file keeps its size (SQLite reuses the freed pages; ``VACUUM`` by hand
shrinks it); PostgreSQL's autovacuum reclaims the space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from retrain.core import registry as reg
from retrain.core.config import Config, ServeConfig
from retrain.core.errors import BadInput
from retrain.core.progress import progress
from retrain.release import history
from retrain.serve.predlog import PredictionLog, labels, predictions, utc_text

DEFAULT_BATCH = 10_000
LABEL_CLOCK_SLACK = timedelta(hours=1)


@dataclass
class Kept:
    """Rows the monitor still judges: its versions' rows served since ``since``."""

    since: str  # stored UTC text
    versions: list[str]
    why: str


@dataclass
class PruneResult:
    log: str
    retention: str | None
    cutoff: str | None  # rows served before this go (None: retention off)
    kept: Kept | None
    rows: int = 0  # deleted (or, with dry_run, that would be)
    labels: int = 0
    batches: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "retention": self.retention,
            "cutoff": self.cutoff,
            "kept_for_monitor": None if self.kept is None else self.kept.__dict__,
            "rows_deleted": self.rows,
            "labels_deleted": self.labels,
            "batches": self.batches,
            "dry_run": self.dry_run,
            "notes": self.notes,
        }


def needed_by_monitor(cfg: Config, now: datetime) -> Kept | None:
    """What ``retrain monitor`` judges now (None: nothing): the registry's rollout versions
    and production since the step began, or production inside its watch window."""
    from retrain.rollout.monitor import step_started

    registry = reg.load(cfg.root, expected_model=cfg.release.model_name)
    prod = registry.production
    if prod is None:
        return None
    try:
        since = step_started(cfg.root)
    except BadInput:  # registry.yaml never committed: nothing is live to judge
        return None
    rollout = registry.rollout
    versions = [prod]
    if rollout is not None and (rollout.canary is not None or rollout.shadow):
        if rollout.canary is not None:
            versions.append(rollout.canary.version)
        versions += list(rollout.shadow)
        why = "the rollout step being judged"
    else:
        events = history.events(cfg.root)
        last = events[-1] if events else None
        window = cfg.release.rollout.watch_window_seconds
        if not (
            last
            and last["event"] == "promote"
            and last["version"] == prod
            and (now - datetime.fromisoformat(last["at"])).total_seconds() < window
        ):
            return None
        why = "the watch window of its direct promotion"
    return Kept(utc_text(since), sorted(set(versions)), why)


def prune(
    cfg: Config,
    serve: ServeConfig,
    log: PredictionLog,
    *,
    now: datetime | None = None,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
) -> PruneResult:
    """Delete what ``serve.log_retention`` lets go, ``batch`` rows per transaction."""
    if batch < 1:
        raise BadInput(f"--batch: expected a positive number of rows (got {batch})")
    now = now or datetime.now(UTC)
    seconds = serve.log_retention_seconds
    result = PruneResult(log.display, serve.log_retention, None, None, dry_run=dry_run)
    if seconds is None:
        result.notes.append("configs/serve.yaml log_retention: null; nothing is pruned")
        return result
    cutoff = utc_text(now - timedelta(seconds=seconds))
    result.cutoff = cutoff
    if not log.exists():
        result.notes.append(f"no prediction log at {log.display}; nothing to prune")
        return result
    kept = needed_by_monitor(cfg, now)
    result.kept = kept
    old = predictions.c.at < cutoff
    label_cutoff = cutoff
    if kept is not None and kept.since < cutoff:
        old = sa.and_(
            old,
            sa.not_(
                sa.and_(predictions.c.version.in_(kept.versions), predictions.c.at >= kept.since)
            ),
        )
        label_cutoff = kept.since
    start = datetime.fromisoformat(label_cutoff.replace("Z", "+00:00")) - LABEL_CLOCK_SLACK
    old_labels = labels.c.at < utc_text(start)
    if dry_run:
        result.rows = _count(log, predictions, old)
        result.labels = _count(log, labels, old_labels)
        return result
    result.rows, n = _delete(log, predictions, old, batch, "served rows")
    result.labels, m = _delete(log, labels, old_labels, batch, "labels")
    result.batches = n + m
    return result


def _count(log: PredictionLog, table: sa.Table, where: Any) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(where)

    def go() -> int:
        with log.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    return int(log._run(go, empty=0))


def _delete(
    log: PredictionLog, table: sa.Table, where: Any, batch: int, what: str
) -> tuple[int, int]:
    """``(rows deleted, batches)``: ``batch`` rows a transaction until none is left."""
    chosen = sa.select(table.c.id).where(where).limit(batch).scalar_subquery()
    statement = table.delete().where(table.c.id.in_(chosen))
    total = batches = 0

    def go() -> int:
        with log.engine.begin() as conn:
            return int(conn.execute(statement).rowcount)

    while True:
        n = int(log._run(go, empty=0))
        total += n
        batches += 1
        if batches % 10 == 0:
            progress(f"log prune: {total} {what} deleted so far")
        if n < batch:
            return total, batches


def report(result: PruneResult) -> str:
    verb = "would delete" if result.dry_run else "deleted"
    lines = [f"prediction log {result.log}:"]
    if result.cutoff is not None and not result.notes:
        lines.append(
            f"  {verb} {result.rows} served row(s) and {result.labels} label(s) older than "
            f"{result.cutoff} (log_retention {result.retention})"
        )
    if result.kept is not None and result.cutoff is not None and result.kept.since < result.cutoff:
        lines.append(
            f"  kept the rows of {', '.join(result.kept.versions)} served since "
            f"{result.kept.since}: {result.kept.why} (retrain monitor reads them)"
        )
    lines += [f"  {n}" for n in result.notes]
    return "\n".join(lines)
