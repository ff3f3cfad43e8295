"""``/ping``, ``/health``, ``/version``, ``/metrics`` and ``POST /feedback``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from retrain.core.config.serving import redacted
from retrain.serve import inputs, replicas
from retrain.serve.inputs import RequestError
from retrain.serve.scoring import json_response, read_body, request_id_of
from retrain.serve.state import ServeState, get_state

router = APIRouter()
State = Annotated[ServeState, Depends(get_state)]


@router.get("/ping")
async def ping(state: State) -> Response:
    """200 once a model is loaded (MLflow's liveness check), 503 before."""
    return Response(status_code=200 if state.holder.current is not None else 503)


@router.get("/health")
async def health(state: State) -> Response:
    """``ready`` / ``degraded`` (still serving, with the reasons) / ``loading`` (503)."""
    served = state.holder.current
    problems = state.problems()
    written, dropped = state.log_counts()
    body: dict[str, Any] = {
        "status": "loading" if served is None else ("degraded" if problems else "ready"),
        "reasons": problems,
        "model_version": served.version if served else None,
        "following": state.reconciler.source.description,
        "failed_reloads": state.holder.failed_reloads,
        "environment_mismatch": list(served.environment_mismatch) if served else [],
        "prediction_log": {
            "url": redacted(state.settings.config.log_url)
            if state.settings.config.log_enabled
            else None,
            "written": written,
            "dropped": dropped,
        },
    }
    return json_response(body, 200 if served is not None else 503, None)


@router.get("/version")
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


@router.get("/metrics")
async def metrics(state: State) -> Response:
    return Response(content=state.telemetry.render(), media_type=CONTENT_TYPE_LATEST)


def _store_feedback(state: ServeState, items: list[dict[str, Any]]) -> list[str]:
    """Rows recorded so far reach the writer first, so feedback right after a prediction
    finds it; returns the unknown request ids."""
    if state.recorder is not None:
        state.recorder.flush()
    unknown: list[str] = state.writer.add_feedback(items)
    return unknown


@router.post("/feedback")
async def feedback(request: Request, state: State) -> Response:
    """The true outcome of earlier predictions: ``{request_id, label, row?}`` or a list."""
    request_id = request_id_of(request)
    served = state.holder.current
    version = served.version if served is not None else "none"
    cfg = state.settings.config
    try:
        doc = inputs.parse_json(await read_body(request, cfg.max_body_bytes), cfg.max_body_bytes)
        items = inputs.feedback_items(doc)
        ds = state.settings.dataset
        for i, item in enumerate(items):
            field = "label" if len(items) == 1 else f"{i}.label"
            if ds.task == "classification":
                if not isinstance(item.label, str):
                    raise RequestError(
                        422, field, f"expected a class label string, got {item.label!r}"
                    )
                if ds.labels is not None and item.label not in ds.labels:
                    raise RequestError(
                        422, field, f"unknown label {item.label!r}; expected one of {ds.labels}"
                    )
            elif isinstance(item.label, str):
                raise RequestError(422, field, f"expected a number, got {item.label!r}")
            if item.row < 0:
                raise RequestError(422, field.replace("label", "row"), "must be >= 0")
        if state.writer is None:
            why = state.log_error or "disabled in configs/serve.yaml"
            raise RequestError(503, "prediction_log", f"the prediction log is unavailable ({why})")
        try:
            # A row another replica served may reach the shared log a moment later.
            unknown = await replicas.add_feedback_awaiting_rows(
                lambda batch: _store_feedback(state, batch),
                [item.model_dump() for item in items],
                cfg.feedback_wait_s,
            )
        except Exception as exc:
            raise RequestError(
                503, "prediction_log", f"feedback could not be stored: {type(exc).__name__}: {exc}"
            ) from None
        if unknown:
            raise RequestError(
                404,
                "request_id",
                f"unknown request_id(s) {sorted(set(unknown))}; nothing stored for them",
            )
    except RequestError as exc:
        state.telemetry.observe("/feedback", exc.status, version, None)
        return json_response({**exc.to_dict(), "request_id": request_id}, exc.status, request_id)
    state.telemetry.observe("/feedback", 200, version, None)
    return json_response({"stored": len(items)}, 200, request_id)
