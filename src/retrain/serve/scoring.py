"""``POST /invocations`` (MLflow's scoring-server payloads) and ``POST /predict`` (records)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.background import BackgroundTask

from retrain.pipeline.predict import predict_rows
from retrain.serve import inputs, routing
from retrain.serve.batching import frame_of
from retrain.serve.holder import ServedModel
from retrain.serve.inputs import RequestError
from retrain.serve.state import ServeState, get_state

router = APIRouter()
log = logging.getLogger("retrain.serve")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ROLE = "production"


def json_response(payload: Any, status: int, request_id: str | None) -> Response:
    headers = {"X-Request-ID": request_id} if request_id else None
    return Response(
        content=json.dumps(payload, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def request_id_of(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given and REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "body", f"{declared} bytes is over the limit of {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "body", f"more than {limit} bytes; the limit is {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


async def _score(
    request: Request,
    state: ServeState,
    route: str,
    extract: Callable[[Any], tuple[str, Any]],
    answer: Callable[[inputs.RequestError | None, Any], dict[str, Any]],
    shape: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
) -> Response:
    """Score one request; ``shape(payload, status)`` rewrites the answer for another
    protocol (the V2 routes), errors included."""
    reshape = shape or (lambda payload, status: payload)
    start = time.perf_counter()
    at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    request_id = request_id_of(request)
    production, rollout, others = state.holder.snapshot()
    served, role, shadows = production, ROLE, []
    if production is not None and rollout is not None:
        # registry.yaml's rollout: a canary answers its share of routing keys; shadows see
        # every request after the answer is sent (routing.py).
        picked = routing.route(
            routing.routing_key(request.headers, request_id), production.version, rollout
        )
        served = others.get(picked.version, production)
        role = picked.role if served is not production else ROLE
        shadows = [others[v] for v in picked.shadows if v in others]
    version = served.version if served is not None else "none"
    columns: dict[str, list[Any]] | None = None
    n = 0
    cfg = state.settings.config
    batcher = state.batcher
    batcher.enter()
    try:
        if served is None:
            why = state.holder.problem or "loading"
            raise RequestError(503, "model", f"no model is loaded yet ({why})")
        doc = inputs.parse_json(await read_body(request, cfg.max_body_bytes), cfg.max_body_bytes)
        where, rows = extract(doc)
        columns, n = inputs.to_columns(rows, served.schema, where, cfg.max_rows)
        result = await batcher.predict(served, columns, n)
    except RequestError as exc:
        state.telemetry.observe(route, exc.status, version, None)
        return json_response(
            reshape({**exc.to_dict(), "request_id": request_id}, exc.status),
            exc.status,
            request_id,
        )
    except Exception as exc:
        log.exception("%s: prediction failed", route)
        state.telemetry.observe(route, 500, version, None)
        if state.recorder is not None and served is not None and columns is not None:
            # A failed prediction is logged too (prediction null): it is the error rate
            # `retrain monitor` judges a version by.
            ms = (time.perf_counter() - start) * 1000.0
            state.recorder.record(
                request_id, at, served.version, role, columns, n, [None] * n, None, None, ms
            )
        err = {
            "error": {
                "field": "model",
                "message": f"prediction failed: {type(exc).__name__}: {exc}",
                "status": 500,
            }
        }
        return json_response(reshape({**err, "request_id": request_id}, 500), 500, request_id)
    finally:
        batcher.leave()
    payload = {
        "predictions": result.predictions,
        **answer(None, result),
        "model_version": served.version,
        "request_id": request_id,
    }
    response = json_response(reshape(payload, 200), 200, request_id)
    seconds = time.perf_counter() - start
    state.telemetry.observe(route, 200, served.version, seconds)
    if state.recorder is not None:
        state.recorder.record(
            request_id,
            at,
            served.version,
            role,
            columns,
            n,
            result.predictions,
            result.proba,
            result.classes,
            seconds * 1000.0,
        )
        if shadows:
            response.background = BackgroundTask(
                _run_shadows, state, shadows, request_id, at, columns, n
            )
    return response


async def _run_shadows(
    state: ServeState,
    shadows: list[ServedModel],
    request_id: str,
    at: str,
    columns: dict[str, list[Any]],
    n: int,
) -> None:
    """Shadow predictions, after the response was sent: logged with role ``shadow``, never
    returned.  They run on a worker thread, not on the batcher's, so they cannot delay the
    next answer's model call; a failing shadow is logged as an error row."""
    recorder = state.recorder
    if recorder is None:
        return
    for shadow in shadows:
        t0 = time.perf_counter()
        try:
            y, proba, classes = await asyncio.to_thread(
                predict_rows, shadow.model, frame_of(shadow, columns), shadow.task
            )
            preds = y.tolist()
            p = proba.tolist() if proba is not None else None
        except Exception as exc:
            log.warning("shadow v%s failed on %s: %s", shadow.version, request_id, exc)
            preds, p, classes = [None] * n, None, None
        ms = (time.perf_counter() - t0) * 1000.0
        recorder.record(request_id, at, shadow.version, "shadow", columns, n, preds, p, classes, ms)


def _mlflow_answer(_: Any, result: Any) -> dict[str, Any]:
    return {}


def _records_answer(_: Any, result: Any) -> dict[str, Any]:
    if result.proba is None or result.classes is None:
        return {}
    return {
        "classes": result.classes,
        "probabilities": [[round(p, 6) for p in row] for row in result.proba],
    }


@router.post("/invocations")
async def invocations(
    request: Request, state: Annotated[ServeState, Depends(get_state)]
) -> Response:
    """MLflow scoring-server payloads: ``dataframe_split``, ``dataframe_records``,
    ``instances`` or ``inputs``.  Answers ``{"predictions": [...]}`` plus ``model_version``
    and ``request_id``."""
    return await _score(request, state, "/invocations", inputs.records_of, _mlflow_answer)


@router.post("/predict")
async def predict(request: Request, state: Annotated[ServeState, Depends(get_state)]) -> Response:
    """``{"records": [{column: value}, ...]}``: predictions, class probabilities, version."""
    return await _score(
        request,
        state,
        "/predict",
        lambda doc: ("records", inputs.predict_records(doc)),
        _records_answer,
    )
