"""The prediction log's writer in its own process: what the server's GIL no longer pays for,
with the same guarantees as the in-process writer (tests/test_predlog.py).

Each test starts a real writer process (``python -m retrain.serve.logchild``) on a real log:
SQLite, and Debian's PostgreSQL started by tests/postgres.py.  "The log is down" is a stopped
server, or a SQLite path whose parent is a regular file; "the server is killed" is a SIGKILL
of a real process that owns a writer (or of ``retrain serve`` itself).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from retrain.core import watchdog
from retrain.serve import logproc
from retrain.serve.logproc import ProcessLogWriter
from retrain.serve.predlog import _row, open_log
from tests.conftest import PROJECT
from tests.servers import retrain_serve

GONE_WITHIN_S = 15.0


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    if request.param == "sqlite":
        return "sqlite:///.retrain/predictions.db", tmp_path
    server = request.getfixturevalue("postgres")
    return server.create_db(f"w_{uuid.uuid4().hex[:12]}"), tmp_path


def requests(prefix: str, n: int, rows: int = 3) -> list[tuple]:
    """``n`` recorded requests of ``rows`` rows, as the route hands them to the recorder."""
    return [
        (f"{prefix}-{i}", "2026-11-20T10:00:00Z", "1.0.0", "production",
         {"precipitation": [0.5 * j for j in range(rows)], "season": ["winter"] * rows},
         rows, ["sun"] * rows, [[0.25, 0.75]] * rows, ["rain", "sun"], 1.5, None)
        for i in range(n)
    ]  # fmt: skip


def _wait(what: str, check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_rows_are_written_by_another_process_and_feedback_right_after_finds_them(backend):
    url, root = backend
    writer = ProcessLogWriter(url, root, batch_size=4096, flush_interval=5.0)
    try:
        assert writer.pid != os.getpid() and "retrain.serve.logchild" in _cmdline(writer.pid)
        assert writer.submit_requests(requests("r", 40), log_inputs=True)
        # No wait: the label's flush has the child write its 5 s batch at once.
        assert (
            writer.add_feedback([{"request_id": "r-39", "row": 2, "label": "rain"}], by="t") == []
        )
        assert writer.written == 120 and writer.dropped == 0 and writer.pending == 0
        (row,) = [r for r in writer.log.lookup("r-39") if r["row"] == 2]
        assert row["label"] == "rain" and row["inputs"] == {
            "precipitation": 1.0,
            "season": "winter",
        }
        assert row["proba"] == {"rain": 0.25, "sun": 0.75}
    finally:
        writer.close()
    assert writer.written == 120


def test_a_row_the_database_refuses_loses_only_itself_across_the_process(backend):
    """The child retries a refused batch apart, as the in-process writer does (issue #19),
    and the server sees the one dropped row in its counters and its recent window."""
    url, root = backend
    writer = ProcessLogWriter(url, root, batch_size=4096, flush_interval=5.0)
    try:
        good = [dict(request_id="good", row=i, at="2026-11-20T10:00:00Z", version="1.0.0",
                     role="production", prediction="sun") for i in range(60)]  # fmt: skip
        bad = (None, *_row(good[0])[1:])  # a built row without its id: NOT NULL on both
        assert writer.submit(good[:30] + [bad] + good[30:])
        assert writer.flush()
        assert writer.written == 60 and writer.dropped == 1, writer.last_error
        assert not writer.down and writer.dropped_within(60) == 1
        assert [r["row"] for r in writer.log.lookup("good")] == list(range(60))
        # A request the child cannot turn into rows is counted too, and named.
        broken = requests("broken", 1)[0][:5] + (4,) + requests("broken", 1)[0][6:]
        assert writer.submit_requests([broken], log_inputs=False)
        assert writer.flush() and writer.dropped == 5
        assert "broken-0" in (writer.last_error or "")
    finally:
        writer.close()


def _block(backend: tuple[str, Path], request: pytest.FixtureRequest):
    url, root = backend
    if url.startswith("sqlite"):
        parent = root / ".retrain"
        return (lambda: parent.write_text("a file, not a directory")), parent.unlink
    server = request.getfixturevalue("postgres")
    return server.stop, server.start


def test_an_unreachable_log_drops_and_counts_across_the_process_then_resumes(backend, request):
    down, up = _block(backend, request)
    url, root = backend
    early = 0
    if url.startswith("postgresql"):  # a server that goes away under pooled connections
        writer = ProcessLogWriter(url, root, batch_size=64, flush_interval=0.05)
        assert writer.submit_requests(requests("early", 2), log_inputs=False)
        assert writer.flush() and writer.written == 6
        early = 6
    down()
    try:
        if not early:  # SQLite: the file cannot be created
            writer = ProcessLogWriter(url, root, batch_size=64, flush_interval=0.05)
        assert writer.submit_requests(requests("lost", 1), log_inputs=False)
        assert writer.flush()
        assert writer.dropped == 3 and writer.down and writer.dropped_within(60) == 3
        assert "prediction log" in (writer.last_error or "")
    finally:
        up()
    try:
        assert writer.submit_requests(requests("kept", 1, rows=4), log_inputs=False)
        assert writer.flush()
        assert writer.written == early + 4 and writer.dropped == 3 and not writer.down
        assert [r["row"] for r in writer.log.lookup("kept-0")] == [0, 1, 2, 3]
    finally:
        writer.close()


def test_a_full_backlog_drops_and_counts_instead_of_blocking(tmp_path):
    writer = ProcessLogWriter("sqlite:///log.db", tmp_path, max_queue=5)
    try:
        assert not writer.submit_requests(requests("too-many", 2), log_inputs=False)
        assert writer.dropped == 6 and "queue full" in (writer.last_error or "")
        assert writer.submit_requests(requests("fits", 1, rows=5), log_inputs=False)
        assert writer.flush() and writer.written == 5 and writer.dropped_within(60) == 6
    finally:
        writer.close()


def test_a_writer_process_that_dies_is_counted_and_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(logproc, "RESTART_S", 0.0)
    writer = ProcessLogWriter("sqlite:///log.db", tmp_path)
    try:
        assert writer.submit_requests(requests("before", 1), log_inputs=False) and writer.flush()
        first = writer.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        _wait("the writer to notice", lambda: writer.pid is None)
        assert writer.down and "killed by signal 9" in (writer.last_error or "")
        assert writer.submit_requests(requests("after", 1), log_inputs=False) and writer.flush()
        assert writer.pid not in (None, first) and writer.restarts == 1
        assert writer.written == 6 and not writer.down
        assert len(writer.log.lookup("after-0")) == 3
    finally:
        writer.close()


OWNER = r"""
import sys, time
from pathlib import Path
from retrain.serve.logproc import ProcessLogWriter
from tests.test_logproc import requests

writer = ProcessLogWriter("sqlite:///log.db", Path(sys.argv[1]), flush_interval=5.0)
writer.submit_requests(requests("sent", 50), log_inputs=False)  # no flush: still in flight
print(writer.pid, flush=True)
time.sleep(600)
"""


def test_the_writer_process_writes_what_it_was_sent_and_exits_when_its_server_is_killed(
    tmp_path,
):
    """A server SIGKILLed (no shutdown runs) leaves no writer behind: the child reads the end
    of its pipe, writes the rows it had been sent and exits on its own."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], cwd=PROJECT,
                             stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        assert watchdog.alive(child)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        _wait("the writer process to exit", lambda: not watchdog.alive(child), GONE_WITHIN_S)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    log = open_log("sqlite:///log.db", tmp_path)
    assert log.count() == 150  # every row sent before the kill
    log.close()


def test_retrain_serve_logs_through_a_child_that_goes_away_with_it(tmp_path):
    """``retrain serve`` (no model yet: it answers 503 and waits) starts its log writer
    process; a SIGKILL of the server alone, not its group, takes the writer with it."""
    shutil.copytree(PROJECT / "configs", tmp_path / "configs")
    shutil.copy2(PROJECT / "registry.yaml", tmp_path / "registry.yaml")
    up = lambda client: client.get("/ping")[0] in (200, 503)  # noqa: E731
    with retrain_serve(tmp_path, dict(os.environ), ready=up) as served:
        server = served.proc.pid
        children = []

        def found() -> bool:
            children[:] = [
                int(p) for p in os.listdir("/proc") if p.isdigit()
                and "retrain.serve.logchild" in _cmdline(int(p)) and _ppid(int(p)) == server
            ]  # fmt: skip
            return len(children) == 1

        _wait("the log writer process", found)
        os.kill(server, signal.SIGKILL)
        served.proc.wait(timeout=10)
        _wait("the writer process to exit", lambda: not watchdog.alive(children[0]), GONE_WITHIN_S)


def _ppid(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(text.rsplit(")", 1)[1].split()[1])
