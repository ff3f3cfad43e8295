"""The prediction log, the same tests on SQLite (WAL file) and on a real PostgreSQL server.

PostgreSQL is Debian's own server, started on a free loopback port by the session fixture
``postgres`` (tests/postgres.py); each test gets a fresh database in it.  Nothing is mocked:
"the log is down" is a stopped server, or a SQLite path whose parent is a regular file
(root ignores file permissions, so a read-only directory would not stop it).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from retrain.core.errors import BadInput
from retrain.serve.logwriter import LogWriter
from retrain.serve.predlog import LogUnavailable, PredictionLog, _row, open_log

SQLITE_URL = "sqlite:///.retrain/predictions.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """(log URL, root) of an empty log of each kind."""
    if request.param == "sqlite":
        return SQLITE_URL, tmp_path
    server = request.getfixturevalue("postgres")
    return server.create_db(f"t_{uuid.uuid4().hex[:12]}"), tmp_path


@pytest.fixture
def log(backend: tuple[str, Path]):
    url, root = backend
    opened = open_log(url, root)
    yield opened
    opened.close()


def records(request_id: str, n: int = 3, *, version: str = "1.0.0", role: str = "production",
            at: str | None = None) -> list[dict]:  # fmt: skip
    return [
        {
            "request_id": request_id,
            "row": i,
            "at": at or f"2026-11-20T10:00:{i % 60:02d}Z",
            "version": version,
            "role": role,
            "prediction": "sun" if i % 2 == 0 else "rain",
            "proba": {"rain": 0.25, "sun": np.float64(0.75)},
            "latency_ms": 1.5,
            "input_hash": f"h{i}",
            "inputs": {"precipitation": np.float64(0.5 * i), "season": "winter"},
        }
        for i in range(n)
    ]


def test_records_round_trip_through_write_and_lookup(log: PredictionLog):
    log.write(records("req-a", 2) + records("req-b", 1))
    rows = log.lookup("req-a")
    assert [r["row"] for r in rows] == [0, 1]
    first = rows[0]
    assert first["request_id"] == "req-a" and first["version"] == "1.0.0"
    assert first["role"] == "production" and first["prediction"] == "sun"
    assert first["proba"] == {"rain": 0.25, "sun": 0.75}
    assert first["inputs"] == {"precipitation": 0.0, "season": "winter"}
    assert first["latency_ms"] == 1.5 and first["input_hash"] == "h0"
    assert first["at"] == "2026-11-20T10:00:00.000000Z"
    assert first["label"] is None and first["feedback_at"] is None
    assert log.lookup("nope") == []
    assert log.count() == 3


def test_numeric_predictions_and_missing_optional_fields_survive(log: PredictionLog):
    log.write([{"request_id": "r", "version": "2.0.0", "prediction": np.int64(3), "at": None}])
    (row,) = log.lookup("r")
    assert row["prediction"] == 3 and row["row"] == 0 and row["role"] == "production"
    assert row["proba"] is None and row["inputs"] is None and row["at"].endswith("Z")


def test_feedback_for_known_rows_is_stored_and_unknown_ids_are_returned(log: PredictionLog):
    log.write(records("req-a", 2))
    unknown = log.add_feedback(
        [
            {"request_id": "req-a", "label": "rain"},
            {"request_id": "req-a", "row": 1, "label": "rain"},
            {"request_id": "ghost", "label": "sun"},
            {"request_id": "req-a", "row": 7, "label": "sun"},
        ],
        by="labeller",
    )
    assert unknown == ["ghost", "req-a row 7"]
    rows = log.lookup("req-a")
    assert [r["label"] for r in rows] == ["rain", "rain"]
    assert [r["label_by"] for r in rows] == ["labeller", "labeller"]
    assert log.lookup("ghost") == []
    # A second label for the same row is kept beside the first; the latest one counts.
    assert log.add_feedback([{"request_id": "req-a", "label": "fog"}], by="other") == []
    assert [r["label"] for r in log.lookup("req-a")] == ["fog", "rain"]
    assert len(log.labelled()) == 2
    history = log.label_history("req-a")
    assert [(h["row"], h["label"], h["by"]) for h in history] == [
        (0, "rain", "labeller"),
        (0, "fog", "other"),
        (1, "rain", "labeller"),
    ]


def test_labels_written_without_a_token_are_history_but_never_evidence(log: PredictionLog):
    """A label posted without a token (the development switch) is kept and audited, but the
    readers that decide (triggers, monitor, export) see only labels a token wrote: the
    latest authenticated one, even when an unauthenticated label came after it."""
    log.write(records("req-a", 2))
    log.add_feedback([{"request_id": "req-a", "row": 1, "label": "snow"}])
    assert log.labelled().empty
    assert list(log.served()["label"]) == [None, None]
    assert len(log.labelled(authenticated=False)) == 1
    log.add_feedback([{"request_id": "req-a", "label": "rain"}], by="labeller")
    log.add_feedback([{"request_id": "req-a", "label": "sun"}])  # no token, later
    trusted = log.labelled()
    assert list(trusted["label"]) == ["rain"] and list(trusted["label_by"]) == ["labeller"]
    assert [r["label"] for r in log.lookup("req-a")] == ["sun", "snow"]  # audit: the latest
    history = log.label_history("req-a")  # by row, then in the order they came
    assert [(h["row"], h["label"], h["by"]) for h in history] == [
        (0, "rain", "labeller"),
        (0, "sun", None),
        (1, "snow", None),
    ]


def test_labelled_frame_joins_feedback_and_filters_version_and_time(log: PredictionLog):
    log.write(records("old", 2, version="1.0.0", at="2026-11-01T00:00:00Z"))
    log.write(records("new", 3, version="1.1.0", at="2026-11-21T12:00:00+00:00"))
    log.write(records("new", 3, version="1.2.0", role="shadow", at="2026-11-21T12:00:00Z"))
    log.write(records("unlabelled", 2, version="1.1.0"))
    log.add_feedback([{"request_id": "old", "label": "sun"}], by="t")
    log.add_feedback([{"request_id": "new", "row": r, "label": "rain"} for r in range(3)], by="t")

    everything = log.labelled()
    assert len(everything) == 1 + 3 + 3  # the shadow's rows are judged by the same labels
    assert set(everything["label"]) == {"sun", "rain"}
    assert list(everything.columns[:10]) == [
        "request_id", "row", "at", "version", "role", "prediction", "proba", "latency_ms",
        "input_hash", "inputs",
    ]  # fmt: skip
    prod = log.labelled(version="1.1.0")
    assert len(prod) == 3 and set(prod["role"]) == {"production"}
    assert list(prod["prediction"]) == ["sun", "rain", "sun"]
    assert prod["inputs"].iloc[1] == {"precipitation": 0.5, "season": "winter"}
    recent = log.labelled(since="2026-11-10")
    assert set(recent["request_id"]) == {"new"}
    assert log.labelled(version="9.9.9").empty
    with pytest.raises(BadInput, match="ISO 8601"):
        log.labelled(since="last tuesday")


def test_writer_batches_records_and_feedback_right_after_finds_them(log: PredictionLog):
    writer = LogWriter(log, batch_size=10, flush_interval=5.0)
    try:
        for i in range(7):
            assert writer.submit(records(f"req-{i}", 5))
        # 35 records, batches of at most 10: at least 4 transactions.  The last one is
        # written by the flush in add_feedback, well before the 5 s interval.
        assert (
            writer.add_feedback([{"request_id": "req-6", "row": 4, "label": "sun"}], by="t") == []
        )
        assert writer.written == 35 and writer.dropped == 0 and writer.batches >= 4
        assert log.count() == 35
        assert log.lookup("req-6")[4]["label"] == "sun"
    finally:
        writer.close()


def test_a_full_queue_drops_and_counts_instead_of_blocking(log: PredictionLog):
    writer = LogWriter(log, batch_size=4, flush_interval=0.05, max_queue=5)
    try:
        assert not writer.submit(records("too-many", 6))
        assert writer.dropped == 6 and "queue full" in (writer.last_error or "")
        assert writer.submit(records("fits", 5))
        assert writer.flush()
        assert writer.written == 5 and log.count() == 5
    finally:
        writer.close()


def _block(backend: tuple[str, Path], request: pytest.FixtureRequest):
    """(take the log down, bring it back) for either kind."""
    url, root = backend
    if url.startswith("sqlite"):
        parent = root / ".retrain"

        def down() -> None:
            parent.write_text("a file where the log's directory should be")

        def up() -> None:
            parent.unlink()

        return down, up
    server = request.getfixturevalue("postgres")
    return server.stop, server.start


def test_an_unreachable_log_drops_and_counts_then_resumes(backend, request):
    down, up = _block(backend, request)
    url, root = backend
    early = 0
    if url.startswith("postgresql"):  # a server that goes away under pooled connections
        log = open_log(url, root)
        writer = LogWriter(log, batch_size=8, flush_interval=0.05)
        writer.submit(records("early", 2))
        assert writer.flush() and writer.written == 2
        early = 2
    down()
    try:
        if not early:
            log = open_log(url, root)  # does not connect: a log that is down is no error
            writer = LogWriter(log, batch_size=8, flush_interval=0.05)
        assert writer.submit(records("lost", 3))
        assert writer.flush()
        assert writer.dropped == 3 and writer.written == early and writer.down
        assert writer.last_error and "prediction log" in writer.last_error
        with pytest.raises(LogUnavailable):
            writer.add_feedback([{"request_id": "lost", "label": "sun"}])
    finally:
        up()
    assert writer.submit(records("kept", 4))
    assert writer.flush()
    assert writer.written == early + 4 and writer.dropped == 3 and not writer.down
    assert [r["row"] for r in log.lookup("kept")] == [0, 1, 2, 3]
    assert writer.add_feedback([{"request_id": "kept", "label": "rain"}]) == []
    writer.close()
    log.close()


def test_two_writers_share_one_log_like_two_replicas(backend):
    url, root = backend
    logs = [open_log(url, root), open_log(url, root)]
    writers = [LogWriter(lg, batch_size=16, flush_interval=0.01) for lg in logs]

    def replica(i: int) -> None:
        for k in range(40):
            writers[i].submit(records(f"r{i}-{k}", 5))

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for w in writers:
        assert w.flush(60)
    assert [w.written for w in writers] == [200, 200]
    assert [w.dropped for w in writers] == [0, 0], [w.last_error for w in writers]
    assert logs[0].count() == 400
    assert logs[1].add_feedback([{"request_id": "r0-39", "label": "sun"}]) == []
    assert logs[0].lookup("r0-39")[0]["label"] == "sun"
    for w, lg in zip(writers, logs, strict=True):
        w.close()
        lg.close()


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "sqlite:///", "sqlite:///:memory:", "predictions.db"]
)
def test_a_bad_log_url_is_a_one_line_config_error(url: str, tmp_path: Path):
    with pytest.raises(BadInput, match=r"^log_url: ") as err:
        open_log(url, tmp_path)
    assert "\n" not in str(err.value)


def test_an_absolute_sqlite_path_is_used_as_is(tmp_path: Path):
    target = tmp_path / "elsewhere" / "log.db"
    lg = open_log(f"sqlite:///{target}", tmp_path / "root")
    lg.write(records("x", 1))
    assert target.is_file() and lg.count() == 1
    lg.close()


# --------------------------------------------------------------------------- trust (#19)
def test_a_row_the_database_refuses_loses_only_itself_not_its_batch(log: PredictionLog):
    """One bad row among 4,096 other clients' rows: the writer retries the refused batch
    apart (halves down to single rows) and loses that row alone; the log is not "down", and
    /health's recent-drops count sees one row (issue #19: a 128-character request id on
    PostgreSQL dropped a whole batch of other clients' rows)."""
    writer = LogWriter(log, batch_size=4096, flush_interval=5.0)
    try:
        good = records("good", 60)
        # A row as the recorder builds them, with no request id: NOT NULL on both databases.
        bad = (None, *_row(records("bad", 1)[0])[1:])
        assert writer.submit(good[:30] + [bad] + good[30:])
        assert writer.flush()
        assert writer.written == 60 and writer.dropped == 1, writer.last_error
        assert not writer.down and writer.dropped_within(60) == 1
        assert [r["row"] for r in log.lookup("good")] == list(range(60))
    finally:
        writer.close()


