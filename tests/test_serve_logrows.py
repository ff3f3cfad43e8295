"""The prediction log's column-wise row building (``retrain.serve.logrows``) and the recorder
that uses it: the rows a request becomes are exactly those the row-by-row path wrote before
(byte for byte), they reach a real SQLite log through the recorder and the writer, and what
cannot be logged is counted per row.  No server: the recorder is fed what the route feeds it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrain.serve import predlog
from retrain.serve.logrows import json_texts, request_rows
from retrain.serve.logwriter import LogWriter
from retrain.serve.predlog import ENCODER, open_log
from retrain.serve.recorder import Recorder, input_hash

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = ["drizzle", "fog", "rain", "snow", "sun"]
AT = "2026-11-26T05:00:00.123456Z"


def reference_rows(request_id: str, at: str, version: str, role: str,
                   columns: dict[str, list[Any]], n: int, predictions: list[Any],
                   proba: list[list[float]] | None, classes: list[str] | None,
                   latency: float, *, log_inputs: bool) -> list[tuple[Any, ...]]:  # fmt: skip
    """What the log stored before ``logrows``: one record dict per row (the recorder's old
    ``_records``), each turned into its table row by ``predlog._row``."""
    names = list(columns)
    out = []
    for i in range(n):
        row = {name: columns[name][i] for name in names}
        record = {
            "request_id": request_id,
            "row": i,
            "at": at,
            "version": version,
            "role": role,
            "prediction": predictions[i],
            "proba": (
                {c: round(p, 6) for c, p in zip(classes, proba[i], strict=True)}
                if proba is not None and classes is not None
                else None
            ),
            "latency_ms": round(latency, 3),
            "input_hash": input_hash(row),
            "inputs": (
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                if log_inputs
                else None
            ),
        }
        out.append(predlog._row(record))
    return out


def weather_request(n: int, *, seed: int = 0) -> dict[str, Any]:
    """``n`` rows shaped like the example's requests, with the awkward values a request can
    hold: ints among floats, a NaN (allowed missing), a non-ASCII category, a None."""
    seasons = ["winter", "spring", "summer", "autumn", "hiver \u00e9t\u00e9", None]
    columns: dict[str, list[Any]] = {
        "precipitation": [(i * 7 + seed) % 13 * 0.3 for i in range(n)],
        "temp_max": [float(i % 30) - 5.5 if i % 4 else i % 30 for i in range(n)],
        "temp_min": [math.nan if i % 17 == 3 else -1.25 * (i % 9) for i in range(n)],
        "wind": [1e-7 * i + 2.0 for i in range(n)],
        "season": [seasons[(i + seed) % len(seasons)] for i in range(n)],
    }
    proba = []
    for i in range(n):
        weights = [((i + 1) * (j + 3) + seed) % 11 + 0.001 * j for j in range(5)]
        total = sum(weights)
        proba.append([w / total for w in weights])
    proba[0] = [0.0, 1.0, 0.0, 0.0, 0.0]  # exact values: 0.0 and 1.0 stay floats
    predictions = [CLASSES[max(range(5), key=lambda j: p[j])] for p in proba]
    return {
        "columns": columns,
        "n": n,
        "predictions": predictions,
        "proba": proba,
        "classes": CLASSES,
    }


def args(req: dict[str, Any], request_id: str = "req-1", *, role: str = "production",
         latency: float = 12.34567) -> tuple[Any, ...]:  # fmt: skip
    return (request_id, AT, "1.0.0", role, req["columns"], req["n"], req["predictions"],
            req["proba"], req["classes"], latency)  # fmt: skip


@pytest.mark.parametrize("log_inputs", [False, True])
def test_a_100_row_request_becomes_the_rows_the_row_by_row_path_wrote(log_inputs: bool):
    req = weather_request(100)
    got = request_rows(*args(req), log_inputs=log_inputs)
    assert got == reference_rows(*args(req), log_inputs=log_inputs)
    assert [r[1] for r in got] == list(range(100))
    first = got[0]
    assert first[2] == AT and first[5] == '"fog"' and first[7] == 12.346
    assert first[6] == '{"drizzle":0.0,"fog":1.0,"rain":0.0,"snow":0.0,"sun":0.0}'
    nan_row = got[3]
    assert nan_row[8] == input_hash({k: v[3] for k, v in req["columns"].items()})
    if log_inputs:
        assert '"temp_min":null' in nan_row[9]
    else:
        assert nan_row[9] is None


def test_failed_and_regression_requests_match_the_row_by_row_path():
    req = weather_request(7)
    failed = ("r", AT, "2.0.0", "canary", req["columns"], 7, [None] * 7, None, None, 3.0)
    assert request_rows(*failed, log_inputs=True) == reference_rows(*failed, log_inputs=True)
    values = [1.5, 2, -0.0, 1e300, 3.25, 0.1, 7]
    regression = ("r", AT, "2.0.0", "shadow", req["columns"], 7, values, None, None, 3.0)
    got = request_rows(*regression, log_inputs=False)
    assert got == reference_rows(*regression, log_inputs=False)
    assert [r[5] for r in got] == ["1.5", "2", "-0.0", "1e+300", "3.25", "0.1", "7"]


def test_a_column_name_with_json_and_format_characters_is_encoded_like_json():
    columns = {'100% "dry"': [1.0, 2.0], "sa\u00efson": ["a", "b\\"], "z": [None, 0]}
    call = ("r", AT, "1", "production", columns, 2, ["x", "y"], [[0.25, 0.75]] * 2,
            ["a%s", "b"], 1.0)  # fmt: skip
    assert request_rows(*call, log_inputs=True) == reference_rows(*call, log_inputs=True)


def test_lists_of_the_wrong_length_are_refused():
    req = weather_request(3)
    with pytest.raises(ValueError, match="3 rows"):
        request_rows("r", AT, "1", "production", req["columns"], 3, ["a"], None, None, 1.0,
                     log_inputs=False)  # fmt: skip
    with pytest.raises(ValueError, match="3 rows of 5 classes"):
        request_rows("r", AT, "1", "production", req["columns"], 3, req["predictions"],
                     [[1.0]] * 3, CLASSES, 1.0, log_inputs=False)  # fmt: skip


scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_infinity=True, allow_nan=True)
    | st.text(max_size=8)
)


@FAST
@given(st.lists(scalar, max_size=12))
def test_json_texts_is_the_encoder_value_by_value(values: list[Any]):
    assert json_texts(values) == [ENCODER.encode(v) for v in values]
    nulled = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    assert json_texts(values, nan_as_null=True) == [ENCODER.encode(v) for v in nulled]


@FAST
@given(
    st.integers(1, 6).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.dictionaries(
                st.text(min_size=1, max_size=6),
                st.lists(
                    st.floats(allow_infinity=False) | st.integers(-1000, 1000) | st.none(),
                    min_size=n,
                    max_size=n,
                )
                | st.lists(st.text(max_size=5) | st.none(), min_size=n, max_size=n),
                min_size=1,
                max_size=4,
            ),
            st.lists(st.lists(st.floats(0, 1), min_size=3, max_size=3), min_size=n, max_size=n),
            st.booleans(),
        )
    )
)
def test_any_request_becomes_the_rows_the_row_by_row_path_wrote(case: tuple[Any, ...]):
    n, columns, proba, log_inputs = case
    preds = [CLASSES[i % 5] for i in range(n)]
    call = ("r", AT, "1.0.0", "production", columns, n, preds, proba, ["a", "b", "c"], 0.5)
    assert request_rows(*call, log_inputs=log_inputs) == reference_rows(
        *call, log_inputs=log_inputs
    )


# ------------------------------------------------------------------ through the recorder
@pytest.fixture
def served(tmp_path: Path):
    """(recorder, writer, log): what the server's lifespan builds, on a SQLite log."""
    log = open_log("sqlite:///.retrain/predictions.db", tmp_path)
    writer = LogWriter(log, batch_size=4096, flush_interval=0.05)
    recorder = Recorder(writer, log_inputs=True)
    yield recorder, writer, log
    recorder.close()
    writer.close()


