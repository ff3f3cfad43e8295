"""Request bodies: MLflow's scoring-server payloads and JSON records, checked at the boundary.

A body becomes columns (one list per feature, in the model's order) or a
:class:`RequestError` that names the field or column and what was expected.  The checks are
those of the dataset's schema (``configs/dataset.yaml``): exactly the model's features, numbers
where numbers are declared, strings for categories, no missing value (null or NaN) unless
``allow_missing``, values within ``min``/``max``.  Plain Python over the parsed JSON: a
single-row request costs microseconds, not a pandas validation.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from retrain.core.config import DatasetConfig
from retrain.core.registry import RegistryEntry
from retrain.pipeline.predict import column_problem, not_features

PAYLOAD_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_FLOAT_MAX = 1.7976931348623157e308


class RequestError(Exception):
    """A bad request: HTTP status, the field or column at fault, and one line saying why."""

    def __init__(
        self, status: int, field: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"field": self.field, "message": self.message, "status": self.status}}


# ------------------------------------------------------------------------ payload models
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataframeSplit(_Body):
    """pandas' ``orient="split"``: ``{"columns": [...], "data": [[...], ...]}``."""

    columns: list[str]
    data: list[list[Any]]
    index: list[Any] | None = None


class InvocationsBody(_Body):
    """``POST /invocations``: exactly one of MLflow's four payload keys."""

    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Any]] | None = None
    instances: list[dict[str, Any]] | dict[str, Any] | None = None
    inputs: list[dict[str, Any]] | dict[str, Any] | None = None
    params: dict[str, Any] | None = None


class PredictBody(_Body):
    """``POST /predict``: ``{"records": [{column: value, ...}, ...]}``."""

    records: list[dict[str, Any]]


class FeedbackItem(_Body):
    request_id: str
    label: str | float | int
    row: int = 0


# ------------------------------------------------------------------------ schema
@dataclass(frozen=True)
class Feature:
    name: str
    numeric: bool
    min: float | None = None
    max: float | None = None
    allow_missing: bool = False
    levels: frozenset[str] | None = None  # a categorical column's known levels (None: any)


@dataclass(frozen=True)
class InputSchema:
    """The columns a served model takes: names and types from its registry entry's schema,
    ranges and ``allow_missing`` from ``configs/dataset.yaml`` for the columns it declares."""

    features: tuple[Feature, ...]
    ignored: frozenset[str] = frozenset()  # the dataset's non-feature columns, ignored

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @classmethod
    def of(cls, entry: RegistryEntry, dataset: DatasetConfig) -> InputSchema:
        declared = {f.name: f for f in dataset.features}
        out = []
        for name, kind in entry.schema_.features.items():
            spec = declared.get(name)
            out.append(
                Feature(
                    name=name,
                    numeric=kind == "numeric",
                    min=spec.min if spec else None,
                    max=spec.max if spec else None,
                    allow_missing=spec.allow_missing if spec else False,
                    levels=frozenset(spec.levels) if spec and spec.levels is not None else None,
                )
            )
        return cls(tuple(out), not_features(dataset))