def test_client_ids_up_to_the_headers_128_characters_fit_the_column(log: PredictionLog):
    """The header's limit is the column's: a 128-character X-Request-ID is stored whole on
    both databases (PostgreSQL refused 65 and more before)."""
    client = "c" * 128
    log.write([dict(records("srv", 1)[0], client_request_id=client)])
    (row,) = log.lookup("srv")
    assert row["client_request_id"] == client
    assert log.requests_of_client(client) == ["srv"]


def test_drops_count_in_a_recent_window_then_age_out(log: PredictionLog):
    writer = LogWriter(log, batch_size=4, flush_interval=0.05, max_queue=2)
    try:
        assert not writer.submit(records("too-many", 3))
        assert writer.dropped_within(60) == 3
        time.sleep(0.3)
        assert writer.dropped_within(0.2) == 0 and writer.dropped == 3
    finally:
        writer.close()


V1_TABLES = """
CREATE TABLE predictions (
    id {pk}, request_id VARCHAR(64) NOT NULL, "row" INTEGER NOT NULL, at VARCHAR(32) NOT NULL,
    version VARCHAR(64) NOT NULL, role VARCHAR(32) NOT NULL, prediction TEXT NOT NULL,
    proba TEXT, latency_ms FLOAT, input_hash VARCHAR(128), inputs TEXT);
CREATE INDEX ix_predictions_request ON predictions (request_id, "row");
CREATE TABLE feedback (
    request_id VARCHAR(64) NOT NULL, "row" INTEGER NOT NULL, label TEXT NOT NULL,
    at VARCHAR(32) NOT NULL, PRIMARY KEY (request_id, "row"));
INSERT INTO predictions (request_id, "row", at, version, role, prediction)
    VALUES ('old-1', 0, '2026-11-01T00:00:00.000000Z', '1.0.0', 'production', '"sun"');
INSERT INTO feedback VALUES ('old-1', 0, '"rain"', '2026-11-02T00:00:00.000000Z');
"""


