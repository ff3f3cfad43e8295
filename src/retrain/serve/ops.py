"""``/ping``, ``/health``, ``/version``, ``/metrics`` and ``POST /feedback``."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from retrain.core import redact
from retrain.serve import inputs, openapi, replicas
from retrain.serve.auth import Principal, requires
from retrain.serve.inputs import RequestError, short
from retrain.serve.predlog import REQUEST_ID_CHARS
from retrain.serve.scoring import error_response, json_response, read_json, request_id_of
from retrain.serve.state import ServeState, get_state

router = APIRouter()
State = Annotated[ServeState, Depends(get_state)]


@router.get(
    "/ping",
    response_class=Response,
    responses={503: {"description": "no model loaded yet"}},
)
async def ping(state: State) -> Response:
    """200 once a model is loaded (MLflow's liveness check), 503 before."""
    return Response(status_code=200 if state.holder.current is not None else 503)


@router.get("/health", responses={503: {"description": "loading: no model yet"}})
async def health(state: State) -> Response:
    """``ready`` / ``degraded`` (still serving, with the reasons) / ``loading`` (503)."""
    served = state.holder.current
    problems = state.problems()
    written, dropped = state.log_counts()
    cfg = state.settings.config
    auth = state.auth.status()
    body: dict[str, Any] = {
        "status": "loading" if served is None else ("degraded" if problems else "ready"),
        "reasons": problems,
        "model_version": served.version if served else None,
        "following": state.reconciler.source.description,
        "failed_reloads": state.holder.failed_reloads,
        "environment_mismatch": list(served.environment_mismatch) if served else [],
        "prediction_log": {
            # Never the password: the URL as `redact.url` shows it.
            "url": redact.url(state.settings.prediction_log_url) if cfg.log_enabled else None,
            "written": written,
            "dropped": dropped,
            "dropped_recently": state.recent_drops(),
            "recent_window_seconds": cfg.drops_window_seconds,
        },
        "auth": {
            "feedback": "dev-open (loopback, no token)"
            if auth["dev_open_feedback"]
            else ("token" if auth["tokens"] else "closed (no tokens configured)"),
            "predictions": "token" if auth["predictions_need_token"] else "open",
            "tokens": auth["tokens"],
        },
    }
    return json_response(body, 200 if served is not None else 503, None)


@router.get("/version", responses={503: {"description": "no model loaded yet"}})
async def version(state: State) -> Response:
    """The model serving now: name, version, registry commit, artifact sha256."""
    served, rollout, _ = state.holder.snapshot()
    if served is None:
        return json_response(
            {"error": {"field": "model", "message": "no model is loaded yet", "status": 503}},
            503,
            None,
        )
    return json_response(
        {
            **served.identity(),
            "following": state.reconciler.source.description,
            "rollout": rollout.to_dict() if rollout else None,
            "environment_mismatch": list(served.environment_mismatch),
        },
        200,
        None,
    )


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: State) -> Response:
    return Response(content=state.telemetry.render(), media_type=CONTENT_TYPE_LATEST)


def _store_feedback(state: ServeState, items: list[dict[str, Any]], by: str | None) -> list[str]:
    """Rows recorded so far reach the writer first, so feedback right after a prediction
    finds it; returns the unknown request ids."""
    if state.recorder is not None:
        state.recorder.flush()
    unknown: list[str] = state.writer.add_feedback(items, by=by)
    return unknown


@router.post("/feedback", **openapi.route(inputs.FeedbackItem, openapi.STORED, many=True))
async def feedback(
    request: Request,
    state: State,
    who: Annotated[Principal | None, Depends(requires("feedback"))],
) -> Response:
    """The true outcome of earlier predictions: ``{request_id, label, row?}`` or a list.

    Needs a bearer token (``RETRAIN_TOKENS_FILE``); the label is stored with the token's
    name and the time, beside any earlier label of the row (the latest counts)."""
    request_id = request_id_of(request)
    served = state.holder.current
    version = served.version if served is not None else "none"
    cfg = state.settings.config
    assert who is not None  # requires("feedback") never lets a request through without one
    try:
        doc = await read_json(request, cfg)
        items = inputs.feedback_items(doc)
        limit = who.max_labels_per_request or cfg.max_labels_per_request
        if len(items) > limit:
            raise RequestError(
                413, "body", f"{len(items)} labels is over the limit of {limit} per request"
            )
        ds = state.settings.dataset
        for i, item in enumerate(items):
            field = "label" if len(items) == 1 else f"{i}.label"
            if ds.task == "classification":
                if not isinstance(item.label, str):
                    raise RequestError(
                        422, field, f"expected a class label string, got {short(item.label)}"
                    )
                if ds.labels is not None and item.label not in ds.labels:
                    raise RequestError(
                        422,
                        field,
                        f"unknown label {short(item.label)}; expected one of {ds.labels}",
                    )
            elif isinstance(item.label, str):
                raise RequestError(422, field, f"expected a number, got {short(item.label)}")
            elif not math.isfinite(item.label):
                raise RequestError(422, field, f"expected a finite number, got {item.label}")
            if item.row < 0:
                raise RequestError(422, field.replace("label", "row"), "must be >= 0")
            if len(item.request_id) > REQUEST_ID_CHARS:
                raise RequestError(
                    404,
                    field.replace("label", "request_id"),
                    f"no request has an id of {len(item.request_id)} characters "
                    f"(the server's are at most {REQUEST_ID_CHARS}); nothing stored",
                )
        if state.writer is None:
            why = state.log_error or "disabled in configs/serve.yaml"
            raise RequestError(503, "prediction_log", f"the prediction log is unavailable ({why})")
        wait = state.budget.take(who, len(items))
        if wait is not None:
            raise RequestError(
                429,
                "body",
                f"token {who.name or '(none)'} may post "
                f"{who.max_labels_per_minute or cfg.max_labels_per_minute} labels per minute; "
                f"retry in {wait:.0f} s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        try:
            # A row another replica served may reach the shared log a moment later.
            unknown = await replicas.add_feedback_awaiting_rows(
                lambda batch: _store_feedback(state, batch, who.name),
                [item.model_dump() for item in items],
                cfg.feedback_wait_s,
            )
        except Exception as exc:
            raise RequestError(
                503,
                "prediction_log",
                state.scrub(f"feedback could not be stored: {type(exc).__name__}: {exc}"),
            ) from None
        if unknown:
            shown = sorted(set(unknown))
            raise RequestError(
                404,
                "request_id",
                f"unknown request_id(s) {short(shown)}; nothing stored for them",
            )
    except RequestError as exc:
        state.telemetry.observe("/feedback", exc.status, version, None)
        return error_response(request, exc)
    state.telemetry.observe("/feedback", 200, version, None)
    return json_response(
        {"stored": len(items), "by": who.name, "request_id": request_id}, 200, request_id
    )
