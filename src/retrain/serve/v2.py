"""The Open Inference Protocol (V2), the REST dialect KServe, Seldon and MLServer clients speak.

- ``GET /v2/health/live``, ``GET /v2/health/ready``: 200, or 400 when not ready (the
  protocol's "4xx means false", as MLServer answers);
- ``GET /v2``: the server's metadata; ``GET /v2/models/{name}`` the model's (its inputs, one
  per feature column, its outputs, the versions serving); ``GET /v2/models/{name}/ready``;
- ``POST /v2/models/{name}/infer``: a table as one input per column, as MLServer's pandas
  codec sends it (``{"name": "temp_max", "datatype": "FP64", "shape": [n, 1], "data": [...]}``,
  strings as ``BYTES``), nested or flat data.  The rows go through the same checks, batching,
  canary routing and prediction log as ``/invocations``; the answer is ``predict`` (the class
  label as ``BYTES``, or a number as ``FP64``), and ``predict_proba`` (``FP64``, one column
  per class, in ``parameters.classes`` order) when the request names it in ``outputs``.

``{name}`` is the model's name in ``configs/dataset.yaml``.  Errors are ``{"error": "..."}``
with a 4xx status, as the protocol says; the server's request id is in ``parameters`` and in
the ``X-Request-ID`` header.  Versioned paths (``/versions/{v}``) are not served: which
version answers is ``registry.yaml``'s decision, not the client's.
"""

from __future__ import annotations

import math
from importlib import metadata
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrain.serve import openapi
from retrain.serve.inputs import RequestError
from retrain.serve.scoring import Caller, _records_answer, _score, json_response
from retrain.serve.state import ServeState, get_state

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
State = Annotated[ServeState, Depends(get_state)]
ROUTE = "/v2/models/{name}/infer"  # the metrics' route label (never the name a client sent)
NUMERIC = {"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32",
           "UINT16", "UINT8"}  # fmt: skip
DATATYPES = NUMERIC | {"BYTES", "BOOL"}
OUTPUTS = ("predict", "predict_proba")


class _Tensor(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_Tensor] = Field(min_length=1)
    outputs: list[_Output] | None = None


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item) if isinstance(item, list) else [item])
    return out


def _column(i: int, t: _Tensor) -> list[Any]:
    """One input as one column's values, its datatype and shape checked."""
    where = f"inputs.{i}"
    if t.datatype not in DATATYPES:
        raise RequestError(
            422, f"{where}.datatype", f"{t.datatype!r} is not one of {sorted(DATATYPES)}"
        )
    if not (len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)) or t.shape[0] < 0:
        raise RequestError(
            422, f"{where}.shape", f"{t.shape}: a column is [n] or [n, 1], one input per column"
        )
    values = _flat(t.data)
    if len(values) != t.shape[0]:
        raise RequestError(
            422, f"{where}.data", f"{len(values)} value(s) for shape {t.shape} ({t.name!r})"
        )
    for j, v in enumerate(values):
        if v is None:
            continue  # a missing value: the schema's allow_missing decides (to_columns)
        if t.datatype == "BYTES":
            ok = isinstance(v, str)
        elif t.datatype == "BOOL":
            ok = isinstance(v, bool)
        else:
            ok = isinstance(v, int | float) and not isinstance(v, bool)
            if ok and t.datatype[0] in "IU":
                ok = not isinstance(v, float) or (math.isfinite(v) and v.is_integer())
        if not ok:
            raise RequestError(
                422, f"{where}.data.{j}", f"{v!r} is not a {t.datatype} value ({t.name!r})"
            )
    return values


def parse(doc: Any, task: str) -> tuple[InferenceRequest, dict[str, list[Any]], list[str]]:
    """``(request, {column: values}, outputs asked for)``; :class:`RequestError` names the
    field at fault."""
    if not isinstance(doc, dict):
        raise RequestError(422, "body", f"expected a JSON object, got {type(doc).__name__}")
    try:
        req = InferenceRequest.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(422, loc, first["msg"]) from None
    columns: dict[str, list[Any]] = {}
    for i, t in enumerate(req.inputs):
        if t.name in columns:
            raise RequestError(422, f"inputs.{i}.name", f"{t.name!r} is given twice")
        columns[t.name] = _column(i, t)
    wanted = [o.name for o in req.outputs] if req.outputs else ["predict"]
    for i, name in enumerate(wanted):
        known = OUTPUTS if task == "classification" else OUTPUTS[:1]
        if name not in known:
            raise RequestError(
                422, f"outputs.{i}.name", f"{name!r} is not an output; expected one of {known}"
            )
    return req, columns, wanted