def test_a_mixed_batch_of_requests_is_logged_row_by_row_with_its_values(served):
    recorder, writer, log = served
    big, one = weather_request(100), weather_request(1, seed=5)
    recorder.record(*args(big, "big"))
    recorder.record(*args(one, "one"))
    recorder.record(*args(one, "one", role="shadow", latency=1.0))
    recorder.record("failed", AT, "1.0.0", "production", one["columns"], 1, [None], None, None, 2)
    assert recorder.flush() and writer.flush()
    assert writer.written == 103 and writer.dropped == 0 and recorder.failed == 0
    rows = log.lookup("big")
    assert [r["row"] for r in rows] == list(range(100))
    assert [r["prediction"] for r in rows] == big["predictions"]
    for r, p in zip(rows, big["proba"], strict=True):
        assert r["proba"] == {c: round(x, 6) for c, x in zip(CLASSES, p, strict=True)}
    assert {r["version"] for r in rows} == {"1.0.0"} and {r["role"] for r in rows} == {"production"}
    assert {r["at"] for r in rows} == {AT} and {r["latency_ms"] for r in rows} == {12.346}
    for i in (0, 3, 99):
        features = {k: v[i] for k, v in big["columns"].items()}
        assert rows[i]["input_hash"] == input_hash(features)
        expected = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in features.items()}  # fmt: skip
        assert rows[i]["inputs"] == expected
    assert [(r["role"], r["prediction"]) for r in log.lookup("one")] == [
        ("production", one["predictions"][0]),
        ("shadow", one["predictions"][0]),
    ]
    (failed,) = log.lookup("failed")
    assert failed["prediction"] is None and failed["proba"] is None


