"""The prediction log: every served row, written off the request path, joined with feedback.

Two tables, the same on SQLite and PostgreSQL (SQLAlchemy Core; psycopg 3 for PostgreSQL):

- ``predictions``: one row per served row and version (request id, row index, UTC time,
  version, role, prediction, class probabilities, latency, input hash, inputs when asked).
  Append-only; written by :class:`retrain.serve.logwriter.LogWriter` in batches, one transaction per batch.
- ``labels``: every true label posted for ``(request_id, row)``, with the name of the token
  that wrote it (None: no token, the development switch) and when.  Append-only: a second
  label for a row is kept as history, and the latest one counts.  Labels are joined at query
  time, never written into ``predictions``, so a label never races the writer.  Readers that
  decide something (triggers, monitor, export) see only the latest *authenticated* label.
- ``log_meta``: the schema's version.  A log written by an older retrain (version 1: no
  ``client_request_id`` column, a ``feedback`` table whose latest label replaced the first)
  is migrated in place on first use, its labels kept as unauthenticated history; a log of a
  newer version than this code knows is refused with one line.

``request_id`` is the server's own id (32 hex digits), unique per request; a client's
``X-Request-ID`` is kept in ``client_request_id`` beside it and never merges two requests.

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
import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from retrain.core import redact
from retrain.core.config import (  # noqa: F401  (the log URL's names, here too)
    LOG_URL_ENV,
    LOG_URL_FILE_ENV,
    ServeConfig,
    load_serve_config,
    log_url_of,
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
    "client_request_id",
)
SCHEMA_VERSION = 2
REQUEST_ID_CHARS = 64  # the server's ids are 32 hex digits
CLIENT_ID_CHARS = 128  # X-Request-ID: the header's limit is the column's
TOKEN_NAME_CHARS = 64
LABEL_KEYS = ("label", "feedback_at", "label_by")
_PG_LOCK = 0x7265747261696E  # pg_advisory_xact_lock key of the schema check ("retrain")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
PG_CONNECT_TIMEOUT_S = 3

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("request_id", sa.String(REQUEST_ID_CHARS), nullable=False),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("prediction", sa.Text, nullable=False),
    sa.Column("proba", sa.Text),
    sa.Column("latency_ms", sa.Float),
    sa.Column("input_hash", sa.String(128)),
    sa.Column("inputs", sa.Text),
    sa.Column("client_request_id", sa.String(CLIENT_ID_CHARS)),
    sa.Index("ix_predictions_request", "request_id", "row"),
    sa.Index("ix_predictions_version_at", "version", "at"),
    # Time queries across versions: `retrain log prune` (rows older than the retention) and
    # the live section of `retrain site` (rows since a time).
    sa.Index("ix_predictions_at", "at"),
)
CLIENT_INDEX = sa.Index("ix_predictions_client_request", predictions.c.client_request_id)
labels = sa.Table(
    "labels",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("request_id", sa.String(REQUEST_ID_CHARS), nullable=False),
    sa.Column("row", sa.Integer, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("token", sa.String(TOKEN_NAME_CHARS)),  # the token's name; None: no token
    sa.Index("ix_labels_request", "request_id", "row", "id"),
    # The labels of a window (monitor: posted since its step began; prune: older than it).
    sa.Index("ix_labels_at", "at"),
)
log_meta = sa.Table(
    "log_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)
# Version 1's label table (latest label replaced the first); read once, by the migration.
_legacy = sa.MetaData()
legacy_feedback = sa.Table(
    "feedback",
    _legacy,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
)


class LogUnavailable(RetrainError):
    """The prediction log cannot be reached or written (the server answers 503, the CLI one
    line and exit 1)."""


class RowsRefused(LogUnavailable):
    """The database is up but refused the rows of a write (a value too long for its column,
    a constraint): the writer retries them apart, so only the bad rows are lost."""


class LogTooNew(LogUnavailable):
    """The log's schema is of a newer retrain than this one."""


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
        record.get("client_request_id"),
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
        "client_request_id": m["client_request_id"],
    }
    if "label" in m:
        out["label"] = _load(m["label"])
        out["feedback_at"] = m["feedback_at"]
        out["label_by"] = m["label_by"]
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
        "log_url: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
        f"(got {redact.url(url)!r})"
    )


