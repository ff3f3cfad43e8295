"""``POST /invocations`` (MLflow's scoring-server payloads) and ``POST /predict`` (records)."""

from __future__ import annotations

import asyncio
import functools
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
from starlette.requests import ClientDisconnect

from retrain.pipeline.predict import predict_rows
from retrain.serve import inputs, openapi, routing
from retrain.serve.auth import Principal, requires
from retrain.serve.batching import QueueFull, frame_of
from retrain.serve.holder import ServedModel
from retrain.serve.inputs import RequestError
from retrain.serve.predlog import CLIENT_ID_CHARS
from retrain.serve.state import ServeState, get_state

router = APIRouter()
log = logging.getLogger("retrain.serve")
# A client's X-Request-ID: kept beside the server's id, in a column of the same length.
CLIENT_ID = re.compile(rf"^[A-Za-z0-9._:-]{{1,{CLIENT_ID_CHARS}}}$")
REQUEST_ID_HEADER = "X-Request-ID"  # the server's id, on every answer
CLIENT_ID_HEADER = "X-Client-Request-ID"  # the client's own X-Request-ID, echoed
ROLE = "production"
RETRY_AFTER_S = 1
Caller = Annotated[Principal | None, Depends(requires("predict"))]


def json_response(
    payload: Any,
    status: int,
    request_id: str | None,
    *,
    client_request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    out = dict(headers or {})
    if request_id:
        out[REQUEST_ID_HEADER] = request_id
    if client_request_id:
        out[CLIENT_ID_HEADER] = client_request_id
    return Response(
        content=json.dumps(payload, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers=out or None,
    )


def ids_of(request: Request) -> tuple[str, str | None]:
    """``(the server's id, the client's X-Request-ID or None)`` of this request, made once.

    The server's id is a fresh uuid4 (32 hex digits) for every request, whatever the client
    sent: two requests never share one, so a label or an audit names exactly one request.
    """
    st = request.state
    if not hasattr(st, "request_id"):
        st.request_id = uuid.uuid4().hex
        given = request.headers.get("x-request-id")
        st.client_request_id = given if given is not None and CLIENT_ID.match(given) else None
        st.client_id_invalid = given is not None and st.client_request_id is None
    return st.request_id, st.client_request_id


def check_client_id(request: Request) -> None:
    ids_of(request)
    if request.state.client_id_invalid:
        raise RequestError(
            400,
            REQUEST_ID_HEADER,
            f"expected 1-{CLIENT_ID_CHARS} characters of letters, digits and . _ : -",
        )


def request_id_of(request: Request) -> str:
    """The server's id of this request (see :func:`ids_of`)."""
    return ids_of(request)[0]


def error_response(
    request: Request,
    exc: RequestError,
    shape: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
) -> Response:
    """A refused request's answer: the error, the ids, the headers it must carry;
    ``shape(payload, status)`` rewrites it for another protocol (the V2 routes)."""
    rid, cid = ids_of(request)
    body: dict[str, Any] = {**exc.to_dict(), "request_id": rid}
    if cid:
        body["client_request_id"] = cid
    if shape is not None:
        body = shape(body, exc.status)
    return json_response(body, exc.status, rid, client_request_id=cid, headers=exc.headers)


def check_json_content_type(request: Request) -> None:
    """415 unless the body is declared ``application/json`` (a charset may follow)."""
    given = request.headers.get("content-type")
    kind = (given or "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise RequestError(
            415,
            "Content-Type",
            f"expected application/json, got {inputs.short(given) if given else 'none'}",
        )


async def read_json(request: Request, cfg: Any) -> Any:
    """The request's JSON body, checked: content type (415), size (413), nesting (400)."""
    check_json_content_type(request)
    body = await read_body(request, cfg.max_body_bytes)
    return inputs.parse_json(body, cfg.max_body_bytes, cfg.max_json_depth)


def busy(what: str) -> RequestError:
    return RequestError(
        503, "server", f"{what}; retry shortly", headers={"Retry-After": str(RETRY_AFTER_S)}
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "body", f"{declared} bytes is over the limit of {limit}")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, "body", f"more than {limit} bytes; the limit is {limit}")
            chunks.append(chunk)
    except ClientDisconnect:  # gone before its body was sent: no model error to count
        raise RequestError(400, "body", "the client closed the connection mid-body") from None
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
    request_id, client_id = ids_of(request)
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
        check_client_id(request)
        if served is None:
            why = state.holder.problem or "loading"
            raise RequestError(503, "model", f"no model is loaded yet ({why})")
        doc = await read_json(request, cfg)
        where, rows = extract(doc)
        columns, n = inputs.to_columns(rows, served.schema, where, cfg.max_rows)
        if state.recorder is not None and state.recorder.full(n * (1 + len(shadows))):
            raise busy("the prediction log is behind (max_log_backlog_rows)")
        try:
            result = await batcher.predict(served, columns, n)
        except QueueFull as exc:
            raise busy(str(exc)) from None
    except RequestError as exc:
        state.telemetry.observe(route, exc.status, version, None)
        return error_response(request, exc, shape)
    except Exception as exc:
        log.exception("%s: prediction failed", route)
        state.telemetry.observe(route, 500, version, None)
        if state.recorder is not None and served is not None and columns is not None:
            # A failed prediction is logged too (prediction null): it is the error rate
            # `retrain monitor` judges a version by.
            ms = (time.perf_counter() - start) * 1000.0
            state.recorder.record(
                request_id,
                at,
                served.version,
                role,
                columns,
                n,
                [None] * n,
                None,
                None,
                ms,
                client_id,
            )
        err = {
            "error": {
                "field": "model",
                "message": state.scrub(
                    f"prediction failed: {type(exc).__name__}: {inputs.short(str(exc))}"
                ),
                "status": 500,
            }
        }
        return json_response(
            reshape({**err, "request_id": request_id}, 500),
            500,
            request_id,
            client_request_id=client_id,
        )
    finally:
        batcher.leave()
    payload = {
        "predictions": result.predictions,
        **answer(None, result),
        "model_version": served.version,
        "request_id": request_id,
    }
    if client_id:
        payload["client_request_id"] = client_id
    response = json_response(reshape(payload, 200), 200, request_id, client_request_id=client_id)
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
            client_id,
        )
        if shadows:
            response.background = BackgroundTask(
                _run_shadows, state, shadows, request_id, at, columns, n, client_id
            )
    return response


