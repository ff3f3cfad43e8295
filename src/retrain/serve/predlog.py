"""The prediction log: every served row, written off the request path, joined with feedback.

Two tables, the same on SQLite and PostgreSQL (SQLAlchemy Core; psycopg 3 for PostgreSQL):

- ``predictions``: one row per served row and version (request id, row index, UTC time,
  version, role, prediction, class probabilities, latency, input hash, inputs when asked).
  Append-only; written by :class:`retrain.serve.logwriter.LogWriter` in batches, one transaction per batch.
- ``feedback``: the true label of ``(request_id, row)``, the latest one wins.  It is joined at
  query time, never written into ``predictions``, so a label never races the writer.

Values of free type (prediction, label, probabilities, inputs) are stored as JSON text, so a
class name, a number or a dict comes back as it went in on both databases.  Times are stored
as fixed-width ISO 8601 UTC text (``2026-11-25T23:05:43.123456Z``), which sorts as time.

An unreachable log never raises out of ``LogWriter.submit``: the batch is dropped and
counted (``dropped``, ``last_error``), and the next batch tries again, so a log that comes
back resumes by itself.  :func:`open_log` does not connect either: the schema is created on
first use and retried until it succeeds.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from retrain.core.config import (
    ServeConfig,
    load_serve_config,
    prediction_log_url,
    sqlite_log_file,
)
from retrain.core.errors import BadInput, RetrainError

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is built: the audit verb starts faster

RECORD_KEYS = (
    "request_id",
    "row",
    "at",
    "version",
    "role",
    "prediction",
    "proba",
    "latency_ms",
    "input_hash",
    "inputs",
)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
PG_CONNECT_TIMEOUT_S = 3

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("prediction", sa.Text, nullable=False),
    sa.Column("proba", sa.Text),
    sa.Column("latency_ms", sa.Float),
    sa.Column("input_hash", sa.String(128)),
    sa.Column("inputs", sa.Text),
    sa.Index("ix_predictions_request", "request_id", "row"),
    sa.Index("ix_predictions_version_at", "version", "at"),
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
)


class LogUnavailable(RetrainError):
    """The prediction log cannot be reached or written (the server answers 503, the CLI one
    line and exit 1)."""


# --------------------------------------------------------------------------- values
def _default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, datetime):  # pandas' Timestamp too
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# What json.dumps(value, default=_default, separators=(",", ":")) builds on every call, once:
# the encoder keeps no state between calls, so threads can share it.
ENCODER = json.JSONEncoder(default=_default, separators=(",", ":"))


def _dump(value: Any) -> str:
    return ENCODER.encode(value)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def utc_text(value: str | datetime | None = None) -> str:
    """``value`` (ISO text, a date, a datetime; naive means UTC; None means now) as stored."""
    if value is None:
        ts = datetime.now(UTC)
    elif isinstance(value, datetime):
        ts = value
    else:
        return _utc_text_cached(str(value))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime(TIME_FORMAT)


@functools.lru_cache(maxsize=4096)  # the rows of one request share their time
def _utc_text_cached(value: str) -> str:
    try:
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"time {value!r}: expected an ISO 8601 date or time, e.g. 2026-11-25 "
            "or 2026-11-25T12:00:00Z"
        ) from None
    return utc_text(ts)


def _row(record: dict[str, Any]) -> tuple[Any, ...]:
    """A record as the ``predictions`` row it becomes, in ``RECORD_KEYS`` order."""
    latency = record.get("latency_ms")
    proba = record.get("proba")
    inputs = record.get("inputs")
    return (
        str(record["request_id"]),
        int(record.get("row", 0)),
        utc_text(record.get("at")),
        str(record["version"]),
        str(record.get("role") or "production"),
        _dump(record["prediction"]),
        None if proba is None else _dump(proba),
        None if latency is None else float(latency),
        record.get("input_hash"),
        None if inputs is None else _dump(inputs),
    )


def _record(row: Any) -> dict[str, Any]:
    m = row._mapping
    out = {
        "request_id": m["request_id"],
        "row": m["row"],
        "at": m["at"],
        "version": m["version"],
        "role": m["role"],
        "prediction": _load(m["prediction"]),
        "proba": _load(m["proba"]),
        "latency_ms": m["latency_ms"],
        "input_hash": m["input_hash"],
        "inputs": _load(m["inputs"]),
    }
    if "label" in m:
        out["label"] = _load(m["label"])
        out["feedback_at"] = m["feedback_at"]
    return out


# --------------------------------------------------------------------------- engines
def _sqlite_engine(path: Path) -> Engine:
    engine = sa.create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own BEGIN is deferred; we begin IMMEDIATE ourselves (below) so two
        # writers (two replicas' LogWriters) queue on the busy timeout instead of failing.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _pg_engine(url: str) -> Engine:
    rest = url.split("://", 1)[1]
    return sa.create_engine(
        f"postgresql+psycopg://{rest}",
        pool_pre_ping=True,
        pool_size=4,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )


def open_log(url: str, root: Path) -> PredictionLog:
    """The prediction log at ``url``; it is not contacted yet, so a log that is down is no error.

    ``sqlite:///path.db`` is relative to ``root`` (``sqlite:////abs/path.db`` is absolute);
    ``postgresql://user@host:port/db`` (``postgresql+psycopg://`` also accepted).  A URL of
    any other form is bad configuration (:class:`BadInput`).
    """
    try:
        path = sqlite_log_file(url, root)
    except ValueError as exc:
        raise BadInput(f"log_url: {exc}") from None
    if path is not None:
        return PredictionLog(_sqlite_engine(path), url=url, sqlite_path=path)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return PredictionLog(_pg_engine(url), url=url)
    raise BadInput(
        f"log_url: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB (got {url!r})"
    )


def configured_log(root: Path) -> tuple[ServeConfig, PredictionLog]:
    """``configs/serve.yaml`` and the prediction log the reading commands use (not contacted
    yet): ``RETRAIN_LOG_URL`` when set, else the file's ``log_url``."""
    serve = load_serve_config(root)
    url, where = prediction_log_url(root)
    try:
        return serve, open_log(url, root)
    except BadInput as exc:
        prefix = "configs/serve.yaml" if where.startswith("configs/") else where
        raise BadInput(f"{prefix}: {exc}") from None