def configured_log(root: Path) -> tuple[ServeConfig, PredictionLog]:
    """``configs/serve.yaml`` and the prediction log it (or the environment) names; not
    contacted yet."""
    serve = load_serve_config(root)
    url, source = log_url_of(serve)
    try:
        return serve, open_log(url, root)
    except BadInput as exc:
        raise BadInput(f"{source}: {exc}") from None


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
        """The URL without a password (nor a secret in its query), for messages."""
        return redact.url(sa.engine.make_url(self.engine.url).render_as_string(hide_password=True))

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
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        # Replicas starting together: one creates or migrates, the rest wait.
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
                    _prepare(conn)
            except LogUnavailable:
                raise
            except (OSError, sa.exc.SQLAlchemyError) as exc:
                raise LogUnavailable(_reason(self, exc)) from exc
            self._ready = True

    def schema_version(self) -> int | None:
        """The log's schema version (None: never written, or written by retrain < 2)."""

        def go() -> int | None:
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table("log_meta"):
                    return None
                value = conn.execute(
                    sa.select(log_meta.c.value).where(log_meta.c.key == "schema_version")
                ).scalar()
                return None if value is None else int(value)

        try:
            return go() if self.exists() else None
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            raise LogUnavailable(_reason(self, exc)) from exc

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
        except (sa.exc.DataError, sa.exc.IntegrityError) as exc:
            raise RowsRefused(_reason(self, exc)) from exc
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

    def add_feedback(self, items: Iterable[dict[str, Any]], *, by: str | None = None) -> list[str]:
        """Store ``{request_id, label, row=0}`` items written by the token named ``by`` (None:
        no token); return the ones that match no served row.

        An unknown request id is returned as itself; a known id with a row it never had as
        ``"<request_id> row <n>"``.  Nothing is stored for either.  A second label for the
        same row is stored beside the first (history); the latest one counts.
        """
        wanted: dict[tuple[str, int], Any] = {}
        for item in items:
            if item.get("label") is None:
                raise BadInput(f"feedback for {item.get('request_id')!r}: label is required")
            wanted[(str(item["request_id"]), int(item.get("row") or 0))] = item["label"]
        if by is not None and not 0 < len(by) <= TOKEN_NAME_CHARS:
            raise BadInput(f"feedback: token name must be 1-{TOKEN_NAME_CHARS} characters")
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
                            {
                                "request_id": rid,
                                "row": row,
                                "label": _dump(label),
                                "at": now,
                                "token": by,
                            }
                        )
                    elif rid in known_ids:
                        unknown.append(f"{rid} row {row}")
                    else:
                        unknown.append(rid)
                if rows:
                    conn.execute(labels.insert(), rows)
            return unknown

        result: list[str] = self._run(go)
        return result

    # ------------------------------------------------------------------ reads
    def _joined(self, authenticated: bool = True) -> tuple[sa.Select[Any], Any]:
        """Served rows outer-joined with their latest label (only labels a token wrote, when
        ``authenticated``), and the label table's alias for filters."""
        latest_q = sa.select(
            labels.c.request_id, labels.c.row, sa.func.max(labels.c.id).label("id")
        )
        if authenticated:
            latest_q = latest_q.where(labels.c.token.is_not(None))
        latest = latest_q.group_by(labels.c.request_id, labels.c.row).subquery("latest")
        chosen = labels.alias("chosen")
        query = sa.select(
            *[predictions.c[k] for k in RECORD_KEYS],
            chosen.c.label,
            chosen.c.at.label("feedback_at"),
            chosen.c.token.label("label_by"),
        ).select_from(
            predictions.outerjoin(
                latest,
                sa.and_(
                    latest.c.request_id == predictions.c.request_id,
                    latest.c.row == predictions.c.row,
                ),
            ).outerjoin(chosen, chosen.c.id == latest.c.id)
        )
        return query, chosen

    def lookup(self, request_id: str) -> list[dict[str, Any]]:
        """Every logged row of ``request_id`` (all versions and roles) with its latest label,
        authenticated or not (``label_by`` None: written without a token)."""
        joined, _ = self._joined(authenticated=False)
        query = joined.where(predictions.c.request_id == str(request_id)).order_by(
            predictions.c.row, predictions.c.id
        )

        def go() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [_record(r) for r in conn.execute(query)]

        result: list[dict[str, Any]] = self._run(go, empty=[])
        return result

    def label_history(self, request_id: str) -> list[dict[str, Any]]:
        """Every label posted for ``request_id``, oldest first: row, label, at, by (the
        token's name; None without a token)."""
        query = (
            sa.select(labels.c.row, labels.c.label, labels.c.at, labels.c.token)
            .where(labels.c.request_id == str(request_id))
            .order_by(labels.c.row, labels.c.id)
        )

        def go() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [
                    {"row": r.row, "label": _load(r.label), "at": r.at, "by": r.token}
                    for r in conn.execute(query)
                ]

        result: list[dict[str, Any]] = self._run(go, empty=[])
        return result

    def requests_of_client(self, client_request_id: str) -> list[str]:
        """The server's ids of every request sent with this ``X-Request-ID``, oldest first."""
        query = (
            sa.select(predictions.c.request_id, sa.func.min(predictions.c.id).label("first"))
            .where(predictions.c.client_request_id == str(client_request_id))
            .group_by(predictions.c.request_id)
            .order_by("first")
        )

        def go() -> list[str]:
            with self.engine.connect() as conn:
                return [str(r.request_id) for r in conn.execute(query)]

        result: list[str] = self._run(go, empty=[])
        return result

    def labelled(
        self, version: str | None = None, since: str | None = None, *, authenticated: bool = True
    ) -> pd.DataFrame:
        """Served rows that have a label, oldest first: the record's columns + ``label``,
        ``feedback_at``, ``label_by``.  Only labels a token wrote count (the latest of them),
        unless ``authenticated`` is False.  ``version`` keeps one version's rows; ``since``
        (ISO date or time, UTC) keeps rows served at or after it.  Every role is included (a
        shadow's row is judged by the same label); filter ``role`` for the answers returned.
        """
        joined, chosen = self._joined(authenticated)
        query = joined.where(chosen.c.label.is_not(None))
        if version is not None:
            query = query.where(predictions.c.version == str(version))
        if since is not None:
            query = query.where(predictions.c.at >= utc_text(since))
        return self._frame(query)

    def served(self, since: str | None = None, *, authenticated: bool = True) -> pd.DataFrame:
        """Every served row (all versions and roles) at or after ``since``, oldest first,
        with its latest authenticated ``label`` when one came (else None): what ``retrain
        monitor`` judges, errors included (a failed prediction is logged with prediction
        None).  ``authenticated=False`` takes labels written without a token too."""
        query, _ = self._joined(authenticated)
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
        return pd.DataFrame(rows, columns=[*RECORD_KEYS, *LABEL_KEYS])

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


