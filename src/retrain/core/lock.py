"""One writer per checkout: an advisory ``fcntl`` lock on ``.retrain/lock``.

``run``, ``propose``, ``promote`` and ``rollback`` hold it for their whole duration.  A second
command on the same checkout waits up to ``RETRAIN_LOCK_WAIT`` seconds (default 0) and then
stops with exit 2 naming the holder (command, pid, host, start time).  The kernel releases
the lock when its holder dies, however it dies; the file keeps ``"state": "running"`` then,
which tells the next holder that a command was killed half-way (``run`` uses that to restore
the pipeline's own leftovers instead of refusing a dirty tree).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from retrain.core.errors import BadInput

LOCK_FILE = ".retrain/lock"
WAIT_ENV = "RETRAIN_LOCK_WAIT"


def _read(fh: IO[str]) -> dict[str, Any] | None:
    fh.seek(0)
    text = fh.read()
    try:
        doc = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _write(fh: IO[str], doc: dict[str, Any]) -> None:
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps(doc, sort_keys=True) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def describe(doc: dict[str, Any] | None) -> str:
    if not doc:
        return "another retrain command"
    return (
        f"`retrain {doc.get('command')}` (pid {doc.get('pid')} on {doc.get('host')}, "
        f"started {doc.get('started')})"
    )


@contextmanager
def hold(root: Path, command: str, *, wait: float | None = None) -> Iterator[dict[str, Any] | None]:
    """Hold the checkout's lock; yield the record of a previous holder that was killed while
    running (its state was never set to done), else None."""
    if wait is None:
        try:
            wait = float(os.environ.get(WAIT_ENV, "0"))
        except ValueError:
            raise BadInput(f"{WAIT_ENV}: expected a number of seconds") from None
    path = Path(root) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's life
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BadInput(
                        f"{LOCK_FILE}: {describe(_read(fh))} holds this checkout; wait for it "
                        "to finish and run again"
                    ) from None
                time.sleep(0.2)
        previous = _read(fh)
        killed = previous if previous and previous.get("state") == "running" else None
        doc = {
            "command": command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "state": "running",
        }
        _write(fh, doc)
        try:
            yield killed
        finally:
            _write(fh, {**doc, "state": "done"})
    finally:
        fh.close()  # closing the descriptor releases the lock
