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
* **Native thread pools limited as the server limits them.**  The run-queue correction above
  covers the calling thread only; an OpenMP estimator (``HistGradientBoosting*``) hands each
  call to one worker per core, and on a busy machine the caller waits for workers that wait
  for a CPU (p95 13-17 ms/row corrected with the default threads under two busy processes,
  1.8 ms/row with one thread, the same model; 1.8-2.1 ms/row idle either way).  The server
  predicts under ``configs/serve.yaml: threads`` (:mod:`retrain.pipeline.threads`), so both
  single rows and batches are timed under that limit (``threads``; None: the libraries'
  default).  With one thread every instruction of the call runs on the calling thread, and
  the correction covers all of it.

Garbage collection is off while timing, as :mod:`timeit` does, every measurement starts
with one untimed warm-up call, and warnings are ignored while timing (one filter): scikit-learn
re-installs the process's warning filters in each per-tree call, so the number of filters that
earlier imports left behind would otherwise show up in a forest's latency.

Rounds exist to keep a verdict near its budget from flipping; a verdict far from it cannot.
So after the first round, when every model's p95 is below ``one_round_below`` (default half)
of its budget, the other rounds are skipped: latencies only read high on a disturbed machine,
never low, so a first round far inside the budget is a pass that more rounds would not undo.

A retrain measures latency once.  The evaluate stage writes the candidate's figures to
``metrics.json``; when ``retrain run`` runs that stage in its own process it has production's
model at hand (:func:`alongside`), so the stage measures both interleaved and keeps the pair,
which the gates take (:func:`measured_pair`) instead of timing the same models again.
"""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrain.core.config import GatesConfig
from retrain.pipeline.threads import limited as limited_threads

_SCHEDSTAT = Path("/proc/thread-self/schedstat")
SERVE_THREADS = 1  # configs/serve.yaml's default ``threads``: what a serving worker uses


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
    calls: Mapping[str, Callable[[Any], Any]],
    batches: list[Any],
    rounds: int,
    settled_ms: float = 0.0,
) -> dict[str, float]:
    """Median over rounds of each model's p95 (ms); one round when every p95 of the first is
    below ``settled_ms`` (0: every round)."""
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
            for r in range(rounds):
                _round(calls, batches, r, samples)
                if r == 0 and all(_p95_ms(samples[n]) < settled_ms for n in names):
                    break
        finally:
            if gc_was_enabled:
                gc.enable()
    return {name: _p95_ms(samples[name]) for name in names}


def _round(
    calls: Mapping[str, Callable[[Any], Any]],
    batches: list[Any],
    r: int,
    samples: dict[str, list[list[float]]],
) -> None:
    """Time every call once, models taking turns call by call (who goes first alternates)."""
    names = list(calls)
    order = names if r % 2 == 0 else names[::-1]
    times: dict[str, list[float]] = {name: [] for name in names}
    for batch in batches:
        for name in order:
            times[name].append(_timed(calls[name], batch))
    for name in names:
        samples[name].append(times[name])


def measure_latencies(
    models: Mapping[str, Any],
    X: Any,
    cfg: GatesConfig.Latency,
    threads: int | None = SERVE_THREADS,
) -> dict[str, dict[str, float]]:
    """p95 prediction latency in milliseconds of each model, measured interleaved, with the
    native thread pools limited to ``threads`` as the server limits them
    (``configs/serve.yaml: threads``; None: the libraries' default).

    ``X`` is one frame for all models, or a mapping ``{name: frame}`` when their input
    schemas differ (a MAJOR change); the frames must hold the same rows.

    ``cfg.repeats`` rows, evenly spaced over ``X`` (deterministic), are predicted one at a
    time; a batch of ``cfg.batch_size`` rows (``X``'s first rows, cycled if ``X`` is
    shorter) is predicted ``cfg.batch_repeats`` times; both ``cfg.rounds`` times, or once
    when the first round's p95s are all below ``cfg.one_round_below`` of their budgets.
    Within a round the models take turns call by call.

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
    share = cfg.one_round_below
    with limited_threads(threads):  # on this thread, the one that calls predict
        single = _measure(calls, list(singles), cfg.rounds, share * cfg.max_p95_ms_single)
        batched = _measure(
            calls, [None] * cfg.batch_repeats, cfg.rounds, share * cfg.max_p95_ms_batch
        )
    return {name: {"p95_ms_single": single[name], "p95_ms_batch": batched[name]} for name in calls}


def measure_latency(
    model: Any, X: Any, cfg: GatesConfig.Latency, threads: int | None = SERVE_THREADS
) -> dict[str, float]:
    """p95 prediction latency of one model: ``{"p95_ms_single": .., "p95_ms_batch": ..}``.

    See :func:`measure_latencies` for the rows, rounds, statistic and ``threads``.
    """
    return measure_latencies({"model": model}, X, cfg, threads)["model"]


# ------------------------------------------------------------------ measured once per retrain


@dataclass
class _Production:
    version: str
    model: Any
    inputs: Callable[[Any], Any]  # the holdout frame -> production's input frame


_production: list[_Production] = []
_pairs: dict[tuple[str, str, int | None], dict[str, dict[str, float]]] = {}


@contextmanager
def alongside(version: str, model: Any, inputs: Callable[[Any], Any]) -> Iterator[None]:
    """While inside, :func:`measure_candidate` times the candidate interleaved with production
    ``version`` (``model``; ``inputs`` maps the holdout to its input columns) and keeps the
    pair for :func:`measured_pair`.  ``retrain run`` wraps its in-process stages in this."""
    _production.append(_Production(version, model, inputs))
    try:
        yield
    finally:
        _production.pop()


def measure_candidate(
    model: Any,
    holdout: Any,
    features: list[str],
    cfg: GatesConfig.Latency,
    sha256: str,
    threads: int | None = SERVE_THREADS,
) -> dict[str, float]:
    """The candidate's p95s for ``metrics.json``: interleaved with production inside
    :func:`alongside` (the pair kept for the gates), alone otherwise."""
    X = holdout[features]
    if not _production:
        return measure_latency(model, X, cfg, threads)
    prod = _production[-1]
    pair = measure_latencies(
        {"candidate": model, "production": prod.model},
        {"candidate": X, "production": prod.inputs(holdout)},
        cfg,
        threads,
    )
    _pairs[(sha256, prod.version, threads)] = pair
    return pair["candidate"]


def alongside_version() -> str | None:
    """The production version :func:`measure_candidate` would time the candidate beside."""
    return _production[-1].version if _production else None


def measured_pair(
    sha256: str, version: str, threads: int | None = SERVE_THREADS
) -> dict[str, dict[str, float]] | None:
    """The interleaved figures the evaluate stage took in this process for the candidate
    ``sha256`` beside production ``version`` under ``threads``, if it did (None: measure
    them)."""
    return _pairs.pop((sha256, version, threads), None)
