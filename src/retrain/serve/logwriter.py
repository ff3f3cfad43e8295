"""The prediction log's writer: records submitted on the request path, written in batches by
a background thread (see :mod:`retrain.serve.predlog` for the tables).

:meth:`LogWriter.submit` never blocks and never raises: an unreachable log drops the batch and
counts it (``dropped``, ``last_error``), and the next batch tries again, so a log that comes
back resumes by itself.  A batch the database *refuses* while it is up (a value too long for
its column, a constraint) is retried in halves, down to single rows, so a bad row loses only
itself, never the other clients' rows written with it (at most ``MAX_RETRIES`` extra
transactions per batch; what is still unresolved then is dropped and counted).  Drops are
also kept with their time, so ``/health`` can report those of a recent window.  Everything is counted in rows of the ``predictions`` table (a record
is one served row, whether a dict or a row already built by :mod:`retrain.serve.logrows`):
``batch_size`` and ``max_queue`` are rows, and so are ``written`` and ``dropped``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from retrain.serve.predlog import LogUnavailable, PredictionLog, RowsRefused, utc_text

Record = dict[str, Any] | tuple[Any, ...]  # one served row: see PredictionLog.write
MAX_RETRIES = 256  # transactions a refused batch may take to find its bad rows
DROPS_KEPT = 4096  # drop events remembered for dropped_within()


class DropTimes:
    """When rows were dropped: ``(monotonic time, rows)``, for counts over a recent window."""

    def __init__(self) -> None:
        self._events: deque[tuple[float, int]] = deque(maxlen=DROPS_KEPT)
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        if n > 0:
            with self._lock:
                self._events.append((time.monotonic(), n))

    def within(self, seconds: float) -> int:
        since = time.monotonic() - seconds
        with self._lock:
            return sum(n for t, n in self._events if t >= since)


class LogWriter:
    """Writes submitted records to a :class:`PredictionLog` from a background thread.

    :meth:`submit` never blocks and never raises: a full queue drops the records, a failed
    batch is dropped, and both are counted in ``dropped`` (with ``last_error``).  Batches of
    at most ``batch_size`` records are written every ``flush_interval`` seconds or as soon as
    a batch is full.  The next batch after a failure tries again, so a log that comes back
    resumes.  :meth:`close` writes what is queued, stops the thread and closes the log.
    """

    def __init__(
        self,
        log: PredictionLog,
        *,
        batch_size: int = 256,
        flush_interval: float = 0.2,
        max_queue: int = 100_000,
    ) -> None:
        if batch_size < 1 or max_queue < 1 or flush_interval <= 0 or math.isnan(flush_interval):
            raise ValueError("batch_size and max_queue must be >= 1, flush_interval > 0")
        self.log = log
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.written = 0
        self.dropped = 0
        self.batches = 0
        self.failed_batches = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.down = False
        self.drop_times = DropTimes()
        self._queue: deque[Record] = deque()
        self._submitted = 0  # records accepted into the queue, ever
        self._done = 0  # accepted records written or dropped by the thread, ever
        self._cond = threading.Condition()
        self._flush_upto = 0  # a flush() waits for records up to here: write them now
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="prediction-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producers
    def submit(self, records: Sequence[Record]) -> bool:
        """Queue ``records`` (dicts, or rows as :mod:`retrain.serve.logrows` builds them; one
        each per served row); False when they were dropped (queue full or writer closed)."""
        n = len(records)
        if n == 0:
            return True
        with self._cond:
            if self._closing or len(self._queue) + n > self.max_queue:
                self.dropped += n
                self.drop_times.add(n)
                if not self._closing:
                    self._note_error(f"prediction log queue full ({self.max_queue} records)")
                return False
            # Wake the writer when the queue was empty (it sleeps until then) or a batch
            # is full; otherwise rows below a batch would wait for the next flush forever.
            was_empty = not self._queue
            self._queue.extend(records)
            self._submitted += n
            if was_empty or len(self._queue) >= self.batch_size:
                self._cond.notify_all()
        return True

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def progress(self) -> tuple[int, int]:
        """``(records accepted by submit, of them written or dropped)``, ever."""
        with self._cond:
            return self._submitted, self._done

    def hurry(self) -> None:
        """Write what is queued now, without waiting for a fuller batch (a flush that does
        not wait for it)."""
        with self._cond:
            self._flush_upto = max(self._flush_upto, self._submitted)
            self._cond.notify_all()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every record submitted so far is written or dropped; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._flush_upto = max(self._flush_upto, target)
            self._cond.notify_all()
            while self._done < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is None else min(left, 0.5))
        return True

    def add_feedback(self, items: Iterable[dict[str, Any]], *, by: str | None = None) -> list[str]:
        """Flush pending records, then :meth:`PredictionLog.add_feedback` (may raise
        :class:`LogUnavailable`), so a label posted right after its prediction finds it;
        ``by`` is the name of the token that wrote the labels (None: none)."""
        self.flush()
        return self.log.add_feedback(list(items), by=by)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, stop the thread and release the log's connections."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self.log.close()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "written": self.written,
                "dropped": self.dropped,
                "pending": len(self._queue),
                "down": self.down,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
            }

    # ------------------------------------------------------------------ the thread
    def _note_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = utc_text()

    def _take(self) -> list[Record]:
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            flushing = self._flush_upto > self._done
            if len(self._queue) < self.batch_size and not (self._closing or flushing):
                # Wait a little for a fuller batch; a flush() or a full batch wakes us early.
                self._cond.wait(self.flush_interval)
            n = min(self.batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                with self._cond:
                    if self._closing and not self._queue:
                        self._cond.notify_all()
                        return
                continue
            error: str | None = None
            written, lost, down = 0, 0, False
            try:
                self.log.write(batch)
                written = len(batch)
            except RowsRefused as exc:
                # The log is up; some rows are bad. Find them, keep the others.
                written, lost, error, down = self._apart(batch, str(exc))
            except LogUnavailable as exc:
                error, lost, down = str(exc), len(batch), True
            except Exception as exc:  # a record the log cannot store: counted, never fatal
                error = f"prediction log: {type(exc).__name__}: {exc}"
                written, lost, error, down = self._apart(batch, error)
            with self._cond:
                self.batches += 1
                self.written += written
                self.down = down
                if lost:
                    self.dropped += lost
                    self.drop_times.add(lost)
                    self.failed_batches += 1
                if error is not None:
                    self._note_error(error)
                self._done += len(batch)
                self._cond.notify_all()

    def dropped_within(self, seconds: float) -> int:
        """Rows dropped in the last ``seconds``."""
        return self.drop_times.within(seconds)

    def _apart(self, batch: list[Record], first_error: str) -> tuple[int, int, str, bool]:
        """Write a refused batch in halves down to single rows: ``(written, lost, error,
        the log went down)``.

        Bisection finds k bad rows of n in about 2·k·log2(n) transactions; after
        ``MAX_RETRIES`` the parts still unresolved are dropped.  A log that goes down
        meanwhile drops what is left at once.
        """
        written, lost, error, down = 0, 0, first_error, False
        budget = MAX_RETRIES
        parts = [batch[: len(batch) // 2], batch[len(batch) // 2 :]] if len(batch) > 1 else []
        if not parts:
            return 0, len(batch), error, False
        while parts:
            part = parts.pop()
            if not part:
                continue
            if budget <= 0:
                lost += len(part)
                continue
            budget -= 1
            try:
                self.log.write(part)
                written += len(part)
            except RowsRefused as exc:
                error = str(exc)
                if len(part) == 1:
                    lost += 1
                else:
                    half = len(part) // 2
                    parts += [part[:half], part[half:]]
            except LogUnavailable as exc:
                error, down = str(exc), True
                lost += len(part) + sum(len(p) for p in parts)
                parts = []
            except Exception as exc:
                error = f"prediction log: {type(exc).__name__}: {exc}"
                if len(part) == 1:
                    lost += 1
                else:
                    half = len(part) // 2
                    parts += [part[:half], part[half:]]
        return written, lost, error, down
