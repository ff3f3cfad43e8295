"""What the OpenAPI schema says of the routes that read their body by hand.

The scoring and feedback routes parse their JSON themselves (a single-row request costs
microseconds, and every refusal names its field), so FastAPI cannot see their bodies.  Each
declares here the body it reads (the same pydantic models that check it) and every answer
it can give, so the schema is true: what a client generator and schemathesis read.  The
schema is served at ``/openapi.json`` only when ``configs/serve.yaml`` says ``openapi: true``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["field", "message", "status"],
            "properties": {
                "field": {"type": "string"},
                "message": {"type": "string"},
                "status": {"type": "integer"},
            },
        },
        "request_id": {"type": "string"},
        "client_request_id": {"type": "string"},
    },
}
PREDICTIONS = {
    "type": "object",
    "required": ["predictions", "model_version", "request_id"],
    "properties": {
        "predictions": {"type": "array"},
        "classes": {"type": "array", "items": {"type": "string"}},
        "probabilities": {"type": "array", "items": {"type": "array"}},
        "model_version": {"type": "string"},
        "request_id": {"type": "string"},
        "client_request_id": {"type": "string"},
    },
}
STORED = {
    "type": "object",
    "required": ["stored", "request_id"],
    "properties": {
        "stored": {"type": "integer"},
        "by": {"type": ["string", "null"]},
        "request_id": {"type": "string"},
    },
}
REFUSALS = {
    "400": "malformed body or X-Request-ID, or JSON nested too deeply",
    "401": "a bearer token is needed (WWW-Authenticate: Bearer)",
    "403": "the token may not do this, or no tokens are configured",
    "404": "unknown request id (feedback)",
    "413": "body, rows or labels over their limit",
    "415": "the body is not application/json",
    "422": "a field, column or level the model does not take",
    "429": "the token's labels per minute are spent (Retry-After)",
    "500": "the model failed on these rows (logged as an error)",
    "503": "no model yet, or busy (Retry-After)",
}


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with every ``#/$defs/X`` reference replaced by its definition."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def body_schema(model: type[BaseModel] | None, *, many: bool = False) -> dict[str, Any]:
    if model is None:
        return {}
    raw = model.model_json_schema()
    one = _inline(raw, raw.get("$defs", {}))
    return {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]} if many else one


# The Open Inference Protocol's error body (serve/v2.py): one string.
V2_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
ANY_OBJECT: dict[str, Any] = {"type": "object"}


def answers(codes: dict[str, str], answer: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for a route without a body: the answers it can give."""
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "OK", "content": {"application/json": {"schema": answer}}}
    }
    for code, text in codes.items():
        responses[code] = {"description": text, "content": {"application/json": {"schema": error}}}
    return {"responses": responses}


def route(
    body: type[BaseModel],
    answer: dict[str, Any],
    *,
    many: bool = False,
    error: dict[str, Any] = ERROR,
) -> dict[str, Any]:
    """Keyword arguments for ``router.post``: the body it reads and the answers it gives."""
    json_of = {"application/json": {"schema": error}}
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "OK", "content": {"application/json": {"schema": answer}}}
    }
    for code, text in REFUSALS.items():
        responses[code] = {"description": text, "content": json_of}
    return {
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema(body, many=many)}},
            }
        },
        "responses": responses,
    }