def test_a_request_that_cannot_be_logged_is_counted_per_row_and_the_rest_still_are(served):
    recorder, writer, log = served
    req = weather_request(10)
    recorder.record(*args(req, "before"))
    bad = args(req, "bad")
    recorder.record(*bad[:5], 10, req["predictions"][:4], *bad[7:])  # 4 predictions, 10 rows
    recorder.record(*args(req, "after"))
    assert recorder.flush() and writer.flush()
    assert recorder.failed == 10 and writer.written == 20
    assert log.lookup("bad") == [] and len(log.lookup("after")) == 10
    # The thread survived it: later requests are still logged.
    recorder.record(*args(req, "later"))
    assert recorder.flush() and writer.flush() and len(log.lookup("later")) == 10


def test_without_a_writer_every_row_is_counted_as_failed():
    recorder = Recorder(None, log_inputs=False)
    try:
        recorder.record(*args(weather_request(100), "a"))
        recorder.record(*args(weather_request(1), "b"))
        assert recorder.flush()
        assert recorder.failed == 101
    finally:
        recorder.close()


def test_an_unreachable_log_drops_built_rows_per_row_then_resumes(tmp_path: Path):
    """The log's directory is a regular file: the writer drops and counts every row of the
    batch, and writes again once the directory can be made."""
    parent = tmp_path / ".retrain"
    parent.write_text("a file where the log's directory should be")
    log = open_log("sqlite:///.retrain/predictions.db", tmp_path)
    writer = LogWriter(log, batch_size=4096, flush_interval=0.05)
    recorder = Recorder(writer, log_inputs=False)
    try:
        recorder.record(*args(weather_request(100), "lost"))
        assert recorder.flush() and writer.flush()
        assert writer.dropped == 100 and writer.written == 0 and writer.down
        parent.unlink()
        recorder.record(*args(weather_request(100), "kept"))
        assert recorder.flush() and writer.flush()
        assert writer.written == 100 and writer.dropped == 100 and not writer.down
        assert len(log.lookup("kept")) == 100
    finally:
        recorder.close()
        writer.close()


def test_the_recorder_thread_hands_over_within_its_linger(served):
    """Without a flush the rows still arrive: the thread wakes within its linger."""
    recorder, writer, log = served
    recorder.record(*args(weather_request(5), "quiet"))
    deadline = time.monotonic() + 10
    while writer.written < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer.flush() and len(log.lookup("quiet")) == 5