async def _run_shadows(
    state: ServeState,
    shadows: list[ServedModel],
    request_id: str,
    at: str,
    columns: dict[str, list[Any]],
    n: int,
    client_id: str | None = None,
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
                functools.partial(predict_rows, threads=state.settings.config.threads),
                shadow.model,
                frame_of(shadow, columns),
                shadow.task,
            )
            preds = y.tolist()
            p = proba.tolist() if proba is not None else None
        except Exception as exc:
            log.warning("shadow v%s failed on %s: %s", shadow.version, request_id, exc)
            preds, p, classes = [None] * n, None, None
        ms = (time.perf_counter() - t0) * 1000.0
        recorder.record(
            request_id, at, shadow.version, "shadow", columns, n, preds, p, classes, ms, client_id
        )


def _mlflow_answer(_: Any, result: Any) -> dict[str, Any]:
    return {}


def _records_answer(_: Any, result: Any) -> dict[str, Any]:
    if result.proba is None or result.classes is None:
        return {}
    return {
        "classes": result.classes,
        "probabilities": [[round(p, 6) for p in row] for row in result.proba],
    }


@router.post("/invocations", **openapi.route(inputs.InvocationsBody, openapi.PREDICTIONS))
async def invocations(
    request: Request, state: Annotated[ServeState, Depends(get_state)], _: Caller
) -> Response:
    """MLflow scoring-server payloads: ``dataframe_split``, ``dataframe_records``,
    ``instances`` or ``inputs``.  Answers ``{"predictions": [...]}`` plus ``model_version``
    and ``request_id``."""
    return await _score(request, state, "/invocations", inputs.records_of, _mlflow_answer)


@router.post("/predict", **openapi.route(inputs.PredictBody, openapi.PREDICTIONS))
async def predict(
    request: Request, state: Annotated[ServeState, Depends(get_state)], _: Caller
) -> Response:
    """``{"records": [{column: value}, ...]}``: predictions, class probabilities, version."""
    return await _score(
        request,
        state,
        "/predict",
        lambda doc: ("records", inputs.predict_records(doc)),
        _records_answer,
    )