def _prepare(conn: sa.Connection) -> None:
    """Create what is missing and bring a version 1 log to this schema, in one transaction.

    Version 1 (no ``log_meta``) had no ``client_request_id`` column and a ``feedback`` table
    keyed by row; its labels are copied into ``labels`` as unauthenticated history (no token
    wrote them), and the old table is left as it was.
    """
    metadata.create_all(conn, checkfirst=True)
    version = conn.execute(
        sa.select(log_meta.c.value).where(log_meta.c.key == "schema_version")
    ).scalar()
    if version is not None:
        if not str(version).isdigit() or int(version) > SCHEMA_VERSION:
            raise LogTooNew(
                f"prediction log schema version {version} is newer than this retrain "
                f"understands ({SCHEMA_VERSION}); upgrade retrain to read or write it"
            )
        _indexes(conn)
        return
    inspector = sa.inspect(conn)
    columns = {c["name"] for c in inspector.get_columns("predictions")}
    if "client_request_id" not in columns:
        kind = predictions.c.client_request_id.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE predictions ADD COLUMN client_request_id {kind}")
    indexes = {i["name"] for i in inspector.get_indexes("predictions")}
    if CLIENT_INDEX.name not in indexes:
        CLIENT_INDEX.create(conn)
    if inspector.has_table("feedback"):
        conn.execute(
            labels.insert().from_select(
                ["request_id", "row", "label", "at", "token"],
                sa.select(
                    legacy_feedback.c.request_id,
                    legacy_feedback.c.row,
                    legacy_feedback.c.label,
                    legacy_feedback.c.at,
                    sa.null(),
                ).order_by(legacy_feedback.c.at),
            )
        )
    _indexes(conn)
    conn.execute(log_meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))


def _indexes(conn: sa.Connection) -> None:
    """Create the indexes a log written by an older retrain lacks (the time indexes came
    after schema version 2 without changing what a row is, so older code still reads and
    writes the log).  On a large log the first start after the upgrade builds them once."""
    existing = {
        t: {i["name"] for i in sa.inspect(conn).get_indexes(t)} for t in ("predictions", "labels")
    }
    for table in (predictions, labels):
        for index in table.indexes:
            if index.name in existing[table.name]:
                continue
            try:
                with conn.begin_nested():
                    index.create(conn)
            except sa.exc.SQLAlchemyError as exc:  # a reader may not create: it reads slower
                first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[:1]
                logging.getLogger("retrain").warning(
                    "prediction log: index %s not created (%s)", index.name, "".join(first)
                )


def _reason(log: PredictionLog, exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return f"prediction log {log.display}: {first}"
