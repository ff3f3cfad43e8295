"""The prediction log's writer in a process of its own: logging takes almost nothing from the
server's GIL.

The recorder hands each batch of recorded requests (the route's lists: columns, predictions,
probabilities) to :meth:`ProcessLogWriter.submit_requests`, which pickles them and writes
them to a pipe.  A child process (:mod:`retrain.serve.logchild`) owns the database
connection: it builds the table rows (:mod:`retrain.serve.logrows`) and writes them with a
:class:`~retrain.serve.logwriter.LogWriter` (batches, refused rows retried apart so a bad
row loses only itself, drops counted), and reports back on a second pipe after each write.

What crosses the boundary:

- **Counters**: rows written and dropped (with when, for ``/health``'s window), whether the
  log is down and its last error: the child's, plus the rows the server itself had to drop
  (a full backlog, a child that died with rows in flight).
- **Flush**: :meth:`flush` asks the child to write at once and waits until it reports every
  row sent so far written or dropped, so feedback right after a prediction finds its row.
- **Bounded backlog**: rows sent and not yet reported done are :attr:`pending`; past
  ``max_queue`` new rows are dropped and counted, and the recorder answers 503 before that
  (``max_log_backlog_rows``).
- **Lifetime**: the pipe's write end is the server's alone, so the child reads end-of-file
  when the server exits, however it exits (SIGKILL included); it then writes what it holds
  (for 10 s at most) and exits.  It ignores SIGINT and SIGTERM: a Ctrl-C or a SIGTERM sent
  to the whole process group lets the server close it in order.  A child that dies is
  counted (its rows in flight are dropped) and started again at the next rows, at most
  every ``RESTART_S`` seconds.

The database URL (maybe with a password) goes to the child through the pipe, never on its
command line.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from retrain.serve.logwriter import DropTimes, Record
from retrain.serve.predlog import PredictionLog, open_log, utc_text

log = logging.getLogger("retrain.serve")
CHILD_MODULE = "retrain.serve.logchild"
RESTART_S = 5.0  # a child that died is started again at most this often
EXIT_WAIT_S = 30.0  # how long close() waits for the child to write what it holds


class ProcessLogWriter:
    """A :class:`~retrain.serve.logwriter.LogWriter` in a child process, same counters.

    ``log`` is the parent's own handle on the same log (feedback, messages); the child opens
    its own connection to ``url``.
    """

    def __init__(
        self,
        url: str,
        root: Path,
        *,
        batch_size: int = 4096,
        flush_interval: float = 0.2,
        max_queue: int = 100_000,
    ) -> None:
        if batch_size < 1 or max_queue < 1 or flush_interval <= 0 or math.isnan(flush_interval):
            raise ValueError("batch_size and max_queue must be >= 1, flush_interval > 0")
        self.log: PredictionLog = open_log(url, root)  # a bad URL raises here, in the server
        self._open = ("open", url, str(root), batch_size, flush_interval, max_queue)
        self.max_queue = max_queue
        self.written = 0
        self.dropped = 0
        self.down = False
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.drop_times = DropTimes()
        self.restarts = 0
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()  # messages leave in the order they are numbered
        self._conn: Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._started = -math.inf
        self._seq = 0  # data messages sent to the current child
        self._acked = 0  # the current child reported every message up to here done
        self._inflight: deque[tuple[int, int]] = deque()  # (message, rows) not yet done
        self._pending = 0
        self._child: tuple[int, int] = (0, 0)  # the current child's (written, dropped)
        self._before: tuple[int, int] = (0, 0)  # the same, summed over children that exited
        self._own_drops = 0  # rows this process dropped itself
        self._child_error_at: str | None = None
        self._closing = False
        self._start()

    # ------------------------------------------------------------------ the child
    def _start(self) -> None:
        """Start a child and hand it the log's settings (called with ``_send_lock`` held,
        or from ``__init__``)."""
        data_r, data_w = os.pipe()
        ack_r, ack_w = os.pipe()
        # The child imports this very retrain, whatever put it on the server's path.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", CHILD_MODULE, str(data_r), str(ack_w)],
                pass_fds=(data_r, ack_w),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError:
            for fd in (data_w, ack_r):
                os.close(fd)
            raise
        finally:
            os.close(data_r)
            os.close(ack_w)
        conn = Connection(data_w, readable=False)
        acks = Connection(ack_r, writable=False)
        with self._cond:
            self._conn, self._proc = conn, proc
            self._seq = self._acked = 0
            self._started = time.monotonic()
        reader = threading.Thread(
            target=self._read_acks, args=(conn, proc, acks), name="prediction-log-acks", daemon=True
        )
        self._reader = reader
        reader.start()
        with contextlib.suppress(OSError):  # the child is gone already: its reader says so
            conn.send(self._open)

    def _read_acks(self, conn: Connection, proc: subprocess.Popen[bytes], acks: Connection) -> None:
        try:
            while True:
                self._on_state(conn, acks.recv())
        except (EOFError, OSError):
            pass
        finally:
            acks.close()
            try:
                code = proc.wait(timeout=EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            self._on_exit(conn, code)

    def _on_state(self, conn: Connection, state: tuple[Any, ...]) -> None:
        _, done, written, dropped, down, error, error_at = state
        with self._cond:
            if conn is not self._conn:
                return
            new_drops = dropped - self._child[1]
            self._child = (written, dropped)
            self.drop_times.add(new_drops)
            self.down = bool(down)
            if error is not None and error_at != self._child_error_at:  # a new one
                self._child_error_at = error_at
                self.last_error, self.last_error_at = error, error_at
            while self._inflight and self._inflight[0][0] <= done:
                self._pending -= self._inflight.popleft()[1]
            self._acked = max(self._acked, done)
            self._count()
            self._cond.notify_all()

    def _on_exit(self, conn: Connection, code: int) -> None:
        with self._cond:
            if conn is not self._conn:
                return
            lost = self._pending
            self._inflight.clear()
            self._pending = 0
            self._before = (self._before[0] + self._child[0], self._before[1] + self._child[1])
            self._child = (0, 0)
            self._acked = self._seq
            self._conn = self._proc = None
            if lost:
                self._drop(lost)
            if not self._closing:
                self.down = True
                self._note(
                    f"prediction log writer process exited ({_status(code)}); {lost} row(s) "
                    f"in flight lost; a new one starts with the next rows"
                )
                log.warning("%s", self.last_error)
            self._count()
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            conn.close()

    # ------------------------------------------------------------------ bookkeeping
    def _count(self) -> None:
        self.written = self._before[0] + self._child[0]
        self.dropped = self._before[1] + self._child[1] + self._own_drops

    def _note(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = utc_text()

    def _drop(self, rows: int, why: str | None = None) -> None:
        """Count ``rows`` this process could not hand over (``_cond`` held)."""
        self._own_drops += rows
        self.drop_times.add(rows)
        if why:
            self._note(why)
        self._count()

    # ------------------------------------------------------------------ producers
    def submit_requests(self, items: Sequence[tuple[Any, ...]], log_inputs: bool) -> bool:
        """Hand recorded requests (the tuples :meth:`Recorder.record` queues) to the child;
        False when they were dropped (backlog full, no child, closing)."""
        rows = sum(int(item[5]) for item in items)
        return self._send(rows, ("requests", log_inputs, list(items)))

    def submit(self, records: Sequence[Record]) -> bool:
        """Hand table rows (dicts, or tuples as :mod:`~retrain.serve.logrows` builds them)
        to the child, as :meth:`LogWriter.submit` takes them."""
        return self._send(len(records), ("records", list(records)))

    def _send(self, rows: int, message: tuple[Any, ...]) -> bool:
        if rows == 0:
            return True
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            with self._cond:
                if self._closing:
                    self._drop(rows)
                    return False
                if self._pending + rows > self.max_queue:
                    self._drop(rows, f"prediction log queue full ({self.max_queue} records)")
                    return False
                start = self._conn is None
                if start and time.monotonic() - self._started < RESTART_S:
                    self._drop(rows)
                    return False
            if start:
                try:
                    self.restarts += 1
                    self._start()
                except OSError as exc:
                    with self._cond:
                        self._started = time.monotonic()
                        self._drop(rows, f"prediction log writer process: cannot start ({exc})")
                    return False
            with self._cond:
                conn = self._conn
                if conn is None:  # died between the start and here
                    self._drop(rows)
                    return False
                self._seq += 1
                self._inflight.append((self._seq, rows))
                self._pending += rows
            # A child that died: its reader counts the rows in flight as dropped.
            with contextlib.suppress(OSError):
                conn.send_bytes(payload)
        return True

    def _control(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            conn = self._conn
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.send_bytes(pickle.dumps(message))

    # ------------------------------------------------------------------ the API
    @property
    def pending(self) -> int:
        """Rows sent to the child and not yet written or dropped."""
        with self._cond:
            return self._pending

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every row submitted so far is written or dropped; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target, conn = self._seq, self._conn
            if conn is None or self._acked >= target:
                return True
        self._control(("hurry",))
        with self._cond:
            while self._acked < target and self._conn is conn:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is None else min(left, 0.5))
        return True

    def add_feedback(self, items: Iterable[dict[str, Any]], *, by: str | None = None) -> list[str]:
        """Flush, then store the labels through this process's own connection (see
        :meth:`LogWriter.add_feedback`)."""
        self.flush()
        return self.log.add_feedback(list(items), by=by)

    def dropped_within(self, seconds: float) -> int:
        return self.drop_times.within(seconds)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "written": self.written,
                "dropped": self.dropped,
                "pending": self._pending,
                "down": self.down,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
            }

    @property
    def pid(self) -> int | None:
        """The child's process id (None: none running)."""
        proc = self._proc
        return None if proc is None else proc.pid

    def close(self, timeout: float = EXIT_WAIT_S) -> None:
        """Let the child write what it holds and exit; release this process's connections."""
        with self._cond:
            self._closing = True
        self._control(("close",))
        with self._send_lock:
            conn, proc, reader = self._conn, self._proc, self._reader
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()  # end of file for the child, should it miss "close"
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        if reader is not None:
            reader.join(timeout=timeout)
        self.log.close()


def _status(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"
