"""Hands every served row to the prediction log's writer, off the request path.

The route only appends one tuple per request to a queue (its columns, predictions and
probabilities as lists).  A thread hands what gathered to the writer:

- the server's writer, :class:`retrain.serve.logproc.ProcessLogWriter`, takes the requests as
  they are (``submit_requests``: pickled into a pipe, one write per hand-over); its child
  process turns them into table rows and writes them, off this process's GIL;
- an in-process :class:`retrain.serve.logwriter.LogWriter` (tests, benchmarks) takes table
  rows, which this thread builds a column at a time
  (:func:`retrain.serve.logrows.request_rows`: JSON text and input hash per row), giving the
  GIL back after each request's rows (``time.sleep(0)``).

Counting is per row everywhere: a request that cannot be turned into rows, or that finds no
writer, adds its ``n`` rows to ``failed``; the writer counts the rows it drops in
``dropped``.  The thread wakes at most every ``LINGER`` seconds (or at once for a
:meth:`Recorder.flush`): a thread woken per request would take the GIL from the event loop
hundreds of times a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import queue
import threading
import time
from typing import Any

from retrain.serve.logrows import request_rows
from retrain.serve.logwriter import DropTimes

log = logging.getLogger("retrain.serve")
LINGER = 0.05  # seconds the thread lets records gather before handing them over


def input_hash(row: dict[str, Any]) -> str:
    """sha256 of the row's features as canonical JSON (sorted keys, NaN as null): the
    definition; the server computes the same hash a column at a time (``logrows``)."""
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Recorder:
    def __init__(self, writer: Any, *, log_inputs: bool, max_backlog_rows: int = 100_000) -> None:
        self.writer = writer
        self.log_inputs = log_inputs
        self.max_backlog_rows = max_backlog_rows
        self.failed = 0
        self.backlog_rows = 0  # rows recorded but not yet handed to the writer
        self.drop_times = DropTimes()
        self._put = 0  # items queued, ever
        self._done = 0  # items handed to the writer (or counted as failed), ever
        self._cond = threading.Condition()
        self._hurry = threading.Event()  # set by flush() and close(): do not linger
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(
        self,
        request_id: str,
        at: str,
        version: str,
        role: str,
        columns: dict[str, list[Any]],
        n: int,
        predictions: list[Any],
        proba: list[list[float]] | None,
        classes: list[str] | None,
        latency_ms: float,
        client_request_id: str | None = None,
    ) -> None:
        with self._cond:
            self._put += 1
            self.backlog_rows += n
        self._queue.put(
            (
                request_id,
                at,
                version,
                role,
                columns,
                n,
                predictions,
                proba,
                classes,
                latency_ms,
                client_request_id,
            )
        )

    def full(self, n: int) -> bool:
        """True when ``n`` more rows would take the backlog past ``max_backlog_rows``: the
        server then refuses new predictions (503) rather than queue without bound.  The
        backlog is the rows recorded here and not yet handed over, plus those the writer
        holds unwritten (in its queue, or sent to its process)."""
        held = int(getattr(self.writer, "pending", 0) or 0)
        return self.backlog_rows + held + n > self.max_backlog_rows

    def failed_within(self, seconds: float) -> int:
        return self.drop_times.within(seconds)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything recorded so far was handed to the writer."""
        with self._cond:
            target = self._put
            self._hurry.set()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._hurry.wait(LINGER)
            self._hurry.clear()
            items = [item]
            rows = int(item[5])
            stop = False
            # Drain what else is queued into the same submit: fewer, larger writes.
            while rows < 4096:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                items.append(more)
                rows += int(more[5])
            self._submit(items)
            with self._cond:
                self._done += len(items)
                self.backlog_rows -= sum(int(i[5]) for i in items)
                self._cond.notify_all()
            if stop:
                return

    def _submit(self, items: list[tuple[Any, ...]]) -> None:
        """The rows of ``items`` (recorded requests) to the writer; every row that cannot
        be handed over is counted in ``failed``."""
        if self.writer is None:  # the log could not be opened: count every row as dropped
            lost = sum(int(item[5]) for item in items)
            self.failed += lost
            self.drop_times.add(lost)
            return
        if hasattr(self.writer, "submit_requests"):  # the writer's process builds the rows
            try:
                self.writer.submit_requests(items, self.log_inputs)
            except Exception as exc:  # the writer must never take the server down
                lost = sum(int(item[5]) for item in items)
                self.failed += lost
                self.drop_times.add(lost)
                log.warning("prediction log: submit failed: %s", exc)
            return
        batch: list[tuple[Any, ...]] = []
        for item in items:
            try:
                batch.extend(
                    request_rows(*item[:10], log_inputs=self.log_inputs, client_request_id=item[10])
                )
            except Exception as exc:  # a request the log cannot store: counted, never fatal
                self.failed += int(item[5])
                self.drop_times.add(int(item[5]))
                log.warning("prediction log: request %s not logged: %s", item[0], exc)
            # Hand the GIL back between requests: a thread waiting for it (the event loop,
            # the model call between two trees) gets it now instead of after the 5 ms switch
            # interval, so the log delays serving by one request's rows at most.
            time.sleep(0)
        if not batch:
            return
        try:
            self.writer.submit(batch)
        except Exception as exc:  # the writer must never take the server down
            self.failed += len(batch)
            self.drop_times.add(len(batch))
            log.warning("prediction log: submit failed: %s", exc)

    def close(self) -> None:
        """Hand over everything queued, then stop the thread."""
        self._hurry.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