def test_a_log_written_by_the_previous_retrain_is_migrated_in_place(backend):
    """A version 1 log (as retrain wrote it before #19: no client id column, one label per
    row in ``feedback``) is migrated on first use: its rows stay, its labels become history
    with no token (they never count as evidence), and new rows and labels go in."""
    import sqlalchemy as sa

    url, root = backend
    engine = open_log(url, root).engine
    if url.startswith("sqlite"):
        (root / ".retrain").mkdir(exist_ok=True)
    pk = "INTEGER PRIMARY KEY" if url.startswith("sqlite") else "BIGSERIAL PRIMARY KEY"
    with engine.begin() as conn:
        for stmt in V1_TABLES.format(pk=pk).split(";"):
            if stmt.strip():
                conn.exec_driver_sql(stmt)
    engine.dispose()
    log = open_log(url, root)
    try:
        (row,) = log.lookup("old-1")
        assert row["prediction"] == "sun" and row["label"] == "rain"
        assert row["label_by"] is None and row["client_request_id"] is None
        assert log.labelled().empty and len(log.labelled(authenticated=False)) == 1
        assert log.schema_version() == 2
        log.write([dict(records("new", 1)[0], client_request_id="mine")])
        assert log.add_feedback([{"request_id": "old-1", "label": "fog"}], by="labeller") == []
        assert list(log.labelled()["label"]) == ["fog"]
        assert [h["label"] for h in log.label_history("old-1")] == ["rain", "fog"]
        assert log.requests_of_client("mine") == ["new"]
    finally:
        log.close()
    reopened = open_log(url, root)  # a second start finds version 2: nothing to do
    try:
        assert reopened.count() == 2 and reopened.schema_version() == 2
    finally:
        reopened.close()
    with sa.create_engine(engine.url).connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM feedback").scalar() == 1  # kept


def test_a_log_of_a_newer_schema_is_refused_in_one_line(log: PredictionLog):
    log.write(records("r", 1))
    with log.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE log_meta SET value = '9' WHERE key = 'schema_version'")
    fresh = open_log(log.url, log.sqlite_path.parents[1] if log.sqlite_path else Path("."))
    try:
        with pytest.raises(LogUnavailable, match="schema version 9 is newer than this retrain"):
            fresh.lookup("r")
    finally:
        fresh.close()
