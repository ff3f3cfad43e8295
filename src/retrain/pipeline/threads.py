"""Native thread pools (OpenMP, BLAS) limited around one model call, as the server runs it.

scikit-learn's OpenMP estimators (``HistGradientBoosting*``) start one thread per core for
every ``predict``, even for one row.  On a busy machine those workers wait for a CPU while
they spin, and the caller waits for them: one row took p95 275 ms with the default threads
against 8.9 ms with one thread, on two cores shared with other jobs (issue 23).  A serving
worker that answers one request at a time gains nothing from them, so the server predicts
under ``configs/serve.yaml: threads`` (default 1), and the latency gate measures under the
same limit, so the gate judges the latency the server will have.

The limit is set with threadpoolctl on the *calling* thread (OpenMP's thread count is a
per-thread setting; BLAS's is process-wide) and undone after the call.  Finding the loaded
libraries costs about a millisecond, so it is done once and again only after new modules
were imported (a new model may bring its own native library); a limited call then costs
about 15 µs.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_controller: Any = None
_modules_seen = -1


def _current_controller() -> Any:
    """threadpoolctl's view of the loaded native libraries, refreshed when modules were
    imported since it was taken."""
    global _controller, _modules_seen
    with _lock:
        if _controller is None or len(sys.modules) != _modules_seen:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
            _modules_seen = len(sys.modules)
        return _controller


@contextmanager
def limited(threads: int | None) -> Iterator[None]:
    """Inside, the calling thread's native pools use at most ``threads`` threads (None:
    as the libraries and the environment, e.g. ``OMP_NUM_THREADS``, set them)."""
    if threads is None:
        yield
        return
    with _current_controller().limit(limits=threads):
        yield


def describe(threads: int | None) -> str:
    """``"1 native thread"``, ``"4 native threads"`` or ``"the libraries' default threads"``."""
    if threads is None:
        return "the libraries' default threads"
    return f"{threads} native thread{'s' if threads != 1 else ''}"
