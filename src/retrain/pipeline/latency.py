"""Prediction latency, measured (not assumed): p95 of single-row and batch ``predict`` calls."""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np

from retrain.core.config import GatesConfig


def _rows(X: Any, index: np.ndarray) -> Any:
    """Rows of a DataFrame (keeping column names, so the model sees what it was fit on)."""
    return X.iloc[index] if hasattr(X, "iloc") else np.asarray(X)[index]


def _p95_ms(call: Any, batches: list[Any]) -> float:
    call(batches[0])  # warm-up: first-call costs (lazy imports, caches) are not latency
    times = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection mid-call is noise, not the model's cost
    try:
        for batch in batches:
            start = time.perf_counter()
            call(batch)
            times.append(time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return round(float(np.percentile(times, 95)) * 1000.0, 4)


def measure_latency(model: Any, X: Any, cfg: GatesConfig.Latency) -> dict[str, float]:
    """Measure p95 prediction latency in milliseconds, single row and batch.

    ``cfg.repeats`` rows, evenly spaced over ``X`` (deterministic), are predicted one at a
    time; a batch of ``cfg.batch_size`` rows (``X``'s first rows, cycled if ``X`` is
    shorter) is predicted ``cfg.batch_repeats`` times.  Each timing is one
    ``model.predict`` call measured with :func:`time.perf_counter`, after one untimed
    warm-up call.

    Returns
    -------
    dict
        ``{"p95_ms_single": float, "p95_ms_batch": float}``
    """
    n = len(X)
    if n == 0:
        raise ValueError("cannot measure latency on zero rows")
    picks = np.linspace(0, n - 1, num=cfg.repeats).round().astype(int)
    singles = [_rows(X, np.array([i])) for i in picks]
    batch = _rows(X, np.arange(cfg.batch_size) % n)
    return {
        "p95_ms_single": _p95_ms(model.predict, singles),
        "p95_ms_batch": _p95_ms(model.predict, [batch] * cfg.batch_repeats),
    }
