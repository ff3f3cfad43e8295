"""Dynamic batching: concurrent requests share one model call, run off the event loop.

The model's ``predict_proba`` costs about the same for 1 row as for 100 (the forest's fixed
cost dominates), so the server, not the model, limits throughput unless requests are
batched, as Triton's and BentoML's dynamic batchers do.  One worker task takes every request
queued (up to ``max_rows`` rows) and, when more requests were in flight at once during the
previous batch than it has collected, waits at most ``max_wait`` seconds for them: with 8
clients the batches converge on 8 requests instead of alternating halves, and a lone client
is never delayed.  The model call runs in a thread, so the event loop keeps reading requests
meanwhile.

Each request carries the model it started with; a batch that straddles a swap makes one call
per model, so every request finishes on the model it started with.

One bad row must not fail the other requests batched with it: when a model call of several
requests fails, each request is predicted again on its own, so only the requests whose rows
the model cannot take get the error (the others their answers, as if they had come alone).

The queue is bounded in rows (``max_queued_rows``): past it :meth:`Batcher.predict` raises
:class:`QueueFull` at once, and the route answers 503 with ``Retry-After``, instead of
letting a flood of requests hold every other client's answer (and memory) hostage.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from retrain.pipeline.predict import predict_rows
from retrain.serve.holder import ServedModel


@dataclass
class Prediction:
    predictions: list[Any]
    proba: list[list[float]] | None
    classes: list[str] | None


@dataclass
class _Job:
    served: ServedModel
    columns: dict[str, list[Any]]
    n: int
    future: asyncio.Future[Prediction]


def frame_of(served: ServedModel, columns: dict[str, list[Any]]) -> pd.DataFrame:
    """One request's rows as the model's input frame (shadows are scored with it)."""
    return _frame(served, [_Job(served, columns, 0, None)])  # type: ignore[arg-type]


def _frame(served: ServedModel, jobs: list[_Job]) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for feat in served.schema.features:
        values: list[Any] = []
        for job in jobs:
            values.extend(job.columns[feat.name])
        data[feat.name] = np.asarray(values, dtype="float64") if feat.numeric else values
    frame = pd.DataFrame(data, columns=served.schema.names)
    for feat in served.schema.features:
        if not feat.numeric:
            frame[feat.name] = frame[feat.name].astype(object)
    return frame


def _predict(served: ServedModel, jobs: list[_Job], threads: int | None = None) -> list[Prediction]:
    # threads: serve.yaml's limit on the native pools, set on this (the calling) thread
    y, proba, classes = predict_rows(
        served.model, _frame(served, jobs), served.task, threads=threads
    )
    out = []
    start = 0
    y_list = y.tolist()
    p_list = proba.tolist() if proba is not None else None
    for job in jobs:
        end = start + job.n
        out.append(
            Prediction(
                y_list[start:end], p_list[start:end] if p_list is not None else None, classes
            )
        )
        start = end
    return out


class QueueFull(Exception):
    """The batcher holds ``max_queued_rows`` rows already: refuse the request (503)."""


class Batcher:
    def __init__(
        self,
        max_rows: int,
        max_wait: float,
        observe_rows: Any = None,
        max_queued_rows: int = 1 << 62,
        threads: int | None = None,
    ) -> None:
        self.max_rows = max_rows
        self.threads = threads  # native threads per model call (serve.yaml: threads)
        self.max_wait = max_wait
        self.max_queued_rows = max_queued_rows
        self.queued_rows = 0  # rows in the queue, not yet collected into a batch
        self.active = 0  # requests between arrival and answer
        self.peak = 0  # most requests active at once since the last batch was collected
        self.observe_rows = observe_rows
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task: asyncio.Task[None] | None = None

    def enter(self) -> None:
        self.active += 1
        if self.active > self.peak:
            self.peak = self.active

    def leave(self) -> None:
        self.active -= 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def predict(
        self, served: ServedModel, columns: dict[str, list[Any]], n: int
    ) -> Prediction:
        if self.queued_rows + n > self.max_queued_rows:
            raise QueueFull(
                f"{self.queued_rows} rows are waiting for the model "
                f"(max_queued_rows {self.max_queued_rows})"
            )
        fut: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self.queued_rows += n
        self._queue.put_nowait(_Job(served, columns, n, fut))
        return await fut

    def _take(self, job: _Job) -> _Job:
        self.queued_rows -= job.n
        return job

    async def _collect(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        jobs = [self._take(await self._queue.get())]
        rows = jobs[0].n
        deadline = loop.time() + self.max_wait
        expected, self.peak = self.peak, self.active
        while rows < self.max_rows:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if len(jobs) >= expected or remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            jobs.append(self._take(job))
            rows += job.n
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            groups: dict[int, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(id(job.served), []).append(job)
            for group in groups.values():
                if self.observe_rows is not None:
                    self.observe_rows(sum(j.n for j in group))
                try:
                    results = await loop.run_in_executor(
                        self._executor, _predict, group[0].served, group, self.threads
                    )
                except Exception as exc:
                    if len(group) == 1:
                        if not group[0].future.done():
                            group[0].future.set_exception(exc)
                        continue
                    # Some request's rows broke the shared call: retry each request apart,
                    # so only the requests that fail alone get the error.
                    for job in group:
                        await self._alone(loop, job)
                    continue
                for job, res in zip(group, results, strict=True):
                    if not job.future.done():
                        job.future.set_result(res)

    async def _alone(self, loop: asyncio.AbstractEventLoop, job: _Job) -> None:
        if job.future.done():  # the client went away
            return
        try:
            (res,) = await loop.run_in_executor(
                self._executor, _predict, job.served, [job], self.threads
            )
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            job.future.set_result(res)