# --------------------------------------------------------------------------- the log
class PredictionLog:
    """Served rows and their feedback in one database.  Thread-safe; every method may raise
    :class:`LogUnavailable` when the database cannot be reached."""

    def __init__(self, engine: Engine, *, url: str, sqlite_path: Path | None = None) -> None:
        self.engine = engine
        self.url = url
        self.sqlite_path = sqlite_path
        self._ready = False
        self._ready_lock = threading.Lock()

    @property
    def display(self) -> str:
        """The URL without a password, for messages."""
        return sa.engine.make_url(self.engine.url).render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"PredictionLog({self.display})"

    # ------------------------------------------------------------------ plumbing
    def _ensure(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                if self.sqlite_path is not None:
                    self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
                metadata.create_all(self.engine, checkfirst=True)
            except (OSError, sa.exc.SQLAlchemyError) as exc:
                if self._exists():  # another replica created it at the same moment
                    self._ready = True
                    return
                raise LogUnavailable(_reason(self, exc)) from exc
            self._ready = True

    def _exists(self) -> bool:
        try:
            names = set(sa.inspect(self.engine).get_table_names())
        except (OSError, sa.exc.SQLAlchemyError):
            return False
        return {"predictions", "feedback"} <= names

    def exists(self) -> bool:
        """False for a SQLite log whose file was never created (nothing was ever logged);
        reads of such a log are empty and create nothing."""
        return self.sqlite_path is None or self.sqlite_path.exists()

    def _run(self, fn: Any, *, empty: Any = None) -> Any:
        if empty is not None and not self.exists():
            return empty
        self._ensure()
        try:
            return fn()
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            raise LogUnavailable(_reason(self, exc)) from exc

    # ------------------------------------------------------------------ writes
    def write(self, records: Sequence[dict[str, Any] | tuple[Any, ...]]) -> int:
        """Append ``records`` in one transaction; returns how many.

        A record is a dict of ``RECORD_KEYS`` (converted here), or a tuple that already is
        the row, in ``RECORD_KEYS`` order, as :func:`retrain.serve.logrows.request_rows`
        builds them (stored as it is).
        """
        rows = [r if isinstance(r, tuple) else _row(r) for r in records]
        if not rows:
            return 0
        # The driver's own executemany (sqlite3's C loop, psycopg's pipeline): a third of
        # the cost of SQLAlchemy compiling the insert for each batch.
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        sql = (
            f"INSERT INTO predictions ({', '.join(RECORD_KEYS)}) "
            f"VALUES ({', '.join([mark] * len(RECORD_KEYS))})"
        )

        def go() -> int:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(sql, rows)
            return len(rows)

        return int(self._run(go))

    def add_feedback(self, items: Iterable[dict[str, Any]]) -> list[str]:
        """Store ``{request_id, label, row=0}`` items; return the ones that match no served row.

        An unknown request id is returned as itself; a known id with a row it never had as
        ``"<request_id> row <n>"``.  Nothing is stored for either.  A second label for the
        same row replaces the first.
        """
        wanted: dict[tuple[str, int], Any] = {}
        for item in items:
            if item.get("label") is None:
                raise BadInput(f"feedback for {item.get('request_id')!r}: label is required")
            wanted[(str(item["request_id"]), int(item.get("row") or 0))] = item["label"]
        if not wanted:
            return []
        ids = sorted({rid for rid, _ in wanted})
        now = utc_text()

        def go() -> list[str]:
            with self.engine.begin() as conn:
                found = {
                    (r.request_id, r.row)
                    for r in conn.execute(
                        sa.select(predictions.c.request_id, predictions.c.row)
                        .where(predictions.c.request_id.in_(ids))
                        .distinct()
                    )
                }
                known_ids = {rid for rid, _ in found}
                unknown: list[str] = []
                rows = []
                for (rid, row), label in wanted.items():
                    if (rid, row) in found:
                        rows.append(
                            {"request_id": rid, "row": row, "label": _dump(label), "at": now}
                        )
                    elif rid in known_ids:
                        unknown.append(f"{rid} row {row}")
                    else:
                        unknown.append(rid)
                if rows:
                    conn.execute(_upsert(self.engine, rows))
            return unknown

        result: list[str] = self._run(go)
        return result

    # ------------------------------------------------------------------ reads
    def _joined(self) -> sa.Select[Any]:
        return sa.select(
            *[predictions.c[k] for k in RECORD_KEYS],
            feedback.c.label,
            feedback.c.at.label("feedback_at"),
        ).select_from(
            predictions.outerjoin(
                feedback,
                sa.and_(
                    feedback.c.request_id == predictions.c.request_id,
                    feedback.c.row == predictions.c.row,
                ),
            )
        )

    def lookup(self, request_id: str) -> list[dict[str, Any]]:
        """Every logged row of ``request_id`` (all versions and roles) with its feedback."""
        query = (
            self._joined()
            .where(predictions.c.request_id == str(request_id))
            .order_by(predictions.c.row, predictions.c.id)
        )

        def go() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [_record(r) for r in conn.execute(query)]

        result: list[dict[str, Any]] = self._run(go, empty=[])
        return result

    def labelled(self, version: str | None = None, since: str | None = None) -> pd.DataFrame:
        """Served rows that have feedback, oldest first: the record's columns + ``label``,
        ``feedback_at``.  ``version`` keeps one version's rows; ``since`` (ISO date or time,
        UTC) keeps rows served at or after it.  Every role is included (a shadow's row is
        judged by the same label); filter ``role`` for the answers that were returned.
        """
        query = self._joined().where(feedback.c.label.is_not(None))
        if version is not None:
            query = query.where(predictions.c.version == str(version))
        if since is not None:
            query = query.where(predictions.c.at >= utc_text(since))
        return self._frame(query)

    def served(self, since: str | None = None) -> pd.DataFrame:
        """Every served row (all versions and roles) at or after ``since``, oldest first,
        with its feedback ``label`` when one came (else None): what ``retrain monitor``
        judges, errors included (a failed prediction is logged with prediction None)."""
        query = self._joined()
        if since is not None:
            query = query.where(predictions.c.at >= utc_text(since))
        return self._frame(query)

    def _frame(self, query: sa.Select[Any]) -> pd.DataFrame:
        """The joined rows of ``query``, oldest first, as a frame (empty, and nothing created,
        for a SQLite log that was never written)."""
        query = query.order_by(predictions.c.at, predictions.c.id)

        def go() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [_record(r) for r in conn.execute(query)]

        import pandas as pd

        rows: list[dict[str, Any]] = self._run(go, empty=[])
        return pd.DataFrame(rows, columns=[*RECORD_KEYS, "label", "feedback_at"])

    def count(self) -> int:
        """How many rows the log holds (all versions and roles)."""

        def go() -> int:
            with self.engine.connect() as conn:
                return int(
                    conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar_one()
                )

        return int(self._run(go, empty=0))

    def close(self) -> None:
        self.engine.dispose()


def _upsert(engine: Engine, rows: list[dict[str, Any]]) -> Any:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(feedback).values(rows)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(feedback).values(rows)  # type: ignore[assignment]
    return stmt.on_conflict_do_update(
        index_elements=["request_id", "row"],
        set_={"label": stmt.excluded.label, "at": stmt.excluded.at},
    )


def _reason(log: PredictionLog, exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return f"prediction log {log.display}: {first}"