def _outputs(payload: dict[str, Any], wanted: list[str]) -> list[dict[str, Any]]:
    preds = payload["predictions"]
    n = len(preds)
    out = []
    for name in wanted:
        if name == "predict":
            if preds and all(isinstance(p, str) for p in preds):
                out.append(
                    {
                        "name": "predict",
                        "datatype": "BYTES",
                        "shape": [n, 1],
                        "parameters": {"content_type": "str"},
                        "data": preds,
                    }
                )
            else:
                out.append({"name": "predict", "datatype": "FP64", "shape": [n, 1], "data": preds})
        elif name == "predict_proba" and payload.get("probabilities") is not None:
            probs = payload["probabilities"]
            classes = payload.get("classes") or []
            out.append(
                {
                    "name": "predict_proba",
                    "datatype": "FP64",
                    "shape": [n, len(classes)],
                    "parameters": {"classes": classes},
                    "data": [p for row in probs for p in row],
                }
            )
    return out


def _not_ready(state: ServeState) -> str | None:
    if state.holder.current is None:
        return f"no model is loaded yet ({state.holder.problem or 'loading'})"
    return None


def _unknown(state: ServeState, name: str) -> Response | None:
    served = state.settings.dataset.name
    if name == served:
        return None
    return json_response(
        {"error": f"model {name!r} is not served here; this server serves {served!r}"}, 404, None
    )


_MODEL_ANSWERS = openapi.answers(
    {"400": "no model loaded yet", "404": "another model's name"},
    openapi.ANY_OBJECT,
    openapi.V2_ERROR,
)


def _package_version() -> str:
    try:
        return metadata.version("retrain")
    except metadata.PackageNotFoundError:  # run from a source tree (the image's PYTHONPATH)
        return "0"


@router.get("", **openapi.answers({}, openapi.ANY_OBJECT, openapi.V2_ERROR))
async def server_metadata() -> Response:
    return json_response(
        {"name": "retrain", "version": _package_version(), "extensions": []}, 200, None
    )


@router.get("/health/live", **openapi.answers({}, openapi.ANY_OBJECT, openapi.V2_ERROR))
async def live() -> Response:
    """The process answers (the model may still be loading)."""
    return json_response({"live": True}, 200, None)


@router.get(
    "/health/ready",
    **openapi.answers({"400": "no model loaded yet"}, openapi.ANY_OBJECT, openapi.V2_ERROR),
)
async def ready(state: State) -> Response:
    """200 once a model is loaded, 400 before."""
    ok = _not_ready(state) is None
    return json_response({"ready": ok}, 200 if ok else 400, None)


@router.get("/models/{name}/ready", **_MODEL_ANSWERS)
async def model_ready(name: str, state: State) -> Response:
    unknown = _unknown(state, name)
    if unknown is not None:
        return unknown
    ok = _not_ready(state) is None
    return json_response({"name": name, "ready": ok}, 200 if ok else 400, None)


@router.get("/models/{name}", **_MODEL_ANSWERS)
async def model_metadata(name: str, state: State) -> Response:
    """The inputs (one per feature column, in the model's order), outputs and versions."""
    unknown = _unknown(state, name)
    if unknown is not None:
        return unknown
    served, rollout, others = state.holder.snapshot()
    if served is None:
        return json_response({"error": _not_ready(state)}, 400, None)
    classification = served.task == "classification"
    outputs: list[dict[str, Any]] = [
        {"name": "predict", "datatype": "BYTES" if classification else "FP64", "shape": [-1, 1]}
    ]
    if classification:
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, -1]})
    body = {
        "name": name,
        "versions": [served.version, *sorted(others)],
        "platform": "sklearn",
        "inputs": [
            {
                "name": f.name,
                "datatype": "FP64" if f.numeric else "BYTES",
                "shape": [-1, 1],
                **({} if f.numeric else {"parameters": {"content_type": "str"}}),
            }
            for f in served.schema.features
        ],
        "outputs": outputs,
        "parameters": {"content_type": "pd", "production": served.version},
    }
    return json_response(body, 200, None)


@router.post(
    "/models/{name}/infer",
    **openapi.route(InferenceRequest, openapi.ANY_OBJECT, error=openapi.V2_ERROR),
)
async def infer(name: str, request: Request, state: State, _: Caller) -> Response:
    """A table, one input per column: the predictions of the version that answers."""
    unknown = _unknown(state, name)
    if unknown is not None:
        return unknown
    asked: dict[str, Any] = {}

    def extract(doc: Any) -> tuple[str, dict[str, list[Any]]]:
        req, columns, wanted = parse(doc, state.settings.dataset.task)
        asked.update(id=req.id, outputs=wanted)
        return "inputs", columns

    def shape(payload: dict[str, Any], status: int) -> dict[str, Any]:
        rid = payload.get("request_id")
        if status != 200:
            err = payload.get("error") or {}
            return {"error": f"{err.get('field', 'body')}: {err.get('message', '')}".strip()}
        return {
            "model_name": name,
            "model_version": payload["model_version"],
            "id": asked.get("id") or rid,
            "parameters": {"request_id": rid},
            "outputs": _outputs(payload, asked.get("outputs") or ["predict"]),
        }

    return await _score(request, state, ROUTE, extract, _records_answer, shape)
