"""Hands every served row to the prediction log's writer, off the request path.

The route only appends a tuple to a queue; a thread turns it into one record per row (with
the input hash) and submits them to :class:`retrain.serve.logwriter.LogWriter`, which batches
the writes and counts what it has to drop.  The thread wakes at most every ``LINGER``
seconds (or at once for a :meth:`Recorder.flush`): a thread woken per request would take the
GIL from the event loop hundreds of times a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import queue
import threading
from typing import Any

log = logging.getLogger("retrain.serve")
LINGER = 0.05  # seconds the thread lets records gather before handing them over


def input_hash(row: dict[str, Any]) -> str:
    """sha256 of the row's features as canonical JSON (sorted keys, NaN as null)."""
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Recorder:
    def __init__(self, writer: Any, *, log_inputs: bool) -> None:
        self.writer = writer
        self.log_inputs = log_inputs
        self.failed = 0
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
    ) -> None:
        with self._cond:
            self._put += 1
        self._queue.put(
            (request_id, at, version, role, columns, n, predictions, proba, classes, latency_ms)
        )

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything recorded so far was handed to the writer."""
        with self._cond:
            target = self._put
            self._hurry.set()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def _records(self, item: tuple[Any, ...]) -> list[dict[str, Any]]:
        request_id, at, version, role, columns, n, predictions, proba, classes, latency = item
        names = list(columns)
        out = []
        for i in range(n):
            row = {name: columns[name][i] for name in names}
            out.append(
                {
                    "request_id": request_id,
                    "row": i,
                    "at": at,
                    "version": version,
                    "role": role,
                    "prediction": predictions[i],
                    "proba": (
                        {c: round(p, 6) for c, p in zip(classes, proba[i], strict=True)}
                        if proba is not None and classes is not None
                        else None
                    ),
                    "latency_ms": round(latency, 3),
                    "input_hash": input_hash(row),
                    "inputs": (
                        {
                            k: (None if isinstance(v, float) and math.isnan(v) else v)
                            for k, v in row.items()
                        }
                        if self.log_inputs
                        else None
                    ),
                }
            )
        return out

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._hurry.wait(LINGER)
            self._hurry.clear()
            batch = self._records(item)
            taken = 1
            stop = False
            # Drain what else is queued into the same submit: fewer, larger writes.
            while len(batch) < 4096:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.extend(self._records(more))
                taken += 1
            self._submit(batch)
            with self._cond:
                self._done += taken
                self._cond.notify_all()
            if stop:
                return

    def _submit(self, batch: list[dict[str, Any]]) -> None:
        if self.writer is None:  # the log could not be opened: count every row as dropped
            self.failed += len(batch)
            return
        try:
            self.writer.submit(batch)
        except Exception as exc:  # the writer must never take the server down
            self.failed += len(batch)
            log.warning("prediction log: submit failed: %s", exc)

    def close(self) -> None:
        """Hand over everything queued, then stop the thread."""
        self._hurry.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
