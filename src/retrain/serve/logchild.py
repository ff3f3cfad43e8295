"""The prediction log's writer process (started by :mod:`retrain.serve.logproc`).

    python -m retrain.serve.logchild DATA_FD ACK_FD

Reads pickled messages from the pipe ``DATA_FD``: first the log's settings, then requests
to log (built into table rows here, :func:`retrain.serve.logrows.request_rows`) or rows
already built, ``hurry`` (write now) and ``close``; writes them with a
:class:`~retrain.serve.logwriter.LogWriter`; reports ``(state, last message done, written,
dropped, down, last error, its time)`` on ``ACK_FD`` whenever that changes.  Exits at
``close`` or at end of file (the server is gone), after writing what it holds (10 s at most).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

CLOSE_WAIT_S = 10.0
POLL_S = 0.01  # how often progress is checked while messages are in flight


class Child:
    """The reader's bookkeeping and the reporter thread."""

    def __init__(self, writer: Any, acks: Connection) -> None:
        self.writer = writer
        self.acks = acks
        self.failed = 0  # rows of requests that could not be built into table rows
        self.failed_error: tuple[str, str] | None = None
        self._seq = 0
        self._done = 0
        self._inflight: deque[tuple[int, int]] = deque()  # (message, rows accepted after it)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._last: tuple[Any, ...] | None = None
        self._thread = threading.Thread(target=self._report_loop, name="acks", daemon=True)
        self._thread.start()

    def take(self, message: tuple[Any, ...]) -> None:
        from retrain.serve.logrows import request_rows
        from retrain.serve.predlog import utc_text

        rows: list[Any]
        if message[0] == "requests":
            _, log_inputs, items = message
            rows = []
            for item in items:
                try:
                    rows.extend(
                        request_rows(*item[:10], log_inputs=log_inputs, client_request_id=item[10])
                    )
                except Exception as exc:  # a request the log cannot store: counted
                    with self._lock:
                        self.failed += int(item[5])
                        self.failed_error = (f"prediction log: {exc}", utc_text())
                    logging.getLogger("retrain.serve").warning(
                        "prediction log: request %s not logged: %s", item[0], exc
                    )
        else:
            rows = list(message[1])
        if rows:
            self.writer.submit(rows)
        accepted, _ = self.writer.progress
        with self._lock:
            self._seq += 1
            self._inflight.append((self._seq, accepted))
        self._wake.set()

    def report(self) -> None:
        """Send the state when it changed."""
        _, done_rows = self.writer.progress
        with self._lock:
            while self._inflight and self._inflight[0][1] <= done_rows:
                self._done = self._inflight.popleft()[0]
            done, failed, failed_error = self._done, self.failed, self.failed_error
        stats = self.writer.stats()
        error, error_at = stats["last_error"], stats["last_error_at"]
        if failed_error is not None and (error_at is None or failed_error[1] > error_at):
            error, error_at = failed_error
        state = ("state", done, stats["written"], stats["dropped"] + failed, stats["down"],
                 error, error_at)  # fmt: skip
        if state != self._last:
            self._last = state
            self.acks.send(state)

    def _report_loop(self) -> None:
        try:
            while not self._stop:
                with self._lock:
                    idle = not self._inflight
                if idle:
                    self._wake.wait(1.0)
                    self._wake.clear()
                else:
                    time.sleep(POLL_S)
                self.report()
        except OSError:  # the server is gone
            return

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=5)


def main(argv: list[str]) -> None:
    # The server ends this process in order (end of file); a Ctrl-C or a SIGTERM sent to
    # the whole group must not drop the rows it holds before the server closes it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s:%(name)s:%(message)s")
    data = Connection(int(argv[0]), writable=False)
    acks = Connection(int(argv[1]), readable=False)
    try:
        _, url, root, batch_size, flush_interval, max_queue = data.recv()
    except (EOFError, OSError):
        os._exit(0)
    from retrain.serve.logwriter import LogWriter
    from retrain.serve.predlog import open_log

    writer = LogWriter(
        open_log(url, Path(root)),
        batch_size=batch_size,
        flush_interval=flush_interval,
        max_queue=max_queue,
    )
    child = Child(writer, acks)
    try:
        while True:
            try:
                message = pickle.loads(data.recv_bytes())
            except (EOFError, OSError):
                break
            if message[0] == "close":
                break
            if message[0] == "hurry":
                writer.hurry()
                continue
            child.take(message)
    finally:
        writer.close(timeout=CLOSE_WAIT_S)
        child.stop()
        with contextlib.suppress(OSError):  # the server is gone: nobody to tell
            child.report()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
