"""One served request as prediction-log rows, built a column at a time.

A request of ``n`` rows becomes ``n`` rows of the ``predictions`` table (see
:mod:`retrain.serve.predlog`), as tuples in ``RECORD_KEYS`` order that
:meth:`~retrain.serve.predlog.PredictionLog.write` inserts as they are.  The text stored is
the one the row-by-row path writes (a record dict through ``predlog._row``, the hash of
:func:`retrain.serve.recorder.input_hash`), byte for byte: JSON with ``(",", ":")``
separators and ASCII escapes, NaN inputs as ``null``, probabilities rounded to 6 decimals,
the latency to 3, the time as fixed-width UTC text.

Why column-wise: the log's threads share the GIL with the event loop and the model call,
so every microsecond they spend per row is taken from serving.  Row by row, a 100-row
request cost about 300 ``json.dumps`` calls (each building a new encoder) and 100 dicts of
dicts; here each column is encoded with one call of the C encoder (numbers) or once per
distinct value (strings, e.g. class names), and each row's JSON object is one ``%``
formatting of a template holding its keys.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any

from retrain.serve.predlog import ENCODER, utc_text

_NUMBERS = frozenset({int, float})  # exact types: bool and numpy scalars take the slow path
_TEXTS = frozenset({str, type(None)})

Row = tuple[Any, ...]


def json_texts(values: Sequence[Any], *, nan_as_null: bool = False) -> list[str]:
    """``[ENCODER.encode(v) for v in values]``, computed a column at a time.

    ``nan_as_null`` writes a float NaN as ``null`` (a missing input), not ``NaN``.
    """
    if not values:
        return []
    kinds = set(map(type, values))
    if kinds <= _NUMBERS:
        # One C-encoder call for the column; the text of a number never holds a comma.
        texts = ENCODER.encode(list(values))[1:-1].split(",")
        if nan_as_null and float in kinds and "NaN" in texts:
            texts = ["null" if t == "NaN" else t for t in texts]
        return texts
    if kinds <= _TEXTS:  # categories and class names: few distinct values
        cache: dict[Any, str] = {}
        out = []
        for v in values:
            text = cache.get(v)
            if text is None:
                text = cache[v] = ENCODER.encode(v)
            out.append(text)
        return out
    return [
        ENCODER.encode(None if nan_as_null and isinstance(v, float) and math.isnan(v) else v)
        for v in values
    ]


def _template(keys: Sequence[str]) -> str:
    """``'{"a":%s,"b":%s}'``: a JSON object of ``keys`` whose values are %-formatted in."""
    return "{" + ",".join(ENCODER.encode(k).replace("%", "%%") + ":%s" for k in keys) + "}"


def _objects(keys: Sequence[str], columns: Sequence[list[str]], n: int) -> list[str]:
    """The JSON text of each row's object ``{key: value}``, values already JSON text."""
    if not keys:
        return ["{}"] * n
    template = _template(keys)
    return [template % values for values in zip(*columns, strict=True)]


def request_rows(
    request_id: str,
    at: str,
    version: str,
    role: str,
    columns: dict[str, list[Any]],
    n: int,
    predictions: Sequence[Any],
    proba: Sequence[Sequence[float]] | None,
    classes: Sequence[str] | None,
    latency_ms: float,
    *,
    log_inputs: bool,
    client_request_id: str | None = None,
) -> list[Row]:
    """The ``predictions`` rows of one request: row ``i`` has ``predictions[i]``, the
    probabilities ``proba[i]`` by class (None without them), the sha256 of row ``i``'s inputs
    as canonical JSON, and those inputs when ``log_inputs``.

    ``columns`` holds one list of ``n`` values per input column (the checked request);
    ``client_request_id`` is the client's ``X-Request-ID``, stored beside the server's id;
    ``at`` is an ISO time (stored as fixed-width UTC text); ``latency_ms`` is the request's.
    Raises ``ValueError`` when a list is not ``n`` long.
    """
    names = list(columns)
    if any(len(columns[k]) != n for k in names) or len(predictions) != n:
        raise ValueError(f"request {request_id}: columns and predictions must hold {n} rows")
    if not all(type(k) is str for k in names):
        raise ValueError(f"request {request_id}: column names must be text")
    texts = {k: json_texts(columns[k], nan_as_null=True) for k in names}
    by_key = sorted(names)
    canonical = _objects(by_key, [texts[k] for k in by_key], n)
    hashes = [hashlib.sha256(t.encode()).hexdigest() for t in canonical]
    inputs: list[str] | list[None]
    if not log_inputs:
        inputs = [None] * n
    elif by_key == names:
        inputs = canonical
    else:
        inputs = _objects(names, [texts[k] for k in names], n)

    probas: list[str] | list[None] = [None] * n
    if proba is not None and classes is not None:
        k = len(classes)
        if len(proba) != n or any(len(p) != k for p in proba):
            raise ValueError(f"request {request_id}: proba must be {n} rows of {k} classes")
        if not all(type(c) is str for c in classes):
            raise ValueError(f"request {request_id}: class names must be text")
        if k:
            rounded = list(map(round, chain.from_iterable(proba), repeat(6, n * k)))
            parts = iter(json_texts(rounded))
            template = _template(classes)
            probas = [template % values for values in zip(*[parts] * k, strict=True)]
        else:
            probas = ["{}"] * n

    rid, when, ver = str(request_id), utc_text(at), str(version)
    who = str(role or "production")
    latency = float(round(latency_ms, 3))
    client = None if client_request_id is None else str(client_request_id)
    return [
        (rid, i, when, ver, who, pred, p, latency, h, x, client)
        for i, pred, p, h, x in zip(
            range(n), json_texts(predictions), probas, hashes, inputs, strict=True
        )
    ]
