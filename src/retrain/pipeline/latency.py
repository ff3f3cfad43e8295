"""Prediction latency, measured (not assumed), and steady on a busy machine.

A latency gate that reads the wall clock on a shared 2-core runner measures the neighbours as
much as the model: the same model gave p95 15 ms/row on an idle machine and 31 ms/row while the
test suite ran beside it.  Three things keep the verdict put:

* **CPU waits are not the model's latency.**  Each timed call is ``perf_counter`` around one
  ``predict``, minus the time the calling thread spent runnable but waiting for a CPU
  (``run_delay`` in Linux's ``/proc/thread-self/schedstat``).  Sleeps and I/O inside the model
  still count; another process hogging the cores does not.  Where schedstat is missing
  (macOS, a kernel without ``CONFIG_SCHED_INFO``) the wall time is used as it is.
* **A robust statistic over repeats.**  The timed calls run in ``rounds``; each round gives a
  p95, and the reported value is the median of the rounds' p95s, so one disturbed round does
  not move it.
* **Candidate and production side by side.**  :func:`measure_latencies` interleaves the
  models call by call (alternating which goes first each round), so both see the same machine.

Garbage collection is off while timing, as :mod:`timeit` does, every measurement starts
with one untimed warm-up call, and warnings are ignored while timing (one filter): scikit-learn
re-installs the process's warning filters in each per-tree call, so the number of filters that
earlier imports left behind would otherwise show up in a forest's latency.
"""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from retrain.core.config import GatesConfig

_SCHEDSTAT = Path("/proc/thread-self/schedstat")


def _run_delay_ns() -> int:
    """Nanoseconds this thread has spent waiting on a run queue (0 where unknown)."""
    try:
        return int(_SCHEDSTAT.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def cpu_wait_is_measured() -> bool:
    """True when the run-queue wait can be read here (and is subtracted from timings)."""
    try:
        return len(_SCHEDSTAT.read_text().split()) >= 2
    except OSError:
        return False


def _rows(X: Any, index: np.ndarray) -> Any:
    """Rows of a DataFrame (keeping column names, so the model sees what it was fit on)."""
    return X.iloc[index] if hasattr(X, "iloc") else np.asarray(X)[index]


def _timed(call: Callable[[Any], Any], batch: Any) -> float:
    """Seconds one call took, less the time the thread waited for a CPU."""
    waited = _run_delay_ns()
    start = time.perf_counter()
    call(batch)
    elapsed = time.perf_counter() - start
    waited = _run_delay_ns() - waited
    return max(elapsed - waited * 1e-9, 0.0)


def _p95_ms(samples: list[list[float]]) -> float:
    """Median over rounds of each round's p95, in milliseconds."""
    per_round = [float(np.percentile(r, 95)) for r in samples]
    return round(float(np.median(per_round)) * 1000.0, 4)


def _measure(
    calls: Mapping[str, Callable[[Any], Any]], batches: list[Any], rounds: int
) -> dict[str, float]:
    names = list(calls)
    samples: dict[str, list[list[float]]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    # One warning filter while timing: scikit-learn re-installs every filter of the process
    # in each of its per-tree calls, so a forest's latency grew with whatever the process
    # had imported before (+1 ms/row once MLflow was loaded), not with the model.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            calls[name](batches[0])  # warm-up: first-call costs (lazy imports, caches)
        gc.disable()  # a collection mid-call is noise, not the model's cost
        try:
            _rounds(calls, batches, rounds, samples)
        finally:
            if gc_was_enabled:
                gc.enable()
    return {name: _p95_ms(samples[name]) for name in names}


def _rounds(
    calls: Mapping[str, Callable[[Any], Any]],
    batches: list[Any],
    rounds: int,
    samples: dict[str, list[list[float]]],
) -> None:
    """Time every call, ``rounds`` times, models taking turns call by call."""
    names = list(calls)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        times: dict[str, list[float]] = {name: [] for name in names}
        for batch in batches:
            for name in order:
                times[name].append(_timed(calls[name], batch))
        for name in names:
            samples[name].append(times[name])


def measure_latencies(
    models: Mapping[str, Any], X: Any, cfg: GatesConfig.Latency
) -> dict[str, dict[str, float]]:
    """p95 prediction latency in milliseconds of each model, measured interleaved.

    ``X`` is one frame for all models, or a mapping ``{name: frame}`` when their input
    schemas differ (a MAJOR change); the frames must hold the same rows.

    ``cfg.repeats`` rows, evenly spaced over ``X`` (deterministic), are predicted one at a
    time; a batch of ``cfg.batch_size`` rows (``X``'s first rows, cycled if ``X`` is
    shorter) is predicted ``cfg.batch_repeats`` times; both ``cfg.rounds`` times.  Within a
    round the models take turns call by call.

    Returns
    -------
    dict
        ``{name: {"p95_ms_single": float, "p95_ms_batch": float}}``, in ``models`` order.
    """
    frames = dict(X) if isinstance(X, Mapping) else dict.fromkeys(models, X)
    n = len(next(iter(frames.values())))
    if n == 0:
        raise ValueError("cannot measure latency on zero rows")
    picks = np.linspace(0, n - 1, num=cfg.repeats).round().astype(int)
    singles = np.arange(len(picks))
    batch_rows = np.arange(cfg.batch_size) % n

    def on_rows(name: str) -> Any:
        # each model gets its own frame's rows; the timed argument is the batch's position
        model, frame = models[name], frames[name]
        single_frames = [_rows(frame, np.array([i])) for i in picks]
        batch_frame = _rows(frame, batch_rows)

        def call(which: Any) -> Any:
            return model.predict(batch_frame if which is None else single_frames[which])

        return call

    calls = {name: on_rows(name) for name in models}
    single = _measure(calls, list(singles), cfg.rounds)
    batched = _measure(calls, [None] * cfg.batch_repeats, cfg.rounds)
    return {name: {"p95_ms_single": single[name], "p95_ms_batch": batched[name]} for name in calls}


def measure_latency(model: Any, X: Any, cfg: GatesConfig.Latency) -> dict[str, float]:
    """p95 prediction latency of one model: ``{"p95_ms_single": .., "p95_ms_batch": ..}``.

    See :func:`measure_latencies` for the rows, rounds and statistic.
    """
    return measure_latencies({"model": model}, X, cfg)["model"]
