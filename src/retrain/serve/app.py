"""The app factory: ``create_app(settings)`` builds a FastAPI app whose lifespan creates the
shared state (model holder, batcher, reconcile loop, prediction log) and tears it down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from retrain.core import redact
from retrain.serve import ops, scoring, v2
from retrain.serve.auth import Auth, LabelBudget, TokenFile
from retrain.serve.batching import Batcher
from retrain.serve.follow import Reconciler
from retrain.serve.holder import ModelHolder, ServedModel
from retrain.serve.inputs import RequestError
from retrain.serve.limits import ConcurrencyLimit
from retrain.serve.recorder import Recorder
from retrain.serve.source import source_for
from retrain.serve.state import ServeSettings, ServeState
from retrain.serve.telemetry import Telemetry

log = logging.getLogger("retrain.serve")
# Rows per transaction of the prediction log: the recorder hands over up to 4096 rows at a
# time (every 50 ms), and a transaction costs the writer the same Python for 100 rows as for
# 4000 (SQLite's insert runs without the GIL), so take them in one.
LOG_BATCH_ROWS = 4096


def _open_log(settings: ServeSettings) -> tuple[Any, str | None]:
    """``(ProcessLogWriter or None, why not)``: the prediction log's writer, in a process of
    its own (:mod:`retrain.serve.logproc`); an unreachable log never stops the server."""
    cfg = settings.config
    if not cfg.log_enabled:
        return None, None
    try:
        from retrain.serve.logproc import ProcessLogWriter

        writer = ProcessLogWriter(
            settings.prediction_log_url, settings.root, batch_size=LOG_BATCH_ROWS
        )
        return writer, None
    except Exception as exc:
        shown = redact.url(settings.prediction_log_url)
        why = redact.urls_in(redact.scrub(f"{type(exc).__name__}: {exc}", settings.secrets))
        log.warning("prediction log %s unavailable: %s", shown, why)
        return None, why


def create_app(settings: ServeSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder = ModelHolder()
        writer, log_error = await asyncio.to_thread(_open_log, settings)
        recorder = (
            Recorder(
                writer,
                log_inputs=settings.config.log_inputs,
                max_backlog_rows=settings.config.max_log_backlog_rows,
            )
            if settings.config.log_enabled
            else None
        )
        state_box: list[ServeState] = []
        telemetry = Telemetry(lambda: state_box[0].log_counts() if state_box else (0, 0))
        batcher = Batcher(
            settings.config.batch_max_rows,
            settings.config.batch_wait_ms / 1000.0,
            observe_rows=telemetry.batch_rows.observe,
            threads=settings.config.threads,
            max_queued_rows=settings.config.max_queued_rows,
        )

        def on_reload(outcome: str, model: ServedModel | None) -> None:
            telemetry.reload(outcome, model)
            telemetry.rollout(holder.snapshot()[1])

        reconciler = Reconciler(
            settings.root,
            source_for(settings.root, settings.follow, settings.follow_path),
            holder,
            settings.dataset,
            settings.model_name,
            trusted=settings.trusted,
            on_reload=on_reload,
            on_relabel=telemetry.relabel,
            on_config=lambda cfg, rev: state_box[0].apply(cfg, rev.where) if state_box else None,
            keep_artifacts=settings.config.keep_artifacts,
        )
        state = ServeState(
            settings=settings,
            holder=holder,
            telemetry=telemetry,
            batcher=batcher,
            reconciler=reconciler,
            recorder=recorder,
            writer=writer,
            log_error=log_error,
            auth=Auth(
                TokenFile.from_env(),
                dev_open_feedback=settings.dev_open_feedback,
                predictions_need_token=settings.config.require_token_for_predictions,
            ),
            budget=LabelBudget(settings.config.max_labels_per_minute),
        )
        state_box.append(state)
        app.state.serve = state
        batcher.start()
        stop = asyncio.Event()
        loop_task = asyncio.create_task(
            reconciler.run(
                lambda: state.settings.reconcile_interval,
                stop,
                lambda: state.settings.config.follow_jitter,
            )
        )
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(loop_task, timeout=150)
            await batcher.stop()
            if recorder is not None:
                await asyncio.to_thread(recorder.close)
            if writer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(writer.close)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(writer.log.close)

    docs = settings.config.openapi  # /docs and /openapi.json only when asked for
    app = FastAPI(
        title="retrain serve",
        summary="The production model of registry.yaml, followed from git",
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url=None,
    )
    app.include_router(scoring.router)
    app.include_router(ops.router)
    app.include_router(v2.router)
    app.add_middleware(ConcurrencyLimit, limit=settings.config.max_concurrent_requests)

    @app.exception_handler(RequestError)
    async def _refused(request: Request, exc: RequestError) -> Response:
        """A refusal raised before a route ran (a dependency: the bearer token)."""
        state: ServeState = request.app.state.serve
        served = state.holder.current
        state.telemetry.observe(
            request.url.path, exc.status, served.version if served else "none", None
        )
        return scoring.error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ["body"], "msg": "invalid"}
        field = ".".join(str(p) for p in first["loc"])
        return JSONResponse(
            {"error": {"field": field, "message": first["msg"], "status": 422}}, status_code=422
        )

    return app