# ------------------------------------------------------------------------ parsing
_QUOTE = ord('"')
# bytes.translate table: quotes and brackets stay, every other byte becomes 0.
_MARKS = bytes(b if b in b'"[]{}' else 0 for b in range(256))
_OPENS = np.zeros(256, dtype=np.int8)
_OPENS[[ord("["), ord("{")]] = 1
_OPENS[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in ``body`` (valid JSON), vectorised and without
    parsing: escapes are dropped, a running count of quotes marks what is inside a string,
    and the running sum of the brackets outside strings (+1 opening, -1 closing) peaks at
    the depth.  Linear in the body's size whatever it holds (no regular expression to
    backtrack, no Python loop)."""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    raw = np.frombuffer(body.translate(_MARKS), dtype=np.uint8)  # all but marks become 0
    marks = np.flatnonzero(raw)  # quotes and brackets only
    if not len(marks):
        return 0
    kinds = raw[marks]
    quote = kinds == _QUOTE
    outside = (np.cumsum(quote, dtype=np.int64) & 1) == 0
    steps = _OPENS[kinds] * outside
    return int(max(0, np.cumsum(steps, dtype=np.int64).max()))


def parse_json(body: bytes, max_bytes: int, max_depth: int = 32) -> Any:
    if len(body) > max_bytes:
        raise RequestError(413, "body", f"{len(body)} bytes is over the limit of {max_bytes}")
    if not body.strip():
        raise RequestError(400, "body", "empty body; expected a JSON object")
    # Fewer opening brackets than the limit cannot nest past it (a small body's fast path).
    opens = body.count(b"[") + body.count(b"{")
    depth = json_depth(body) if opens > max_depth else 0
    if depth > max_depth:
        raise RequestError(
            400, "body", f"JSON nested {depth} levels deep; the limit is {max_depth}"
        )
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "body", f"not valid JSON ({short(str(exc))})") from None
    except RecursionError:  # cannot happen below max_depth; kept as the last line of defence
        raise RequestError(400, "body", f"JSON nested too deeply (limit {max_depth})") from None


_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = 4


def short(value: Any) -> str:
    """A value as quoted in an error message: bounded in depth and length, whatever the
    client sent (a 10,000-deep list must not blow the stack or the answer)."""
    if isinstance(value, str):
        return repr(value if len(value) <= 200 else value[:200] + "...")
    return _REPR.repr(value)


def _validate(model: type[BaseModel], doc: Any) -> Any:
    if not isinstance(doc, dict):
        raise RequestError(422, "body", f"expected a JSON object, got {type(doc).__name__}")
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise RequestError(422, loc, msg) from None


def records_of(doc: Any) -> tuple[str, list[dict[str, Any]] | dict[str, Any]]:
    """``(field name, records or a column mapping)`` of an ``/invocations`` body."""
    body: InvocationsBody = _validate(InvocationsBody, doc)
    given = [k for k in PAYLOAD_KEYS if getattr(body, k) is not None]
    if len(given) != 1:
        raise RequestError(
            422,
            "body",
            f"expected exactly one of {list(PAYLOAD_KEYS)}, got {given or 'none'}",
        )
    key = given[0]
    if key == "dataframe_split":
        split = body.dataframe_split
        assert split is not None
        records = []
        for i, row in enumerate(split.data):
            if len(row) != len(split.columns):
                raise RequestError(
                    422,
                    f"dataframe_split.data.{i}",
                    f"{len(row)} value(s) for {len(split.columns)} column(s)",
                )
            records.append(dict(zip(split.columns, row, strict=True)))
        return "dataframe_split.data", records
    value = getattr(body, key)
    return key, value


def predict_records(doc: Any) -> list[dict[str, Any]]:
    body: PredictBody = _validate(PredictBody, doc)
    return body.records


def feedback_items(doc: Any) -> list[FeedbackItem]:
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise RequestError(422, "body", "empty list; expected {request_id, label} items")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(_validate(FeedbackItem, item))
        except RequestError as exc:
            field = exc.field if len(items) == 1 else f"{i}.{exc.field}"
            raise RequestError(exc.status, field, exc.message) from None
    return out


def _columnar(mapping: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """MLflow's column-oriented ``inputs``: ``{"col": [v, ...], ...}`` (or one value each)."""
    lengths = {len(v) if isinstance(v, list) else 1 for v in mapping.values()}
    if len(lengths) > 1:
        raise RequestError(422, where, f"columns have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    cols = {k: (v if isinstance(v, list) else [v]) for k, v in mapping.items()}
    return [{k: cols[k][i] for k in cols} for i in range(n)]


def to_columns(
    rows: list[dict[str, Any]] | dict[str, Any], schema: InputSchema, where: str, max_rows: int
) -> tuple[dict[str, list[Any]], int]:
    """Checked columns (one list per feature, in the model's order) and the row count."""
    records = _columnar(rows, where) if isinstance(rows, dict) else rows
    n = len(records)
    if n == 0:
        raise RequestError(422, where, "no rows; expected at least one")
    if n > max_rows:
        raise RequestError(413, where, f"{n} rows is over the limit of {max_rows} per request")
    names = schema.names
    expected = set(names)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise RequestError(422, f"{where}.{i}", "expected an object of column: value")
        if rec.keys() != expected:  # the one column rule of predict and the server
            problem = column_problem(rec.keys(), names, schema.ignored)
            if problem is not None:
                raise RequestError(422, f"{where}.{i}.{problem[0]}", problem[1])
    columns: dict[str, list[Any]] = {}
    for feat in schema.features:
        values = [rec[feat.name] for rec in records]
        columns[feat.name] = _check_column(feat, values, where)
    return columns, n


def _check_column(feat: Feature, values: list[Any], where: str) -> list[Any]:
    name = feat.name
    out = values
    for i, v in enumerate(values):
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        if missing:
            if not feat.allow_missing:
                raise RequestError(
                    422, f"{where}.{i}.{name}", f"column {name!r} has a missing value (null or NaN)"
                )
            if feat.numeric and v is None:
                if out is values:
                    out = list(values)
                out[i] = math.nan
            continue
        if feat.numeric:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise RequestError(
                    422, f"{where}.{i}.{name}", f"column {name!r} expected a number, got {short(v)}"
                )
            # An integer past float's range (10**400 is valid JSON) is no finite number either.
            if (isinstance(v, int) and abs(v) > _FLOAT_MAX) or math.isinf(v):
                raise RequestError(
                    422,
                    f"{where}.{i}.{name}",
                    f"column {name!r} expected a finite number, got {short(v)}",
                )
            if feat.min is not None and v < feat.min:
                raise RequestError(
                    422,
                    f"{where}.{i}.{name}",
                    f"column {name!r} value {short(v)} is below its minimum {feat.min}",
                )
            if feat.max is not None and v > feat.max:
                raise RequestError(
                    422,
                    f"{where}.{i}.{name}",
                    f"column {name!r} value {short(v)} is above its maximum {feat.max}",
                )
        elif not isinstance(v, str):
            raise RequestError(
                422,
                f"{where}.{i}.{name}",
                f"column {name!r} expected a string (category), got {short(v)}",
            )
        elif feat.levels is not None and v not in feat.levels:
            raise RequestError(
                422,
                f"{where}.{i}.{name}",
                f"column {name!r} level {short(v)} is not one of its levels "
                f"{sorted(feat.levels)} (configs/dataset.yaml)",
            )
    return out
